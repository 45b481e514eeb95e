"""`hybrid`: an n-gram draft when the context has a match, a layer-skipped draft otherwise.

Per cycle: the n-gram rule of prompt lookup (`replicate.core.ngram`) looks for a draft of up to
`ngram_draft_tokens` tokens in the prompt and the text so far; when it finds one, the cycle verifies it
(`copied_draft_acceptance`: greedy prefix, or point-mass speculative sampling); when it finds none, the
cycle is the paper's (`replicate.core.cycle.run_cycle`): up to `max_draft_tokens` drafts from the model with
the skip set, stopped by the paper's adaptive draft exit. Why this choice and not an n-gram draft continued
by the draft model: an n-gram draft costs no pass at all, so it is taken whenever it exists; continuing it
with the draft model would spend draft passes on positions whose context is itself unverified copy.
The draft exit's threshold is updated only after cycles the model drafted (the threshold governs its
drafts), and every cycle records the threshold in force and its source (`DecodeResult.draft_sources`).
The first token comes from the prefill, as in the paper's loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from replicate.core.cycle import run_cycle
from replicate.core.decoding import _check_prompt, _commit, _finished
from replicate.core.draft_exit import DraftExit
from replicate.core.kv_cache import make_cache
from replicate.core.methods import AdaptiveDraftExitConfig, Decoder, register_method
from replicate.core.ngram import ngram_draft
from replicate.core.passes import forward, synchronize
from replicate.core.sampling import SamplingConfig, choose_tokens, copied_draft_acceptance
from replicate.core.skipping import SkipPlan, truncate_cache
from replicate.records import DecodeResult, DraftSource
from replicate.schema import at_least


def _ngram_cycle(
    model: nn.Module,
    cache,
    last_token: int,
    committed_length: int,
    drafts: list[int],
    sampling: SamplingConfig,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[int, int]:
    """One full pass over [last_token, drafts...] at `committed_length`; returns (accepted, next token)
    and leaves the cache at the new committed length."""
    feed_ids = torch.tensor([[last_token, *drafts]], device=device)
    target_logits = forward(model, feed_ids, cache, committed_length, last_only=False)
    num_accepted, next_token = copied_draft_acceptance(drafts, target_logits, sampling, generator)
    truncate_cache(cache, committed_length + 1 + num_accepted)
    return num_accepted, next_token


def choose_draft(
    context: list[int],
    budget: int,
    ngram_draft_tokens: int,
    max_matching_ngram_size: int,
    eos_token_ids: frozenset[int],
) -> tuple[DraftSource, list[int]]:
    """The choice of a cycle: (`ngram`, its drafts) when the context (prompt + committed tokens) has an
    n-gram match and the token budget leaves room for a draft (`budget`: drafts the cycle may make), else
    (`model`, []) -- the layer-skipped model drafts -- or (`none`, []) when the budget is 0."""
    if budget < 1:
        return "none", []
    drafts = ngram_draft(context, max_matching_ngram_size, ngram_draft_tokens, eos_token_ids)[:budget]
    return ("ngram", drafts) if drafts else ("model", [])


@torch.inference_mode()
def hybrid_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig,
    eos_token_ids: frozenset[int],
    plan: SkipPlan,
    max_draft_tokens: int,
    ngram_draft_tokens: int,
    max_matching_ngram_size: int,
    draft_exit: DraftExit,
    generator: torch.Generator | None = None,
    check_cache: bool = False,
    draft_confidence: str = "paper",
    kv_cache: str = "dynamic",
) -> DecodeResult:
    """Decode `prompt_ids` (1, seq), each cycle drafting by n-gram match if there is one, else with the
    sub-blocks of `plan` skipped under `draft_exit`."""
    _check_prompt(prompt_ids, max_new_tokens)
    plan.validate(model.config.num_hidden_layers)
    device = prompt_ids.device
    prompt = prompt_ids[0].tolist()
    cache = make_cache(kv_cache, model.config, len(prompt) + max_new_tokens)
    draft_exit.start_sample()
    result = DecodeResult([], 0.0, 0.0, full_forwards=1)
    synchronize(device)
    start_time = time.perf_counter()
    logits = forward(model, prompt_ids, cache, 0, last_only=True)
    last_ids = choose_tokens(logits, sampling, generator).view(1, 1)
    tokens = [int(last_ids[0, 0])]
    synchronize(device)
    result.prefill_time = time.perf_counter() - start_time

    while not _finished(tokens, max_new_tokens, eos_token_ids):
        committed_length = len(prompt) + len(tokens) - 1
        budget = max_new_tokens - len(tokens) - 1  # a cycle commits its accepted drafts + one token
        source, draft_tokens = choose_draft(
            prompt + tokens, budget, ngram_draft_tokens, max_matching_ngram_size, eos_token_ids
        )
        threshold = draft_exit.threshold
        if source == "ngram":
            num_accepted, next_token = _ngram_cycle(
                model, cache, tokens[-1], committed_length, draft_tokens, sampling, generator, device
            )
            last_ids = torch.tensor([[next_token]], device=device)
        else:
            draft_tokens, num_accepted, next_token, last_ids, draft_passes = run_cycle(
                model, plan, cache, tokens[-1], last_ids, committed_length, min(max_draft_tokens, budget),
                threshold, sampling, eos_token_ids, generator, draft_confidence,
            )  # fmt: skip
            draft_exit.update(len(draft_tokens), num_accepted, max_draft_tokens)
            result.draft_forwards += draft_passes
        _commit(tokens, [*draft_tokens[:num_accepted], next_token], max_new_tokens, eos_token_ids)
        result.full_forwards += 1
        result.drafted.append(len(draft_tokens))
        result.accepted.append(num_accepted)
        result.thresholds.append(threshold)
        result.draft_sources.append(source)
        if check_cache and not _finished(tokens, max_new_tokens, eos_token_ids):
            expected = len(prompt) + len(tokens) - 1
            result.cache_lengths_ok &= all(length == expected for length in cache.layer_lengths())

    synchronize(device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result


@register_method
@dataclass(frozen=True)
class HybridConfig(AdaptiveDraftExitConfig):
    """The paper's adaptive draft exit (every field of `AdaptiveDraftExitConfig`) for the cycles the model
    drafts, and n-gram drafts of up to `ngram_draft_tokens` tokens matched on up to
    `max_matching_ngram_size` tokens whenever the context has a match."""

    name: Literal["hybrid"]
    ngram_draft_tokens: int
    max_matching_ngram_size: int

    def __post_init__(self):
        super().__post_init__()
        at_least("ngram_draft_tokens", self.ngram_draft_tokens, 1)
        at_least("max_matching_ngram_size", self.max_matching_ngram_size, 1)

    @property
    def max_verified_drafts(self) -> int:
        return max(self.max_draft_tokens, self.ngram_draft_tokens)

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        return hybrid_decode(
            **decoder.common_arguments(prompt_ids, max_new_tokens, generator),
            plan=decoder.loaded.plan,
            max_draft_tokens=self.max_draft_tokens,
            ngram_draft_tokens=self.ngram_draft_tokens,
            max_matching_ngram_size=self.max_matching_ngram_size,
            draft_exit=decoder.draft_exit,
            check_cache=decoder.check_cache,
            draft_confidence=self.draft_confidence,
        )
