"""ROUGE F1 per sample (Google's `rouge_score`, as the paper's notebook uses) and bootstrap intervals.

The paper scores with `rouge_scorer.RougeScorer(['rouge2'], use_stemmer=True)` and averages the ROUGE-2
F1 over samples. We compute ROUGE-1, ROUGE-2 and ROUGE-L F1 the same way (no `evaluate.load('rouge')`,
which needs the hub). The notebook calls `score(prediction, reference)`, i.e. with the arguments swapped;
F1 is symmetric in them, so F1 is unaffected and we pass them in the documented order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rouge_score import rouge_scorer


class RougeF1:
    """F1 of the configured ROUGE types for one (reference, prediction) pair."""

    def __init__(self, rouge_types: Sequence[str], use_stemmer: bool):
        self.rouge_types = list(rouge_types)
        self._scorer = rouge_scorer.RougeScorer(self.rouge_types, use_stemmer=use_stemmer)

    def __call__(self, reference: str, prediction: str) -> dict[str, float]:
        # rouge_score already gives 0 for an empty prediction; the guard keeps that a documented contract.
        if not prediction.strip():
            return dict.fromkeys(self.rouge_types, 0.0)
        scores = self._scorer.score(target=reference, prediction=prediction)
        return {name: float(scores[name].fmeasure) for name in self.rouge_types}


def bootstrap_interval(
    values: Sequence[float], resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample `values` with replacement `resamples` times
    (numpy generator seeded with `seed`) and take the central `confidence` mass of the resampled means."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    generator = np.random.default_rng(seed)
    # Drawing in chunks bounds memory for large sample counts (1000 resamples x 10k samples is 80 MB).
    means = []
    chunk = max(1, 2_000_000 // data.size)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        indices = generator.integers(0, data.size, size=(count, data.size))
        means.append(data[indices].mean(axis=1))
    all_means = np.concatenate(means)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(all_means, [tail, 1.0 - tail])
    return float(low), float(high)


def summarize_metric(values: Sequence[float], bootstrap: Mapping[str, Any]) -> dict[str, float]:
    """Mean and bootstrap interval of one metric, with the bootstrap settings from the config."""
    low, high = bootstrap_interval(
        values, resamples=bootstrap["resamples"], confidence=bootstrap["confidence"], seed=bootstrap["seed"]
    )
    mean = float(np.mean(values)) if len(values) else float("nan")
    return {"mean": mean, "ci_low": low, "ci_high": high}
