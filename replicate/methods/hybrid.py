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
from typing import ClassVar, Literal

import torch
from torch import nn

from replicate.core.cycle import CycleResult, CycleSettings, CycleStart, run_cycle
from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    _check_prompt,
    _check_speculation,
    _commit,
    _finished,
    _prefill,
    check_cache_lengths,
    record_cycle,
)
from replicate.core.kv_cache import KVCache
from replicate.core.methods import AdaptiveDraftExitConfig, Decoder, register_method
from replicate.core.ngram import NgramSettings
from replicate.core.passes import forward, synchronize
from replicate.core.sampling import copied_draft_acceptance
from replicate.core.skipping import truncate_cache
from replicate.records import DecodeResult, DraftSource
from replicate.schema import at_least


def _ngram_cycle(
    model: nn.Module,
    cache: KVCache,
    settings: CycleSettings,
    start: CycleStart,
    drafts: list[int],
) -> CycleResult:
    """One full pass over [last token, drafts...] at the committed length; the cache is left at the new
    committed length."""
    device = start.last_ids.device
    feed_ids = torch.tensor([[start.last_token, *drafts]], device=device)
    target_logits = forward(model, feed_ids, cache, start.committed_length, last_only=False)
    num_accepted, next_token = copied_draft_acceptance(
        drafts, target_logits, settings.sampling, settings.generator
    )
    truncate_cache(cache, start.committed_length + 1 + num_accepted)
    return CycleResult(drafts, num_accepted, next_token, torch.tensor([[next_token]], device=device), 0)


def choose_draft(
    context: list[int], budget: int, ngram: NgramSettings, eos_token_ids: frozenset[int]
) -> tuple[DraftSource, list[int]]:
    """The choice of a cycle: (`ngram`, its drafts) when the context (prompt + committed tokens) has an
    n-gram match and the token budget leaves room for a draft (`budget`: drafts the cycle may make), else
    (`model`, []) -- the layer-skipped model drafts -- or (`none`, []) when the budget is 0."""
    if budget < 1:
        return "none", []
    drafts = ngram.draft(context, eos_token_ids)[:budget]
    return ("ngram", drafts) if drafts else ("model", [])


@torch.inference_mode()
def hybrid_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    settings: DecodeSettings,
    speculation: Speculation,
    ngram: NgramSettings,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """Decode `prompt_ids` (1, seq), each cycle drafting by n-gram match (`ngram`) if there is one, else as
    `speculation` says (the skip plan, K, the draft-exit rule)."""
    _check_prompt(prompt_ids, settings.max_new_tokens)
    _check_speculation(speculation, model.config.num_hidden_layers)
    draft_exit = speculation.draft_exit
    draft_exit.start_sample()
    prompt = prompt_ids[0].tolist()
    cache, chosen, start_time, prefill_time = _prefill(model, prompt_ids, settings, generator)
    result = DecodeResult([], prefill_time, 0.0, full_forwards=1)
    cycle_settings = CycleSettings(
        speculation.plan, settings.sampling, settings.eos_token_ids, speculation.draft_confidence, generator
    )
    last_ids = chosen.view(1, 1)
    tokens = [int(last_ids[0, 0])]
    while not _finished(tokens, settings):
        budget = settings.max_new_tokens - len(tokens) - 1  # a cycle commits its accepted drafts + one token
        source, drafts = choose_draft(prompt + tokens, budget, ngram, settings.eos_token_ids)
        threshold = draft_exit.threshold
        num_to_draft = min(speculation.max_draft_tokens, budget)
        start = CycleStart(tokens[-1], last_ids, len(prompt) + len(tokens) - 1, num_to_draft, threshold)
        if source == "ngram":
            cycle = _ngram_cycle(model, cache, cycle_settings, start, drafts)
        else:
            cycle = run_cycle(model, cache, cycle_settings, start)
            draft_exit.update(len(cycle.draft_tokens), cycle.num_accepted, speculation.max_draft_tokens)
        _commit(tokens, [*cycle.draft_tokens[: cycle.num_accepted], cycle.next_token], settings)
        last_ids = cycle.next_ids
        record_cycle(result, cycle, threshold)
        result.draft_sources.append(source)
        if speculation.check_cache and not _finished(tokens, settings):
            check_cache_lengths(result, cache, len(prompt) + len(tokens) - 1)
    synchronize(prompt_ids.device)
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
    transformers_generate: ClassVar[bool] = False  # its n-gram cycles are not in replicate.hf's loop

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
        speculation = Speculation(
            decoder.loaded.plan,
            self.max_draft_tokens,
            decoder.draft_exit,
            self.draft_confidence,
            decoder.check_cache,
        )
        ngram = NgramSettings(self.ngram_draft_tokens, self.max_matching_ngram_size)
        settings = decoder.settings(max_new_tokens)
        return hybrid_decode(decoder.loaded.model, prompt_ids, settings, speculation, ngram, generator)
