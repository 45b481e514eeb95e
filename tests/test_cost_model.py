"""The cost model against hand-computed predictions, the profile on the tiny model, and the runner hook."""

from __future__ import annotations

import json

import pytest
import torch

import replicate
from replicate.config import compose_config
from replicate.cost_model import (
    _summarize,
    break_even_acceptance,
    cost_model_metrics,
    measure_cost_profile,
    pool_profiles,
    predicted_decode_time,
    speedup_for_acceptance,
)
from replicate.records import DecodeRecord, DecodeResult
from replicate.run.runner import run
from tests.helpers import config_bootstrap


@pytest.fixture(autouse=True)
def one_thread():
    """The 64-wide tiny model runs fastest on one thread (and is not stalled by a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Full step 10 ms, draft step 4 ms, verifying k drafts (k + 1 tokens) 10 + k ms.
PROFILE = {"full_step_s": 0.010, "draft_step_s": 0.004, "verify_s": [0.010, 0.011, 0.012, 0.013, 0.014]}


def speculative_run(drafted, accepted, prefill, total) -> DecodeRecord:
    new_tokens = 1 + sum(a + 1 for a in accepted)  # the prefill's token, then accepted drafts + 1 per cycle
    result = DecodeResult([0] * new_tokens, prefill, total, 1 + len(drafted), sum(drafted), drafted, accepted)
    return DecodeRecord.from_result(result)


def autoregressive_run(new_tokens, prefill, total) -> DecodeRecord:
    return DecodeRecord.from_result(DecodeResult([0] * new_tokens, prefill, total, new_tokens))


def test_hand_made_trace_gives_the_hand_computed_prediction():
    method = speculative_run([4, 2, 0], [4, 1, 0], prefill=0.050, total=0.200)
    assert method.new_tokens == 9
    # 50 ms prefill + (4 * 4 + 14) + (2 * 4 + 12) + (0 + 10) ms of cycles.
    assert predicted_decode_time(method, PROFILE) == pytest.approx(0.110)
    baseline = autoregressive_run(9, prefill=0.050, total=0.160)
    assert predicted_decode_time(baseline, PROFILE) == pytest.approx(0.050 + 8 * 0.010)

    metrics = cost_model_metrics([method], [baseline], PROFILE, bootstrap=config_bootstrap())
    assert metrics.predicted_speedup == pytest.approx(0.130 / 0.110)
    assert metrics.efficiency == pytest.approx(0.110 / 0.200)
    assert metrics.overhead_fraction == pytest.approx(1 - 0.110 / 0.200)
    assert metrics.baseline_efficiency == pytest.approx(0.130 / 0.160)
    assert metrics.speedup_efficiency == pytest.approx((0.160 / 0.200) / (0.130 / 0.110))
    assert metrics.cost_profile == PROFILE


def test_speedup_is_the_papers_mean_time_per_token_ratio():
    methods = [speculative_run([4], [4], 0.0, 1.0), speculative_run([2, 2], [0, 0], 0.0, 1.0)]
    baselines = [autoregressive_run(6, 0.0, 1.0), autoregressive_run(3, 0.0, 1.0)]
    # Per-token predicted seconds: method (30 ms / 6, 2 * 20 ms / 3), baseline (50 ms / 6, 20 ms / 3).
    method_per_token = (0.030 / 6 + 0.040 / 3) / 2
    baseline_per_token = (0.050 / 6 + 0.020 / 3) / 2
    metrics = cost_model_metrics(methods, baselines, PROFILE, bootstrap=config_bootstrap())
    assert metrics.predicted_speedup == pytest.approx(baseline_per_token / method_per_token)


def test_without_a_baseline_run_the_baseline_is_predicted_from_the_methods_tokens():
    metrics = cost_model_metrics(
        [speculative_run([4], [4], 0.05, 0.1)], None, PROFILE, bootstrap=config_bootstrap()
    )
    assert metrics.predicted_speedup == pytest.approx((0.05 + 5 * 0.010) / (0.05 + 0.030))
    assert metrics.baseline_efficiency is None and metrics.speedup_efficiency is None
    autoregressive = cost_model_metrics(
        [autoregressive_run(5, 0.05, 0.1)], None, PROFILE, bootstrap=config_bootstrap()
    )
    assert autoregressive.predicted_speedup == pytest.approx(1.0)


def test_each_decode_priced_with_its_own_profile_and_intervals_over_samples():
    """A machine twice as slow for the second sample: priced with its own (slower) profile, the second decode
    is explained as well as the first, and efficiency comes with a bootstrap interval."""
    slow = {
        key: [2 * v for v in value] if isinstance(value, list) else 2 * value
        for key, value in PROFILE.items()
    }
    methods = [speculative_run([4], [4], 0.0, 0.030), speculative_run([4], [4], 0.0, 0.060)]
    baselines = [autoregressive_run(6, 0.0, 0.050), autoregressive_run(6, 0.0, 0.100)]
    one_profile = cost_model_metrics(methods, baselines, PROFILE, bootstrap=config_bootstrap())
    paired = cost_model_metrics(
        methods, baselines, PROFILE, sample_profiles=[PROFILE, slow], bootstrap=config_bootstrap()
    )
    assert one_profile.efficiency == pytest.approx(0.060 / 0.090)  # the drift looks like overhead
    assert paired.efficiency == pytest.approx(1.0) and paired.speedup_efficiency == pytest.approx(1.0)
    assert paired.efficiency_ci == pytest.approx([1.0, 1.0]) and paired.profiles_per_sample
    low, high = one_profile.efficiency_ci
    assert low < one_profile.efficiency < high and not one_profile.profiles_per_sample
    assert one_profile.speedup_efficiency_ci is not None
    with pytest.raises(ValueError, match="2 decodes but 1 per-sample profiles"):
        cost_model_metrics(
            methods, baselines, PROFILE, sample_profiles=[PROFILE], bootstrap=config_bootstrap()
        )


def test_draft_passes_beyond_the_kept_drafts_are_priced():
    """Fixed-length drafting past an EOS runs passes whose drafts are dropped: they cost draft steps."""
    result = DecodeResult([0] * 3, 0.0, 1.0, 2, draft_forwards=4, drafted=[2], accepted=[1])
    assert predicted_decode_time(DecodeRecord.from_result(result), PROFILE) == pytest.approx(
        4 * 0.004 + 0.012
    )


def test_drafts_beyond_the_profile_are_a_clear_error():
    with pytest.raises(ValueError, match="at most 4 drafts"):
        predicted_decode_time(speculative_run([5], [0], 0.0, 1.0), PROFILE)


def test_acceptance_rate_predictions():
    # K = 4 at acceptance 0.5: 3 tokens per cycle of 4 * 4 + 14 = 30 ms, against 3 * 10 ms.
    assert speedup_for_acceptance(PROFILE, 4, 0.5) == pytest.approx(1.0)
    assert break_even_acceptance(PROFILE, 4) == pytest.approx(0.5)
    assert speedup_for_acceptance(PROFILE, 2, 1.0) == pytest.approx(0.030 / 0.020)


def test_profile_of_the_tiny_model_covers_every_pass():
    loaded = replicate.load("tiny_llama")
    profile = measure_cost_profile(loaded, context_length=16, max_draft_tokens=3, repeats=2, warmup=1)
    assert len(profile["verify_s"]) == 4 and len(profile["verify_to_full"]) == 4
    assert all(
        seconds > 0 for seconds in [profile["full_step_s"], profile["draft_step_s"], *profile["verify_s"]]
    )
    assert all(len(values) == 2 for values in profile["samples_s"].values())
    assert profile["skip"] == {"attention": [1], "mlp": [2]} and profile["context_length"] == 16
    json.dumps(profile)  # goes into metrics.json as is
    with pytest.raises(ValueError, match="exceeds the model's max_context"):
        measure_cost_profile(loaded, context_length=2040, max_draft_tokens=12, repeats=1, warmup=0)


def test_runner_writes_the_cost_model_into_metrics(tmp_path):
    overrides = [
        "model=tiny_llama", "task=humaneval", "n_samples=1", "max_new_tokens=8", "method=self_speculative",
        "method.max_draft_tokens=4", "cost_model.enabled=true", "cost_model.context_length=32",
        "cost_model.repeats=1", "cost_model.warmup=0",
    ]  # fmt: skip
    metrics = run(compose_config(overrides), tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())["cost_model"]
    for key in ("predicted_speedup", "efficiency", "overhead_fraction"):
        assert isinstance(written[key], float) and written[key] == getattr(metrics.cost_model, key)
    assert written["efficiency"] > 0 and written["cost_profile"]["max_draft_tokens"] == 4


def test_cost_model_is_off_by_default(tmp_path):
    metrics = run(compose_config(["model=tiny_llama", "n_samples=1", "max_new_tokens=4"]), tmp_path)
    assert metrics.cost_model is None and metrics.get("cost_model.predicted_speedup") is None


def test_pooled_profiles_take_medians_over_both_and_report_drift():
    def profile(full, draft, verify):
        samples = {"full_step": full, "draft_step": draft, **{f"verify_{k}": v for k, v in enumerate(verify)}}
        meta = {"context_length": 8, "max_draft_tokens": len(verify) - 1, "repeats": len(full), "warmup": 0}
        return _summarize(meta, samples)

    before = profile([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    after = profile([3.0, 3.0, 3.0], [0.5, 0.5, 0.5], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    pooled = pool_profiles(before, after)
    assert pooled["full_step_s"] == 2.0 and pooled["verify_s"] == [1.0, 2.0] and pooled["drift"] == 3.0
    assert pooled["repeats"] == 6 and pooled["draft_to_full"] == 0.25
    middle = profile([2.0, 2.0, 2.0], [0.5, 0.5, 0.5], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    three = pool_profiles(before, middle, after)  # e.g. profiles interleaved with a race
    assert three["repeats"] == 9 and three["full_step_s"] == 2.0 and three["drift"] == 3.0
