"""XSum summarization, 1-shot (paper Table 1).

- Data, hub: `EdinburghNLP/xsum` (the paper loads `xsum`), test split, `.shuffle(seed=42).select(range(1000))`
  (the paper's `evaluate_sum.ipynb`); fields document / summary / id. Shot: train split after
  `.shuffle(seed=42)`, first item. The revision is pinned in `conf/task/xsum.yaml`, and the commit it
  resolves to is recorded in `selection()`.
- Data, offline: `xsum/xsum_official_subset_79.jsonl` in `data_dir()` (shipped in `tasks/data/`, whose
  README.md gives provenance and licences; `$REPLICATE_DATA_DIR` overrides): the 79 items of the paper's own
  selection found in the first 1000 test rows, sorted by `official_rank` (their position in the paper's
  order; ids are the `hf_test_index`, as the BBC id is null for most rows). Most documents there had their
  newlines collapsed to spaces (`document_has_newlines`), so prompts differ from the hub's in whitespace.
  The last `offline.held_out_items` (5) items by rank are held out: the last one is the shot, the 4 before
  it are the dev prompts' queries; the first 74 are scored.
- Prompt, post-processing, metric (ROUGE-2 F1, also ROUGE-1 and ROUGE-L), paper-compatible scoring and
  the optional short-baseline filter: as `tasks.summarization` describes for both summarization tasks.
- Departure from the paper's code beyond those: offline, the shot is a held-out test item, not a train item.
"""

from tasks.summarization import SummarizationTask


class XSumTask(SummarizationTask):
    name = "xsum"
    title = "XSum"
