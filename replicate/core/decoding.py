"""Decoding loops: plain autoregressive decoding and self-speculative decoding (draft, then verify).

Both loops run the same model through the same `forward` (same cache class, attention implementation and
logits path), so their timings compare like with like. Batch size is 1. Token ids are plain Python ints
in the result; every tensor named `*_ids` is (1, seq).

Cache bookkeeping of a self-speculative cycle: the cache holds the KV of every committed token but the
last (`committed_length` positions). Drafting feeds the last committed token and then each draft through
the draft model (skipped attention layers write nothing); verification first truncates every layer back to
`committed_length`, then feeds [last committed token, drafts...] through the full model, so the cache
ends with the KV of all fed tokens; the rejected ones are truncated again. The cache is `dynamic` or
`static` (`replicate.core.kv_cache`); a decode never writes more than prompt + max_new_tokens positions.

Host syncs: reading a token on the host (`int`, `.tolist()`) waits for the device. Autoregressive decoding
reads each token (its EOS check needs it). A self-speculative cycle (`replicate.core.cycle`) reads every draft
when a confidence threshold decides how far to draft, and only once per cycle at threshold 0 (greedy).
`forward` and `synchronize` live in `replicate.core.passes` and are re-exported here.

Arguments: `DecodeSettings` (when to stop, how to choose tokens, which cache) serves both loops;
`Speculation` (skip plan, draft budget, draft-exit rule) is what the self-speculative loop adds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from replicate.core.cycle import CycleResult, CycleSettings, CycleStart, run_cycle
from replicate.core.draft_exit import DraftExit
from replicate.core.kv_cache import KVCache, make_cache
from replicate.core.passes import forward, synchronize
from replicate.core.sampling import DRAFT_CONFIDENCES, SamplingConfig, choose_tokens
from replicate.core.skipping import SkipPlan
from replicate.records import DecodeResult

__all__ = [
    "DecodeSettings",
    "Speculation",
    "autoregressive_decode",
    "check_cache_lengths",
    "forward",
    "record_cycle",
    "self_speculative_decode",
    "synchronize",
]


@dataclass(frozen=True)
class DecodeSettings:
    """What both loops need besides the model and the prompt: at most `max_new_tokens` new tokens, stopping
    after any of `eos_token_ids`; tokens chosen by `sampling` (greedy by default); `kv_cache`: dynamic or
    static (`replicate.core.kv_cache`)."""

    max_new_tokens: int
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eos_token_ids: frozenset[int] = frozenset()
    kv_cache: str = "dynamic"


@dataclass(frozen=True)
class Speculation:
    """How the self-speculative loop drafts: with the sub-blocks of `plan` skipped, at most
    `max_draft_tokens` a cycle, stopping under `draft_exit`'s threshold (the rule keeps its own state, e.g.
    the adaptive threshold, across calls). `draft_confidence` (`paper` | `processed`) is what the threshold is
    compared with (`replicate.core.sampling.drafted_token_confidence`). `check_cache` verifies after every
    cycle that each layer's cache holds exactly the committed length (for tests; it costs a little time)."""

    plan: SkipPlan
    max_draft_tokens: int
    draft_exit: DraftExit
    draft_confidence: str = "paper"
    check_cache: bool = False


def _check_prompt(prompt_ids: torch.Tensor, max_new_tokens: int) -> None:
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(
            f"batch size must be 1 (self-speculative decoding decodes one sequence), got input_ids of shape "
            f"{tuple(prompt_ids.shape)}; pass one prompt of shape (1, seq_len)"
        )
    if prompt_ids.shape[1] < 1:
        raise ValueError("the prompt is empty; at least one token (e.g. BOS) is needed")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def _check_speculation(speculation: Speculation, num_layers: int) -> None:
    if speculation.max_draft_tokens < 1:
        raise ValueError(f"max_draft_tokens must be >= 1, got {speculation.max_draft_tokens}")
    if speculation.draft_confidence not in DRAFT_CONFIDENCES:
        raise ValueError(
            f"draft_confidence={speculation.draft_confidence!r} is not one of {', '.join(DRAFT_CONFIDENCES)}"
        )
    speculation.plan.validate(num_layers)


def _finished(tokens: list[int], settings: DecodeSettings) -> bool:
    return len(tokens) >= settings.max_new_tokens or (bool(tokens) and tokens[-1] in settings.eos_token_ids)


def _commit(tokens: list[int], new: list[int], settings: DecodeSettings) -> None:
    """Append `new` to `tokens`, stopping after the first EOS or at max_new_tokens."""
    for token in new:
        if _finished(tokens, settings):
            return
        tokens.append(token)


def record_cycle(result: DecodeResult, cycle: CycleResult, threshold: float) -> None:
    """Count one draft-and-verify cycle in `result`: its draft passes and one full pass, the drafts it made
    and kept, and the draft-exit threshold it drafted under (every method that runs `run_cycle` records it
    here, so the per-cycle lists mean the same for all of them)."""
    result.draft_forwards += cycle.draft_passes
    result.full_forwards += 1
    result.drafted.append(len(cycle.draft_tokens))
    result.accepted.append(cycle.num_accepted)
    result.thresholds.append(threshold)


