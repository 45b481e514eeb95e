"""Edges of the result-defining modules that `make mutation` found unguarded (docs/testing.md): each test here
kills mutants that survived the rest of the suite. Expected values are written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from replicate.statistics import BootstrapConfig, bootstrap_interval, ratio_of_means

SETTINGS = {"resamples": 500, "confidence": 0.9, "seed": 0}


def test_bootstrap_settings_are_checked_naming_the_field_and_value():
    assert BootstrapConfig(resamples=1, confidence=0.5, seed=0).settings() == {
        "resamples": 1, "confidence": 0.5, "seed": 0,
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"^resamples=0: must be >= 1$"):
        BootstrapConfig(resamples=0, confidence=0.95, seed=0)
    for confidence in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match=rf"^confidence={confidence!r}: must be in \(0, 1\)$"):
            BootstrapConfig(resamples=10, confidence=confidence, seed=0)


def test_bootstrap_interval_bounds_on_its_arguments():
    values = [0.1, 0.4, 0.2, 0.3]
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^confidence must be in \(0, 1\), got {confidence}$"):
            bootstrap_interval([values], np.mean, **{**SETTINGS, "confidence": confidence})
    with pytest.raises(ValueError, match=r"^resamples must be >= 1, got 0$"):
        bootstrap_interval([values], np.mean, **{**SETTINGS, "resamples": 0})
    one = bootstrap_interval([values], np.mean, **{**SETTINGS, "resamples": 1})
    assert one is not None and 0.1 <= one[0] <= one[1] <= 0.4  # a single resample is allowed


def test_two_observations_are_enough_for_an_interval():
    low, high = bootstrap_interval([[1.0, 3.0]], np.mean, **SETTINGS)
    # resamples of {1, 3}: means 1, 2 or 3; a 90% percentile interval of them spans [1, 3]
    assert (low, high) == (1.0, 3.0)


def test_unpaired_is_the_default_and_takes_samples_of_different_sizes():
    low, high = bootstrap_interval([[2.0, 2.0, 2.0], [1.0, 1.0]], ratio_of_means, **SETTINGS)
    assert (low, high) == (2.0, 2.0)  # constant samples: the ratio of their means, 2 / 1


def test_the_number_of_resamples_is_the_one_asked_for():
    values = np.random.default_rng(7).uniform(size=30)
    coarse = bootstrap_interval([values], np.mean, **{**SETTINGS, "resamples": 3})
    fine = bootstrap_interval([values], np.mean, **{**SETTINGS, "resamples": 3000})
    assert coarse != fine
    # three resample means: the 5th and 95th percentiles lie between the smallest and largest of them
    assert fine[0] < values.mean() < fine[1]
