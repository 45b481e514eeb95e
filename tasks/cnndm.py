"""CNN/DailyMail 3.0.0 summarization, 1-shot (paper Table 1).

- Data, hub: `abisee/cnn_dailymail`, config 3.0.0, test split, `.shuffle(seed=42).select(range(1000))`
  (the paper's `evaluate_sum.ipynb`); fields article / highlights / id. Shot: train split after
  `.shuffle(seed=42)`, first item. The revision is pinned in `conf/task/cnndm.yaml`, and the commit it
  resolves to is recorded in `selection()`.
- Data, offline: `cnndm/specbench_cnndm_test_80.jsonl` in `data_dir()` (shipped in `tasks/data/`, whose
  README.md gives provenance and licences; `$REPLICATE_DATA_DIR` overrides): 80 real test articles from
  Spec-Bench (fields question_id, article, reference = highlights joined by spaces). They are not the paper's
  1000 items (that selection depends on the hub's row order). The last `offline.held_out_items` (5) items are
  held out: the last one is the shot, the 4 before it are the dev prompts' queries; the first 75 are scored.
- Prompt, post-processing, metric (ROUGE-2 F1, also ROUGE-1 and ROUGE-L), paper-compatible scoring and
  the optional short-baseline filter: as `tasks.summarization` describes for both summarization tasks.
- Departure from the paper's code beyond those: offline data are a different, smaller set of test items.
"""

from tasks.summarization import SummarizationTask


class CnnDailyMailTask(SummarizationTask):
    name = "cnndm"
    title = "CNN/DailyMail"
