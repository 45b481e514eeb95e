"""The one bootstrap (`scipy.stats.bootstrap`, percentile, seeded) against closed forms: the normal
approximation of a mean's interval, and the delta method for a paired ratio of means (the speedup)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replicate.records import DecodeRecord
from replicate.run.metrics import decoding_metrics
from replicate.statistics import bootstrap_interval, ratio_of_means
from tests.helpers import config_bootstrap

SETTINGS = {"resamples": 4000, "confidence": 0.95, "seed": 0}
Z_95 = 1.959963984540054


def test_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(3).uniform(0.0, 0.4, size=400)
    low, high = bootstrap_interval([values], np.mean, **SETTINGS)
    half_width = Z_95 * values.std() / math.sqrt(len(values))  # the bootstrap's own variance: ddof=0
    assert low == pytest.approx(values.mean() - half_width, rel=0.02)
    assert high == pytest.approx(values.mean() + half_width, rel=0.02)


def test_paired_ratio_matches_the_delta_method_and_is_narrower_than_unpaired():
    """Speedup-like data: the method's times track the baseline's (same prompts), so pairing matters."""
    rng = np.random.default_rng(5)
    baseline = rng.uniform(0.02, 0.08, size=300)  # s/token per prompt
    method = baseline / 1.4 * rng.normal(1.0, 0.05, size=300)
    ratio = baseline.mean() / method.mean()
    low, high = bootstrap_interval([baseline, method], ratio_of_means, paired=True, **SETTINGS)
    # Delta method: var(ratio) ~ var(b - R m) / (n mean(m)^2).
    half_width = Z_95 * (baseline - ratio * method).std() / (math.sqrt(len(baseline)) * method.mean())
    assert low == pytest.approx(ratio - half_width, rel=0.01)
    assert high == pytest.approx(ratio + half_width, rel=0.01)
    unpaired = bootstrap_interval([baseline, method], ratio_of_means, paired=False, **SETTINGS)
    assert unpaired[1] - unpaired[0] > 3 * (high - low)


def test_seeded_degenerate_and_too_small():
    values = np.random.default_rng(1).normal(size=50)
    first = bootstrap_interval([values], np.mean, **SETTINGS)
    assert first == bootstrap_interval([values], np.mean, **SETTINGS)
    assert first != bootstrap_interval([values], np.mean, **{**SETTINGS, "seed": 1})
    wider = bootstrap_interval([values], np.mean, **{**SETTINGS, "confidence": 0.99})
    assert wider[0] < first[0] and wider[1] > first[1]
    assert bootstrap_interval([[0.25] * 10], np.mean, **SETTINGS) == (0.25, 0.25)
    assert bootstrap_interval([[0.25]], np.mean, **SETTINGS) is None
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([values], np.mean, **{**SETTINGS, "confidence": 95})
    with pytest.raises(ValueError, match="same length"):
        bootstrap_interval([[1.0, 2.0], [1.0]], ratio_of_means, paired=True, **SETTINGS)


def decode(seconds: float, tokens: int = 10) -> DecodeRecord:
    return DecodeRecord([1] * tokens, tokens, 0.0, seconds, tokens, 0, [], [], [])


def test_run_speedup_interval_resamples_the_pairs():
    baselines = [decode(1.0 + 0.1 * i) for i in range(20)]
    methods = [decode((1.0 + 0.1 * i) / 2) for i in range(20)]  # exactly twice as fast on every prompt
    metrics = decoding_metrics(methods, baselines, [True] * 20, False, config_bootstrap())
    assert metrics["speedup"] == pytest.approx(2.0)
    assert metrics["speedup_ci"] == pytest.approx([2.0, 2.0])  # unpaired resampling would spread it
    assert metrics["speedup_total_time_ci"] == pytest.approx([2.0, 2.0])
