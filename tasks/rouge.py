"""ROUGE F1 per sample (Google's `rouge_score`, as the paper's notebook uses) and the mean with its bootstrap
interval (`replicate.statistics`).

The paper scores with `rouge_scorer.RougeScorer(['rouge2'], use_stemmer=True)` and averages the ROUGE-2
F1 over samples. We compute ROUGE-1, ROUGE-2 and ROUGE-L F1 the same way (no `evaluate.load('rouge')`,
which needs the hub). The notebook calls `score(prediction, reference)`, i.e. with the arguments swapped;
F1 is symmetric in them, so F1 is unaffected and we pass them in the documented order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from replicate.statistics import bootstrap_interval


class RougeF1:
    """F1 of the configured ROUGE types for one (reference, prediction) pair."""

    def __init__(self, rouge_types: Sequence[str], use_stemmer: bool):
        # Imported here, not at the top: `tasks` is imported by every config (replicate.config), and rouge_score
        # pulls in nltk and scikit-learn; the GPU check, which scores nothing, runs on a machine without them.
        from rouge_score import rouge_scorer

        self.rouge_types = list(rouge_types)
        self._scorer = rouge_scorer.RougeScorer(self.rouge_types, use_stemmer=use_stemmer)

    def __call__(self, reference: str, prediction: str) -> dict[str, float]:
        # rouge_score already gives 0 for an empty prediction; the guard keeps that a documented contract.
        if not prediction.strip():
            return dict.fromkeys(self.rouge_types, 0.0)
        scores = self._scorer.score(target=reference, prediction=prediction)
        return {name: float(scores[name].fmeasure) for name in self.rouge_types}


def summarize_metric(values: Sequence[float], bootstrap: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean and percentile bootstrap interval of one metric, with the bootstrap settings from the config
    (the interval is None with fewer than 2 values)."""
    if not len(values):
        raise ValueError("no scores to summarize")
    interval = bootstrap_interval(
        [values],
        np.mean,
        resamples=bootstrap["resamples"],
        confidence=bootstrap["confidence"],
        seed=bootstrap["seed"],
    )
    low, high = interval or (None, None)
    return {"mean": float(np.mean(values)), "ci_low": low, "ci_high": high}
