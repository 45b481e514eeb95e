"""Decoding loops: plain autoregressive decoding and self-speculative decoding (draft, then verify).

Both loops run the same model through the same `forward` (same cache class, attention implementation and
logits path), so their timings compare like with like. Batch size is 1. Token ids are plain Python ints
in the result; every tensor named `*_ids` is (1, seq).

Cache bookkeeping of a self-speculative cycle: the cache holds the KV of every committed token but the
last (`committed_length` positions). Drafting feeds the last committed token and then each draft through
the draft model (skipped attention layers write nothing); verification first truncates every layer back to
`committed_length`, then feeds [last committed token, drafts...] through the full model, so the cache
ends with the KV of all fed tokens; the rejected ones are truncated again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from replicate.core.draft_exit import DraftExit
from replicate.core.sampling import (
    DRAFT_CONFIDENCES,
    SamplingConfig,
    choose_tokens,
    drafted_token_confidence,
    greedy_acceptance,
    logits_to_probs,
    speculative_acceptance,
)
from replicate.core.skipping import SkipAwareCache, SkipPlan, skip_sublayers, truncate_cache
from replicate.records import DecodeResult


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def forward(
    model: nn.Module, token_ids: torch.Tensor, cache: SkipAwareCache, start: int, last_only: bool
) -> torch.Tensor:
    """Run `token_ids` (1, q) at positions start..start+q-1. Returns logits (q, vocab), or (1, vocab) when
    `last_only` (as generate's prefill does, so logits come from the same kernels as the library's)."""
    positions = torch.arange(start, start + token_ids.shape[1], device=token_ids.device).unsqueeze(0)
    output = model(
        input_ids=token_ids,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1 if last_only else 0,
    )
    return output.logits[0]


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
) -> DecodeResult:
    """One full-model forward per new token."""
    _check_prompt(prompt_ids, max_new_tokens)
    device = prompt_ids.device
    cache = SkipAwareCache(config=model.config)
    synchronize(device)
    start_time = time.perf_counter()
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    tokens = [int(choose_tokens(logits, sampling, generator)[0])]
    synchronize(device)
    prefill_time = time.perf_counter() - start_time
    full_forwards = 1
    while not _finished(tokens, max_new_tokens, eos_token_ids):
        position = prompt_ids.shape[1] + len(tokens) - 1
        last = torch.tensor([[tokens[-1]]], device=device)
        logits = forward(model, last, cache, position, last_only=True)
        tokens.append(int(choose_tokens(logits, sampling, generator)[0]))
        full_forwards += 1
    synchronize(device)
    return DecodeResult(tokens, prefill_time, time.perf_counter() - start_time, full_forwards)


def _draft(
    model: nn.Module,
    plan: SkipPlan,
    cache: SkipAwareCache,
    last_token: int,
    committed_length: int,
    num_to_draft: int,
    threshold: float,
    sampling: SamplingConfig,
    eos_token_ids: frozenset[int],
    generator: torch.Generator | None,
    device: torch.device,
    confidence: str = "paper",
) -> tuple[list[int], list[torch.Tensor]]:
    """Up to `num_to_draft` tokens from the draft model (the sub-blocks of `plan` skipped), fed one at a time
    after `last_token` at position `committed_length`. Stops after EOS or after a token whose draft
    confidence (`drafted_token_confidence` in mode `confidence`) is below `threshold`; that token is still
    returned and verified. Returns the draft tokens and their draft distributions (each (vocab,))."""
    draft_tokens: list[int] = []
    draft_probs: list[torch.Tensor] = []
    with skip_sublayers(model, plan):
        next_token = last_token
        while len(draft_tokens) < num_to_draft:
            token_ids = torch.tensor([[next_token]], device=device)
            logits = forward(model, token_ids, cache, committed_length + len(draft_tokens), last_only=True)
            probs = logits_to_probs(logits, sampling)
            next_token = int(choose_tokens(logits, sampling, generator, probs)[0])
            draft_tokens.append(next_token)
            draft_probs.append(probs[0])
            # One host sync per draft token is inherent: the next input depends on this token.
            if next_token in eos_token_ids:
                break
            if drafted_token_confidence(logits, probs, next_token, sampling, confidence) < threshold:
                break
    return draft_tokens, draft_probs


def _verify(
    model: nn.Module,
    cache: SkipAwareCache,
    last_token: int,
    committed_length: int,
    draft_tokens: list[int],
    draft_probs: list[torch.Tensor],
    sampling: SamplingConfig,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[int, int]:
    """One full-model pass over [last_token, drafts...] from the cache as it was before drafting.
    Returns (number of drafts accepted, the full model's own next token); the cache keeps the KV of the
    last committed token and the accepted drafts."""
    truncate_cache(cache, committed_length)
    verify_ids = torch.tensor([[last_token, *draft_tokens]], device=device)
    target_logits = forward(model, verify_ids, cache, committed_length, last_only=False)
    if sampling.greedy:
        num_accepted, next_token = greedy_acceptance(draft_tokens, target_logits)
    else:
        drafts = torch.tensor(draft_tokens, device=device, dtype=torch.long)
        target_probs = logits_to_probs(target_logits, sampling)
        stacked = torch.stack(draft_probs) if draft_probs else target_probs[:0]
        num_accepted, next_token = speculative_acceptance(drafts, stacked, target_probs, generator)
    # The next token's KV is written when it is fed at the start of the next cycle.
    truncate_cache(cache, committed_length + 1 + num_accepted)
    return num_accepted, next_token


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
) -> DecodeResult:
    """Draft with the sub-blocks of `plan` skipped, verify with the full model, keep the agreeing prefix plus
    the full model's own next token. `draft_confidence` (`paper` | `processed`) is what the draft-exit
    threshold is compared with (`replicate.core.sampling.drafted_token_confidence`). `check_cache` verifies
    after every cycle that each layer's cache holds exactly the committed length (for tests; it costs a
    little time). `on_commit(tokens)`, when given, is called with the new tokens so far after the prefill and
    after every cycle; it may shorten the list (a caller's stopping criterion met inside a cycle) and returns
    True to stop decoding there (`replicate.hf` streams and applies transformers' stopping criteria through
    it)."""
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
    cache = SkipAwareCache(config=model.config)
    draft_exit.start_sample()
    result = DecodeResult([], 0.0, 0.0, full_forwards=1)

    synchronize(device)
    start_time = time.perf_counter()
    # The first new token always comes from the full model's prefill.
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    tokens = [int(choose_tokens(logits, sampling, generator)[0])]
    synchronize(device)
    result.prefill_time = time.perf_counter() - start_time
    stopped = on_commit is not None and on_commit(tokens)

    while not stopped and not _finished(tokens, max_new_tokens, eos_token_ids):
        committed_length = prompt_length + len(tokens) - 1  # cached positions: all but the last token
        # A cycle commits up to drafts + 1 tokens: never draft past the token budget.
        num_to_draft = min(max_draft_tokens, max_new_tokens - len(tokens) - 1)
        threshold = draft_exit.threshold
        draft_tokens, draft_probs = _draft(
            model, plan, cache, tokens[-1], committed_length, num_to_draft, threshold, sampling,
            eos_token_ids, generator, device, draft_confidence,
        )  # fmt: skip
        num_accepted, next_token = _verify(
            model, cache, tokens[-1], committed_length, draft_tokens, draft_probs, sampling, generator, device
        )
        _commit(tokens, [*draft_tokens[:num_accepted], next_token], max_new_tokens, eos_token_ids)

        result.draft_forwards += len(draft_tokens)
        result.full_forwards += 1
        result.drafted.append(len(draft_tokens))
        result.accepted.append(num_accepted)
        result.thresholds.append(threshold)
        draft_exit.update(len(draft_tokens), num_accepted, max_draft_tokens)
        if check_cache and not _finished(tokens, max_new_tokens, eos_token_ids):
            expected = prompt_length + len(tokens) - 1
            result.cache_lengths_ok &= all(length == expected for length in cache.layer_lengths())
        stopped = on_commit is not None and on_commit(tokens)

    synchronize(device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result
