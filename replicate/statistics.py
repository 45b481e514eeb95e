"""The one bootstrap of the project: `scipy.stats.bootstrap`, percentile method, seeded.

Every interval of a run (speedup, acceptance rate) and of a task score (ROUGE, pass@k) comes from
`bootstrap_interval`. A statistic of paired samples (the speedup: the baseline's and the method's times of
the same prompts) resamples the pairs together (`paired=True`), so the interval reflects the spread of the
ratio, not of each mean on its own. The percentile method keeps the intervals comparable with the ones the
project reported before it used scipy (the same definition; the resampled draws differ).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from replicate.schema import FieldError, MappingAccess, at_least

# Resamples drawn per vectorized call: bounds memory (resamples x samples floats) for large sample counts.
_VALUES_PER_BATCH = 2_000_000


@dataclass(frozen=True)
class BootstrapConfig(MappingAccess):
    """Settings of a percentile bootstrap, defined once in conf/bootstrap/default.yaml and composed as a run's
    `bootstrap` (speedup, acceptance and cost-model intervals), each task's `bootstrap` (its score's interval),
    the bench's and the GPU check's."""

    resamples: int
    confidence: float
    seed: int

    def __post_init__(self):
        at_least("resamples", self.resamples, 1)
        if not 0.0 < self.confidence < 1.0:
            raise FieldError("confidence", self.confidence, "must be in (0, 1)")

    def settings(self) -> dict[str, float]:
        """The keyword arguments of `bootstrap_interval`."""
        return {"resamples": self.resamples, "confidence": self.confidence, "seed": self.seed}


def ratio_of_means(numerator: np.ndarray, denominator: np.ndarray, axis: int = -1) -> np.ndarray:
    """mean(numerator) / mean(denominator) along `axis` (the speedup: baseline time over method time)."""
    return np.mean(numerator, axis=axis) / np.mean(denominator, axis=axis)


def bootstrap_interval(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., np.ndarray],
    *,
    resamples: int,
    confidence: float,
    seed: int,
    paired: bool = False,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(*samples, axis=-1)`; None with fewer than 2 observations.

    samples: one sequence per argument of `statistic`, each of n observations (paired: the same n, resampled
    together). statistic: vectorized along `axis` (e.g. `np.mean`, `ratio_of_means`)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    data = tuple(np.asarray(sample, dtype=float) for sample in samples)
    sizes = {len(sample) for sample in data}
    if paired and len(sizes) != 1:
        raise ValueError(f"paired samples must have the same length, got lengths {sorted(sizes)}")
    if min(sizes) < 2:
        return None
    if all(np.all(sample == sample[0]) for sample in data):
        # Every resample is the sample itself; scipy warns about degenerate data, the interval is the value.
        value = float(statistic(*data, axis=-1))
        return value, value
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=resamples,
        batch=max(1, _VALUES_PER_BATCH // max(sizes)),
        vectorized=True,
        paired=paired,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval_list(interval: tuple[float, float] | None) -> list[float] | None:
    """A `bootstrap_interval` as the JSON records store it: [low, high], or None."""
    return None if interval is None else list(interval)
