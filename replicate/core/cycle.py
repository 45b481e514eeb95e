"""One self-speculative cycle: draft with the skip plan active, then verify with the full model.

Two paths, chosen per cycle (the decoded tokens are the same either way):
- threshold in (0, 1], or sampling: `_draft` reads every draft and its confidence on the host (it decides
  whether to go on), then `_verify` runs the full model over [last token, drafts...].
- threshold 0 (fixed draft length, paper Table 3) and greedy: `_draft_on_device` feeds each draft back
  from the device, so the host waits for nothing while drafting; `_verify_greedy_on_device` then reads
  drafts and the verifier's tokens in one sync per cycle. Drafting does not stop at an EOS here; the
  drafts after the first EOS are dropped once read (their cache positions are truncated), so a cycle that
  drafts EOS costs up to K - 1 extra draft passes (counted in `draft_forwards`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from replicate.core.kv_cache import KVCache
from replicate.core.passes import forward
from replicate.core.sampling import (
    SamplingConfig,
    accepted_prefix,
    choose_tokens,
    drafted_token_confidence,
    greedy_acceptance,
    logits_to_probs,
    speculative_acceptance,
)
from replicate.core.skipping import SkipPlan, skip_sublayers, truncate_cache


@dataclass(frozen=True)
class CycleSettings:
    """What stays fixed across one decode's cycles. `draft_confidence`: `paper` | `processed`, what the
    draft-exit threshold is compared with (`replicate.core.sampling.drafted_token_confidence`)."""

    plan: SkipPlan
    sampling: SamplingConfig
    eos_token_ids: frozenset[int]
    draft_confidence: str
    generator: torch.Generator | None


@dataclass(frozen=True)
class CycleStart:
    """Where a cycle starts and how far it may draft: the last committed token, on the host and as
    `last_ids` (1, 1) on the model's device; `committed_length`, the positions the cache holds (every
    committed token but the last); at most `num_to_draft` drafts, drafting stopping at a draft confidence
    under `threshold`."""

    last_token: int
    last_ids: torch.Tensor
    committed_length: int
    num_to_draft: int
    threshold: float


@dataclass(frozen=True)
class CycleResult:
    """What a cycle decided: the drafts it kept, how many the full model accepted, the full model's own next
    token (also as `next_ids` (1, 1) on the device) and the draft passes it ran."""

    draft_tokens: list[int]
    num_accepted: int
    next_token: int
    next_ids: torch.Tensor
    draft_passes: int


def _draft(
    model: nn.Module, cache: KVCache, settings: CycleSettings, start: CycleStart
) -> tuple[list[int], list[torch.Tensor]]:
    """Up to `start.num_to_draft` tokens from the draft model (the sub-blocks of `settings.plan` skipped),
    fed one at a time after the last committed token. Stops after EOS or after a token whose draft
    confidence is below `start.threshold`; that token is still returned and verified. Returns the draft
    tokens and their draft distributions (each (vocab,))."""
    sampling, device = settings.sampling, start.last_ids.device
    draft_tokens: list[int] = []
    draft_probs: list[torch.Tensor] = []
    with skip_sublayers(model, settings.plan):
        next_token = start.last_token
        while len(draft_tokens) < start.num_to_draft:
            token_ids = torch.tensor([[next_token]], device=device)
            position = start.committed_length + len(draft_tokens)
            logits = forward(model, token_ids, cache, position, last_only=True)
            probs = logits_to_probs(logits, sampling)
            next_token = int(choose_tokens(logits, sampling, settings.generator, probs)[0])
            draft_tokens.append(next_token)
            draft_probs.append(probs[0])
            # One host sync per draft token is inherent here: whether to go on depends on this token.
            if next_token in settings.eos_token_ids:
                break
            confidence = drafted_token_confidence(
                logits, probs, next_token, sampling, settings.draft_confidence
            )
            if confidence < start.threshold:
                break
    return draft_tokens, draft_probs


def _draft_on_device(model: nn.Module, cache: KVCache, plan: SkipPlan, start: CycleStart) -> torch.Tensor:
    """Exactly `start.num_to_draft` greedy draft tokens (threshold 0), each fed back from the device:
    nothing is read by the host, so the device runs the passes back to back. Returns the drafts
    (num_to_draft,) on the device. An EOS among them is dealt with once they are read (`_cut_after_eos`);
    the positions drafted past it are truncated before verification."""
    if start.num_to_draft == 0:  # the token budget leaves room only for the verifier's own token
        return start.last_ids.new_empty((0,))
    drafts: list[torch.Tensor] = []
    with skip_sublayers(model, plan):
        next_ids = start.last_ids
        for index in range(start.num_to_draft):
            logits = forward(model, next_ids, cache, start.committed_length + index, last_only=True)
            chosen = logits.argmax(dim=-1)  # (1,); greedy needs no softmax (no draft confidence is read)
            drafts.append(chosen)
            next_ids = chosen.view(1, 1)
    return torch.cat(drafts)


def _cut_after_eos(draft_tokens: list[int], eos_token_ids: frozenset[int]) -> int:
    """How many drafts the cycle keeps: all, or up to and including the first EOS (where `_draft` stops)."""
    for index, token in enumerate(draft_tokens):
        if token in eos_token_ids:
            return index + 1
    return len(draft_tokens)


def _verify(
    model: nn.Module,
    cache: KVCache,
    settings: CycleSettings,
    start: CycleStart,
    draft_tokens: list[int],
    draft_probs: list[torch.Tensor],
) -> tuple[int, int]:
    """One full-model pass over [last token, drafts...] from the cache as it was before drafting.
    Returns (number of drafts accepted, the full model's own next token); the cache keeps the KV of the
    last committed token and the accepted drafts."""
    sampling, device, committed_length = settings.sampling, start.last_ids.device, start.committed_length
    truncate_cache(cache, committed_length)
    verify_ids = torch.tensor([[start.last_token, *draft_tokens]], device=device)
    target_logits = forward(model, verify_ids, cache, committed_length, last_only=False)
    if sampling.greedy:
        num_accepted, next_token = greedy_acceptance(draft_tokens, target_logits)
    else:
        drafts = torch.tensor(draft_tokens, device=device, dtype=torch.long)
        target_probs = logits_to_probs(target_logits, sampling)
        stacked = torch.stack(draft_probs) if draft_probs else target_probs[:0]
        num_accepted, next_token = speculative_acceptance(drafts, stacked, target_probs, settings.generator)
    # The next token's KV is written when it is fed at the start of the next cycle.
    truncate_cache(cache, committed_length + 1 + num_accepted)
    return num_accepted, next_token


def _verify_greedy_on_device(
    model: nn.Module, cache: KVCache, start: CycleStart, drafts: torch.Tensor, eos_token_ids: frozenset[int]
) -> CycleResult:
    """Greedy verification of device-side drafts (K,) after `start.last_ids` (1, 1), with one host sync for
    the whole cycle: drafts and the verifier's argmax tokens are read together. The drafts kept are those up
    to the first EOS; since the verifier is causal, its tokens at those positions do not depend on the drafts
    after it. `draft_passes` is K (the passes run, kept or not)."""
    committed_length = start.committed_length
    truncate_cache(cache, committed_length)
    verify_ids = torch.cat([start.last_ids.view(1), drafts]).unsqueeze(0)
    target_ids = forward(model, verify_ids, cache, committed_length, last_only=False).argmax(dim=-1)
    both = torch.cat([drafts, target_ids]).tolist()  # the cycle's one host sync
    num_drafts = drafts.shape[0]
    draft_tokens = both[: _cut_after_eos(both[:num_drafts], eos_token_ids)]
    num_accepted = accepted_prefix(draft_tokens, both[num_drafts:])
    truncate_cache(cache, committed_length + 1 + num_accepted)
    next_token = both[num_drafts + num_accepted]
    next_ids = target_ids[num_accepted].view(1, 1)
    return CycleResult(draft_tokens, num_accepted, next_token, next_ids, num_drafts)


def run_cycle(model: nn.Module, cache: KVCache, settings: CycleSettings, start: CycleStart) -> CycleResult:
    """One draft-then-verify cycle from `start`."""
    if start.threshold > 0.0 or not settings.sampling.greedy:
        # A confidence exit reads each draft on the host as it comes. Sampling keeps this path too: it
        # stops drafting at an EOS, so the random generator is consumed exactly as in earlier versions.
        draft_tokens, draft_probs = _draft(model, cache, settings, start)
        num_accepted, next_token = _verify(model, cache, settings, start, draft_tokens, draft_probs)
        next_ids = torch.tensor([[next_token]], device=start.last_ids.device)
        return CycleResult(draft_tokens, num_accepted, next_token, next_ids, len(draft_tokens))
    drafts = _draft_on_device(model, cache, settings.plan, start)
    return _verify_greedy_on_device(model, cache, start, drafts, settings.eos_token_ids)
