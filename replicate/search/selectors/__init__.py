"""Skip-set selectors other than the paper's Bayesian optimization: `search.strategy` = cosine_similarity,
knapsack or dynamic_programming (`bayesian` is `replicate.search.run`).

    python -m replicate.search model=smollm2_135m search=smollm2_cpu search.strategy=knapsack

Not to be confused with `replicate.search.strategies`, which builds the positional sets of the paper's
Table 7 ablation (first / middle / last / random layers of a given size). A selector here *chooses* a
skip set from measurements on the dev prompts, as the Bayesian search does, under the same bounds
(`search.min_skipped`, `search.max_skipped`), candidates (`search.candidates`), dev prompts and objective:

- `cosine_similarity` (Draft on the Fly style): rank sub-blocks by the cosine similarity of their input
  and output residual state; the family is the top-k sets.
- `knapsack` (KnapSpec style): per-sub-block cost saving from the cost profile, weight from the
  single-skip teacher-forced agreement; one knapsack answer per acceptance floor.
- `dynamic_programming` (CLaSp style): a DP over the sub-blocks keeping, per number skipped, the draft
  state closest (cosine) to the full model's; one set per number skipped.

Each produces a family of sets; every set is then scored like a Bayesian trial (decoded or teacher-forced,
`search.acceptance_estimate`) and logged to `trials.jsonl`; the best is the answer (`selection.run_selection`).

Modules: `residual_stream` (per-sub-block states of the full model), `cosine_similarity`, `knapsack`,
`dynamic_programming`, `selection` (the run).
"""
