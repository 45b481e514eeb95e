"""The cost profile: what one kind of forward pass costs on this device, at one cache length.

It times the three kinds of pass decoding is made of: a full step (1 token, full model), a draft step
(1 token, skip plan active) and a verification pass over k + 1 tokens for k = 0..K, through
`replicate.core.passes.forward`, the cache kind of the decodes (`replicate.core.kv_cache`), `skip_sublayers`
and `truncate_cache`, i.e. exactly the code paths the decoding loops use. `replicate.cost_model` prices
decodes with it.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from replicate.core.kv_cache import make_cache
from replicate.core.models import LoadedModel
from replicate.core.passes import forward, synchronize
from replicate.core.skipping import skip_sublayers, truncate_cache


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
    _check_arguments(loaded, context_length, max_draft_tokens, repeats, warmup)
    model, device, plan = loaded.model, loaded.device, loaded.plan
    generator = torch.Generator().manual_seed(seed)
    vocab_size = model.config.vocab_size
    # The token values do not change the cost of a pass; random ids give a cache of the right length.
    context_ids = torch.randint(vocab_size, (1, context_length), generator=generator).to(device)
    next_ids = torch.randint(vocab_size, (1, max_draft_tokens + 1), generator=generator).to(device)
    # The cache kind of the decodes (`model.kv_cache`): a static cache changes what a pass costs.
    cache = make_cache(loaded.kv_cache, model.config, context_length + max_draft_tokens + 1)
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
            # Entering the skip context is loop bookkeeping, not part of the pass: keep it untimed.
            with skip_sublayers(model, plan) if name == "draft_step" else contextlib.nullcontext():
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
        "attn_implementation": model.config._attn_implementation,
        "kv_cache": loaded.kv_cache,
        "skip": {"attention": list(plan.attention), "mlp": list(plan.mlp)},
    }
    return _summarize(meta, samples)


def _check_arguments(
    loaded: LoadedModel, context_length: int, max_draft_tokens: int, repeats: int, warmup: int
) -> None:
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


def pool_profiles(*profiles: Mapping[str, Any]) -> dict[str, Any]:
    """One profile from several measurements of the same passes (e.g. before, between and after timed
    decodes, so that the machine's drift in between is averaged out): medians over all their rounds;
    `drift` = full step of the last / full step of the first."""
    if len(profiles) < 1:
        raise ValueError("pool_profiles needs at least one profile")
    first, last = profiles[0], profiles[-1]
    samples = {
        name: [value for profile in profiles for value in profile["samples_s"][name]]
        for name in first["samples_s"]
    }
    meta = {key: value for key, value in first.items() if key not in _SUMMARY_KEYS}
    meta["repeats"] = sum(profile["repeats"] for profile in profiles)
    return {**_summarize(meta, samples), "drift": last["full_step_s"] / first["full_step_s"]}


_SUMMARY_KEYS = (
    "full_step_s",
    "draft_step_s",
    "verify_s",
    "draft_to_full",
    "verify_to_full",
    "samples_s",
    "drift",
)
