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
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from replicate.core.cycle import run_cycle
from replicate.core.draft_exit import DraftExit
from replicate.core.kv_cache import make_cache
from replicate.core.passes import forward, synchronize
from replicate.core.sampling import DRAFT_CONFIDENCES, SamplingConfig, choose_tokens
from replicate.core.skipping import SkipPlan
from replicate.records import DecodeResult

__all__ = ["autoregressive_decode", "forward", "self_speculative_decode", "synchronize"]


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


def _finished(tokens: list[int], max_new_tokens: int, eos_token_ids: frozenset[int]) -> bool:
    return len(tokens) >= max_new_tokens or (bool(tokens) and tokens[-1] in eos_token_ids)


def _commit(tokens: list[int], new: list[int], max_new_tokens: int, eos_token_ids: frozenset[int]) -> None:
    """Append `new` to `tokens`, stopping after the first EOS or at max_new_tokens."""
    for token in new:
        if _finished(tokens, max_new_tokens, eos_token_ids):
            return
        tokens.append(token)


@torch.inference_mode()
def autoregressive_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig,
    eos_token_ids: frozenset[int],
    generator: torch.Generator | None = None,
    kv_cache: str = "dynamic",
) -> DecodeResult:
    """One full-model forward per new token. `kv_cache`: dynamic or static (`replicate.core.kv_cache`)."""
    _check_prompt(prompt_ids, max_new_tokens)
    device = prompt_ids.device
    cache = make_cache(kv_cache, model.config, prompt_ids.shape[1] + max_new_tokens)
    synchronize(device)
    start_time = time.perf_counter()
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    chosen = choose_tokens(logits, sampling, generator)
    tokens = [int(chosen[0])]
    synchronize(device)
    prefill_time = time.perf_counter() - start_time
    full_forwards = 1
    while not _finished(tokens, max_new_tokens, eos_token_ids):
        position = prompt_ids.shape[1] + len(tokens) - 1
        # The chosen token is still on the device: feed it from there (no host-to-device copy).
        logits = forward(model, chosen.view(1, 1), cache, position, last_only=True)
        chosen = choose_tokens(logits, sampling, generator)
        tokens.append(int(chosen[0]))  # the EOS check needs it on the host: one sync per token
        full_forwards += 1
    synchronize(device)
    return DecodeResult(tokens, prefill_time, time.perf_counter() - start_time, full_forwards)


@torch.inference_mode()
def self_speculative_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig,
    eos_token_ids: frozenset[int],
    plan: SkipPlan,
    max_draft_tokens: int,
    draft_exit: DraftExit,
    generator: torch.Generator | None = None,
    check_cache: bool = False,
    draft_confidence: str = "paper",
    on_commit: Callable[[list[int]], bool] | None = None,
    kv_cache: str = "dynamic",
) -> DecodeResult:
    """Draft with the sub-blocks of `plan` skipped, verify with the full model, keep the agreeing prefix plus
    the full model's own next token. `draft_confidence` (`paper` | `processed`) is what the draft-exit
    threshold is compared with (`replicate.core.sampling.drafted_token_confidence`). `check_cache` verifies
    after every cycle that each layer's cache holds exactly the committed length (for tests; it costs a
    little time). `on_commit(tokens)`, when given, is called with the new tokens so far after the prefill and
    after every cycle; it may shorten the list (a caller's stopping criterion met inside a cycle) and returns
    True to stop decoding there (`replicate.hf` streams and applies transformers' stopping criteria through
    it). `kv_cache`: dynamic or static (`replicate.core.kv_cache`)."""
    _check_prompt(prompt_ids, max_new_tokens)
    if max_draft_tokens < 1:
        raise ValueError(f"max_draft_tokens must be >= 1, got {max_draft_tokens}")
    if draft_confidence not in DRAFT_CONFIDENCES:
        raise ValueError(
            f"draft_confidence={draft_confidence!r} is not one of {', '.join(DRAFT_CONFIDENCES)}"
        )
    plan.validate(model.config.num_hidden_layers)
    device = prompt_ids.device
    prompt_length = prompt_ids.shape[1]
    cache = make_cache(kv_cache, model.config, prompt_length + max_new_tokens)
    draft_exit.start_sample()
    result = DecodeResult([], 0.0, 0.0, full_forwards=1)

    synchronize(device)
    start_time = time.perf_counter()
    # The first new token always comes from the full model's prefill.
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    last_ids = choose_tokens(logits, sampling, generator).view(1, 1)
    tokens = [int(last_ids[0, 0])]
    synchronize(device)
    result.prefill_time = time.perf_counter() - start_time
    stopped = on_commit is not None and on_commit(tokens)

    while not stopped and not _finished(tokens, max_new_tokens, eos_token_ids):
        committed_length = prompt_length + len(tokens) - 1  # cached positions: all but the last token
        # A cycle commits up to drafts + 1 tokens: never draft past the token budget.
        num_to_draft = min(max_draft_tokens, max_new_tokens - len(tokens) - 1)
        threshold = draft_exit.threshold
        draft_tokens, num_accepted, next_token, last_ids, draft_passes = run_cycle(
            model, plan, cache, tokens[-1], last_ids, committed_length, num_to_draft, threshold, sampling,
            eos_token_ids, generator, draft_confidence,
        )  # fmt: skip
        _commit(tokens, [*draft_tokens[:num_accepted], next_token], max_new_tokens, eos_token_ids)

        result.draft_forwards += draft_passes
        result.full_forwards += 1
        result.drafted.append(len(draft_tokens))
        result.accepted.append(num_accepted)
        result.thresholds.append(threshold)
        draft_exit.update(len(draft_tokens), num_accepted, max_draft_tokens)
        if check_cache and not _finished(tokens, max_new_tokens, eos_token_ids):
            expected = prompt_length + len(tokens) - 1
            result.cache_lengths_ok &= all(length == expected for length in cache.layer_lengths())
        if on_commit is not None:
            committed = len(tokens)
            stopped = on_commit(tokens)
            if len(tokens) != committed:  # shortened: the next cycle starts from the new last token
                last_ids = torch.tensor([[tokens[-1]]], device=device)

    synchronize(device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result