def check_cache_lengths(result: DecodeResult, cache: KVCache, committed_length: int) -> None:
    """Clear `result.cache_lengths_ok` unless every layer's cache holds exactly `committed_length` positions
    (every committed token but the last; tests decode with this check on after each cycle)."""
    result.cache_lengths_ok &= all(length == committed_length for length in cache.layer_lengths())


def _prefill(
    model: nn.Module, prompt_ids: torch.Tensor, settings: DecodeSettings, generator: torch.Generator | None
) -> tuple[KVCache, torch.Tensor, float, float]:
    """The full model's pass over the prompt (1, seq), which chooses the first new token. Returns the cache
    (sized for prompt + max_new_tokens), that token as (1,) on the device, the clock's start and the prefill
    time in seconds."""
    device = prompt_ids.device
    cache = make_cache(settings.kv_cache, model.config, prompt_ids.shape[1] + settings.max_new_tokens)
    synchronize(device)
    start_time = time.perf_counter()
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    chosen = choose_tokens(logits, settings.sampling, generator)
    synchronize(device)
    return cache, chosen, start_time, time.perf_counter() - start_time


@torch.inference_mode()
def autoregressive_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    settings: DecodeSettings,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """One full-model forward per new token."""
    _check_prompt(prompt_ids, settings.max_new_tokens)
    cache, chosen, start_time, prefill_time = _prefill(model, prompt_ids, settings, generator)
    tokens = [int(chosen[0])]
    full_forwards = 1
    while not _finished(tokens, settings):
        position = prompt_ids.shape[1] + len(tokens) - 1
        # The chosen token is still on the device: feed it from there (no host-to-device copy).
        logits = forward(model, chosen.view(1, 1), cache, position, last_only=True)
        chosen = choose_tokens(logits, settings.sampling, generator)
        tokens.append(int(chosen[0]))  # the EOS check needs it on the host: one sync per token
        full_forwards += 1
    synchronize(prompt_ids.device)
    return DecodeResult(tokens, prefill_time, time.perf_counter() - start_time, full_forwards)


@torch.inference_mode()
def self_speculative_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    settings: DecodeSettings,
    speculation: Speculation,
    generator: torch.Generator | None = None,
    on_commit: Callable[[list[int]], bool] | None = None,
) -> DecodeResult:
    """Draft with the sub-blocks of `speculation.plan` skipped, verify with the full model, keep the agreeing
    prefix plus the full model's own next token. `on_commit(tokens)`, when given, is called with the new
    tokens so far after the prefill and after every cycle; it may shorten the list (a caller's stopping
    criterion met inside a cycle) and returns True to stop decoding there (`replicate.hf` streams and applies
    transformers' stopping criteria through it)."""
    _check_prompt(prompt_ids, settings.max_new_tokens)
    _check_speculation(speculation, model.config.num_hidden_layers)
    speculation.draft_exit.start_sample()
    cache, chosen, start_time, prefill_time = _prefill(model, prompt_ids, settings, generator)
    result = DecodeResult([], prefill_time, 0.0, full_forwards=1)
    cycle_settings = CycleSettings(
        speculation.plan, settings.sampling, settings.eos_token_ids, speculation.draft_confidence, generator
    )
    last_ids = chosen.view(1, 1)
    tokens = [int(last_ids[0, 0])]
    stopped = on_commit is not None and on_commit(tokens)
    while not stopped and not _finished(tokens, settings):
        # The cache holds all committed tokens but the last; a cycle commits up to drafts + 1 tokens, so it
        # never drafts past the token budget.
        num_to_draft = min(speculation.max_draft_tokens, settings.max_new_tokens - len(tokens) - 1)
        threshold = speculation.draft_exit.threshold
        start = CycleStart(
            tokens[-1], last_ids, prompt_ids.shape[1] + len(tokens) - 1, num_to_draft, threshold
        )
        cycle = run_cycle(model, cache, cycle_settings, start)
        _commit(tokens, [*cycle.draft_tokens[: cycle.num_accepted], cycle.next_token], settings)
        last_ids = cycle.next_ids
        record_cycle(result, cycle, threshold)
        speculation.draft_exit.update(
            len(cycle.draft_tokens), cycle.num_accepted, speculation.max_draft_tokens
        )
        if speculation.check_cache and not _finished(tokens, settings):
            check_cache_lengths(result, cache, prompt_ids.shape[1] + len(tokens) - 1)
        if on_commit is not None:
            committed = len(tokens)
            stopped = on_commit(tokens)
            if len(tokens) != committed:  # shortened: the next cycle starts from the new last token
                last_ids = torch.tensor([[tokens[-1]]], device=prompt_ids.device)
    synchronize(prompt_ids.device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result
