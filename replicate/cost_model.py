"""What self-speculative decoding should cost on this device, and how close the implementation comes.

The cost profile times the three kinds of forward pass decoding is made of, at one cache length:
a full step (1 token, full model), a draft step (1 token, skip plan active) and a verification pass over
k + 1 tokens for k = 0..K. It goes through `replicate.core.decoding.forward`, `SkipAwareCache`, `skip_sublayers`
and `truncate_cache`, i.e. exactly the code paths the decoding loops use.

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
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from replicate.core.decoding import forward, synchronize
from replicate.core.models import LoadedModel
from replicate.core.skipping import SkipAwareCache, skip_sublayers, truncate_cache
from replicate.records import CostModelStats, DecodeRecord


def _timed(function: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call, with the device drained before and after so that queued work is counted."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def measure_cost_profile(
    loaded: LoadedModel, context_length: int, max_draft_tokens: int, repeats: int, warmup: int, seed: int = 0
) -> dict[str, Any]:
    """Median seconds of a full step, a draft step and verify passes over k + 1 tokens (k = 0..K) with
    `context_length` tokens in the KV cache.

    Every pass of one round starts from the same cache: it is truncated back to `context_length` after
    each pass, as decoding truncates after verification. The kinds of pass are interleaved in a shuffled
    order per round so that slow drift (thermal, other processes) hits them alike; `warmup` rounds are
    run and discarded first. Returns a JSON-ready dict; `verify_s[k]` is the pass over k + 1 tokens."""
    if context_length < 1 or max_draft_tokens < 0 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"need context_length >= 1, max_draft_tokens >= 0, repeats >= 1, warmup >= 0; got "
            f"{context_length}, {max_draft_tokens}, {repeats}, {warmup}"
        )
    if context_length + max_draft_tokens + 1 > loaded.max_context:
        raise ValueError(
            f"context_length={context_length} plus {max_draft_tokens + 1} verified tokens exceeds the model's "
            f"max_context={loaded.max_context}; lower cost_model.context_length"
        )
    model, device, plan = loaded.model, loaded.device, loaded.plan
    generator = torch.Generator().manual_seed(seed)
    vocab_size = model.config.vocab_size
    # The token values do not change the cost of a pass; random ids give a cache of the right length.
    context_ids = torch.randint(vocab_size, (1, context_length), generator=generator).to(device)
    next_ids = torch.randint(vocab_size, (1, max_draft_tokens + 1), generator=generator).to(device)
    cache = SkipAwareCache(config=model.config)
    forward(model, context_ids, cache, 0, last_only=True)

    def one_token() -> None:
        forward(model, next_ids[:, :1], cache, context_length, last_only=True)

    def verify(num_draft_tokens: int) -> Callable[[], None]:
        return lambda: forward(model, next_ids[:, : num_draft_tokens + 1], cache, context_length, False)

    # A draft step is the one-token pass with the skip plan active (set up below, outside the clock).
    passes: dict[str, Callable[[], None]] = {"full_step": one_token, "draft_step": one_token}
    passes.update({f"verify_{k}": verify(k) for k in range(max_draft_tokens + 1)})
    samples: dict[str, list[float]] = {name: [] for name in passes}
    order = list(passes)
    shuffler = random.Random(seed)
    for round_index in range(warmup + repeats):
        shuffler.shuffle(order)
        for name in order:
            if name == "draft_step":
                # Entering the skip context is loop bookkeeping, not part of the pass: keep it untimed.
                with skip_sublayers(model, plan):
                    seconds = _timed(passes[name], device)
            else:
                seconds = _timed(passes[name], device)
            truncate_cache(cache, context_length)
            if round_index >= warmup:
                samples[name].append(seconds)

    meta = {
        "context_length": context_length,
        "max_draft_tokens": max_draft_tokens,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "skip": {"attention": list(plan.attention), "mlp": list(plan.mlp)},
    }
    return _summarize(meta, samples)


def _summarize(meta: dict[str, Any], samples: dict[str, list[float]]) -> dict[str, Any]:
    """A profile from raw per-pass seconds: medians, and every pass relative to a full step."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    full = medians["full_step"]
    verify_s = [medians[f"verify_{k}"] for k in range(meta["max_draft_tokens"] + 1)]
    return {
        **meta,
        "full_step_s": full,
        "draft_step_s": medians["draft_step"],
        "verify_s": verify_s,
        "draft_to_full": medians["draft_step"] / full,
        "verify_to_full": [seconds / full for seconds in verify_s],
        "samples_s": samples,
    }


def pool_profiles(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """One profile from two measurements of the same passes (e.g. before and after a timed run, so that
    the machine's drift in between is averaged out); `drift` = full step after / full step before."""
    samples = {name: [*values, *after["samples_s"][name]] for name, values in before["samples_s"].items()}
    meta = {key: value for key, value in before.items() if key not in _SUMMARY_KEYS}
    meta["repeats"] = before["repeats"] + after["repeats"]
    return {**_summarize(meta, samples), "drift": after["full_step_s"] / before["full_step_s"]}


_SUMMARY_KEYS = (
    "full_step_s",
    "draft_step_s",
    "verify_s",
    "draft_to_full",
    "verify_to_full",
    "samples_s",
    "drift",
)


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


def predicted_decode_time(run: DecodeTrace, profile: Mapping[str, Any]) -> float:
    """Predicted seconds of one decode: its measured prefill plus the profile's cost of every cycle, and a
    full step per full forward outside cycles (all of them for autoregressive decoding)."""
    cycles = sum(num * profile["draft_step_s"] + _verify_seconds(profile, num) for num in run.drafted)
    plain_steps = run.full_forwards - 1 - len(run.drafted)
    return run.prefill_time + cycles + plain_steps * profile["full_step_s"]


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
    return float(baseline_seconds_per_token.mean() / method_seconds_per_token.mean())


def _predicted_times(
    methods: Sequence[DecodeTrace], baselines: Sequence[DecodeTrace] | None, profile: Mapping[str, Any]
) -> tuple[np.ndarray, ...]:
    """Per sample (n,): predicted method seconds, predicted baseline seconds, method and baseline tokens."""
    if not methods:
        raise ValueError("no samples were decoded; the cost model has nothing to predict")
    paired = baselines if baselines is not None else [None] * len(methods)
    return (
        np.array([predicted_decode_time(method, profile) for method in methods]),
        np.array([predicted_baseline_time(m, b, profile) for m, b in zip(methods, paired)]),
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


def cost_model_metrics(
    methods: Sequence[DecodeRecord], baselines: Sequence[DecodeRecord] | None, profile: Mapping[str, Any]
) -> CostModelStats:
    """predicted_speedup, efficiency, overhead_fraction (and the baseline's) of decodes against a cost
    profile from `measure_cost_profile`. See the module docstring."""
    predicted_method, predicted_baseline, method_tokens, baseline_tokens = _predicted_times(
        methods, baselines, profile
    )
    measured_method = np.array([run.total_time for run in methods])
    efficiency = float(predicted_method.sum() / measured_method.sum())
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
    )
    if baselines is not None:
        measured_baseline = np.array([run.total_time for run in baselines])
        baseline_efficiency = float(predicted_baseline.sum() / measured_baseline.sum())
        measured_speedup = _speedup(measured_baseline / baseline_tokens, measured_method / method_tokens)
        stats = dataclasses.replace(
            stats,
            baseline_efficiency=baseline_efficiency,
            baseline_overhead_fraction=1.0 - baseline_efficiency,
            speedup_efficiency=measured_speedup / speedup,
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
