"""What self-speculative decoding should cost on this device, and how close the implementation comes.

The cost profile (`replicate.cost_profile`, re-exported here) times the three kinds of forward pass decoding
is made of, at one cache length: a full step, a draft step and a verification pass over k + 1 tokens.

The cost model turns a run's per-cycle trace into a predicted time (all times in seconds):

    predicted method time   = prefill + sum over cycles (drafted * draft_step + verify[drafted])
                              (+ full_step for each full forward that belongs to no cycle)
    predicted baseline time = prefill + (new_tokens - 1) * full_step   (the prefill yields the first token)

The prefill is the one measured in the run (it depends on the prompt length). Definitions:
- predicted_speedup: the paper's speedup (mean baseline time per token / mean method time per token)
  computed from the predicted times: what an implementation without any cost outside forward passes
  would reach with the same acceptance trace.
- efficiency: predicted method time / measured method time, summed over samples (1.0 = no overhead).
- overhead_fraction: (measured - predicted) / measured = 1 - efficiency: the share of the measured time
  that the forward passes of the profile do not explain (Python work, host syncs, cache bookkeeping,
  sampling; negative when the profile overestimates the passes, e.g. at another cache length).
- speedup_efficiency: measured speedup / predicted speedup (= efficiency / baseline_efficiency).

A machine whose speed drifts (other processes, thermals) moves the measured times away from a profile taken
at another moment. Given one profile per decode, measured next to it (`sample_profiles`, e.g. the bench's
profiles interleaved with its decodes), each decode is priced at the machine's speed of its own moment;
efficiency and speedup_efficiency come with percentile bootstrap intervals over samples either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from replicate.cost_profile import _summarize, measure_cost_profile, pool_profiles
from replicate.metrics_record import CostModelStats
from replicate.records import DecodeRecord
from replicate.statistics import BootstrapConfig, bootstrap_interval, interval_list, ratio_of_means

__all__ = [
    "_summarize",
    "break_even_acceptance",
    "cost_model_metrics",
    "measure_cost_profile",
    "pool_profiles",
    "predicted_speedup",
    "speedup_for_acceptance",
]


def _verify_seconds(profile: Mapping[str, Any], num_draft_tokens: int) -> float:
    verify_s = profile["verify_s"]
    if num_draft_tokens >= len(verify_s):
        raise ValueError(
            f"a cycle drafted {num_draft_tokens} tokens but the cost profile covers verification of at most "
            f"{len(verify_s) - 1} drafts; measure it with max_draft_tokens >= {num_draft_tokens}"
        )
    return verify_s[num_draft_tokens]


class DecodeTrace(Protocol):
    """What the cost model reads of a decode (a `DecodeRecord` has it all): its token count, its full
    forwards (prefill included), the drafted count of each cycle and its measured prefill seconds."""

    new_tokens: int
    full_forwards: int
    drafted: Sequence[int]
    prefill_time: float


@dataclass(frozen=True)
class Trace:
    """A `DecodeTrace` from logged numbers (e.g. a search trial's `cycles`), to price it again."""

    new_tokens: int
    full_forwards: int
    drafted: Sequence[int]
    prefill_time: float


def _model_drafted(run: DecodeTrace) -> int:
    """Drafts of a decode that the draft model made (n-gram drafts cost no draft pass)."""
    sources = getattr(run, "draft_sources", None) or ["model"] * len(run.drafted)
    return sum(num for num, source in zip(run.drafted, sources) if source == "model")


def predicted_decode_time(run: DecodeTrace, profile: Mapping[str, Any]) -> float:
    """Predicted seconds of one decode: its measured prefill plus the profile's cost of every cycle, and a
    full step per full forward outside cycles (all of them for autoregressive decoding). Draft passes run
    beyond the drafts a cycle kept (fixed-length drafting past an EOS; a record's `draft_forwards`) are
    priced as draft steps too. A cycle drafted by n-gram lookup (`draft_sources`) costs its verification
    only; a first cycle verified in the prefill pass (`prefill_cycle`) is inside the measured prefill."""
    prefill_cycle = bool(getattr(run, "prefill_cycle", False))
    verified = list(run.drafted)[1:] if prefill_cycle else list(run.drafted)
    cycles = sum(_verify_seconds(profile, num) for num in verified)
    model_drafted = _model_drafted(run)
    extra_drafts = getattr(run, "draft_forwards", model_drafted) - model_drafted
    plain_steps = run.full_forwards - 1 - len(verified)
    return (
        run.prefill_time
        + cycles
        + (model_drafted + extra_drafts) * profile["draft_step_s"]
        + plain_steps * profile["full_step_s"]
    )


def predicted_baseline_time(
    method: DecodeTrace, baseline: DecodeTrace | None, profile: Mapping[str, Any]
) -> float:
    """Predicted autoregressive time of a sample: its baseline decode when there is one, else the method's
    token count decoded one full step at a time after the method's prefill."""
    if baseline is not None:
        return predicted_decode_time(baseline, profile)
    return method.prefill_time + (method.new_tokens - 1) * profile["full_step_s"]


def _speedup(baseline_seconds_per_token: np.ndarray, method_seconds_per_token: np.ndarray) -> float:
    """The paper's speedup: mean time per token over samples, autoregressive / method."""
    return float(ratio_of_means(baseline_seconds_per_token, method_seconds_per_token))


def _predicted_times(
    methods: Sequence[DecodeTrace],
    baselines: Sequence[DecodeTrace] | None,
    profile: Mapping[str, Any],
    sample_profiles: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[np.ndarray, ...]:
    """Per sample (n,): predicted method seconds, predicted baseline seconds, method and baseline tokens.
    Sample i is priced with `sample_profiles[i]` when given, else with `profile`."""
    if not methods:
        raise ValueError("no samples were decoded; the cost model has nothing to predict")
    if sample_profiles is not None and len(sample_profiles) != len(methods):
        raise ValueError(f"{len(methods)} decodes but {len(sample_profiles)} per-sample profiles")
    profiles = sample_profiles if sample_profiles is not None else [profile] * len(methods)
    paired = baselines if baselines is not None else [None] * len(methods)
    return (
        np.array([predicted_decode_time(method, p) for method, p in zip(methods, profiles)]),
        np.array([predicted_baseline_time(m, b, p) for m, b, p in zip(methods, paired, profiles)]),
        np.array([method.new_tokens for method in methods], dtype=float),
        np.array([(b or m).new_tokens for m, b in zip(methods, paired)], dtype=float),
    )


def predicted_speedup(
    methods: Sequence[DecodeTrace], baselines: Sequence[DecodeTrace] | None, profile: Mapping[str, Any]
) -> float:
    """The speedup the profile predicts for decodes (no timings needed but the prefill): e.g. a search
    trial's logged trace."""
    predicted_method, predicted_baseline, method_tokens, baseline_tokens = _predicted_times(
        methods, baselines, profile
    )
    return _speedup(predicted_baseline / baseline_tokens, predicted_method / method_tokens)


def _speedup_efficiency(
    measured_baseline: np.ndarray,
    measured_method: np.ndarray,
    predicted_baseline: np.ndarray,
    predicted_method: np.ndarray,
    axis: int = -1,
) -> np.ndarray:
    """Measured speedup / predicted speedup from per-sample seconds per token (each (..., n)), vectorized
    along `axis` for the bootstrap."""
    measured = ratio_of_means(measured_baseline, measured_method, axis=axis)
    return measured / ratio_of_means(predicted_baseline, predicted_method, axis=axis)


def cost_model_metrics(
    methods: Sequence[DecodeRecord],
    baselines: Sequence[DecodeRecord] | None,
    profile: Mapping[str, Any],
    sample_profiles: Sequence[Mapping[str, Any]] | None = None,
    *,
    bootstrap: BootstrapConfig,
) -> CostModelStats:
    """predicted_speedup, efficiency, overhead_fraction (and the baseline's) of decodes against a cost
    profile from `measure_cost_profile`, with bootstrap intervals over samples. `sample_profiles`: one
    profile per decode, measured next to it; each decode is then priced with its own, and `profile` (e.g.
    their pool) is the one recorded. See the module docstring."""
    predicted_method, predicted_baseline, method_tokens, baseline_tokens = _predicted_times(
        methods, baselines, profile, sample_profiles
    )
    measured_method = np.array([run.total_time for run in methods])
    efficiency = float(ratio_of_means(predicted_method, measured_method))  # = sum predicted / sum measured
    speedup = _speedup(predicted_baseline / baseline_tokens, predicted_method / method_tokens)
    stats = CostModelStats(
        predicted_speedup=speedup,
        efficiency=efficiency,
        overhead_fraction=1.0 - efficiency,
        predicted_time_s=float(predicted_method.sum()),
        measured_time_s=float(measured_method.sum()),
        baseline_efficiency=None,
        baseline_overhead_fraction=None,
        speedup_efficiency=None,
        cost_profile=dict(profile),
        efficiency_ci=interval_list(
            bootstrap_interval(
                [predicted_method, measured_method], ratio_of_means, paired=True, **bootstrap.settings()
            )
        ),
        profiles_per_sample=sample_profiles is not None,
    )
    if baselines is not None:
        measured_baseline = np.array([run.total_time for run in baselines])
        baseline_efficiency = float(ratio_of_means(predicted_baseline, measured_baseline))
        # Seconds per token of each sample (paired: the resampled pairs stay pairs).
        columns = [
            measured_baseline / baseline_tokens,
            measured_method / method_tokens,
            predicted_baseline / baseline_tokens,
            predicted_method / method_tokens,
        ]
        stats = dataclasses.replace(
            stats,
            baseline_efficiency=baseline_efficiency,
            baseline_overhead_fraction=1.0 - baseline_efficiency,
            speedup_efficiency=float(_speedup_efficiency(*columns)),
            speedup_efficiency_ci=interval_list(
                bootstrap_interval(columns, _speedup_efficiency, paired=True, **bootstrap.settings())
            ),
        )
    return stats


def speedup_for_acceptance(
    profile: Mapping[str, Any], num_draft_tokens: int, acceptance_rate: float
) -> float:
    """Speedup a fixed draft length K with acceptance rate r (accepted / drafted) would give on this
    profile: a cycle commits r * K + 1 tokens (the accepted drafts and the verifier's own token) for
    K draft steps and one verify pass, against r * K + 1 full steps (prefill left out)."""
    cycle_seconds = num_draft_tokens * profile["draft_step_s"] + _verify_seconds(profile, num_draft_tokens)
    return (acceptance_rate * num_draft_tokens + 1) * profile["full_step_s"] / cycle_seconds


def break_even_acceptance(profile: Mapping[str, Any], num_draft_tokens: int) -> float:
    """The acceptance rate at which drafting K tokens per cycle is exactly as fast as autoregressive
    decoding on this profile (above 1: no acceptance rate can pay for the cycle)."""
    cycle_seconds = num_draft_tokens * profile["draft_step_s"] + _verify_seconds(profile, num_draft_tokens)
    return (cycle_seconds / profile["full_step_s"] - 1) / num_draft_tokens
