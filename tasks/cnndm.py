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
- Prompt: `"Article: {shot article}\\nSummary: {shot highlights, newlines removed}\\n"` +
  `"Article: {article}\\nSummary:"`; the runner cuts over-long prompts with `truncate_middle`.
- Post-processing: completion cut at the first `"\\nArticle:"`, stripped (the notebook cuts only when the
  match is after position 0 and does not strip; stripping cannot change ROUGE).
- Metric: ROUGE-2 F1 (`rouge_score`, stemmer), also ROUGE-1 and ROUGE-L; mean with a bootstrap interval.
- Paper-compatible scoring (`paper_postprocess`, on by default): also scored as the notebook scores, on the
  completion without its first generated token (the notebook decodes `generate_ids[0, input_ids.size(0):]`,
  size(0) being the batch size 1), cut at `"\\nArticle:"` only after position 0; metrics.json
  `paper_compatible`, beside the faithful score, which it never replaces.
- Departures from the paper's code: no silent skip of short baseline outputs (`min_baseline_chars_filter`,
  off by default; when set, every statistic is over the kept samples and metrics.json lists `excluded_ids`);
  offline data are a different, smaller set of test items.
"""

from tasks.summarization import SummarizationTask


class CnnDailyMailTask(SummarizationTask):
    name = "cnndm"
    title = "CNN/DailyMail"
