"""`prompt_lookup`: prompt lookup decoding (Saxena 2023; transformers' `prompt_lookup_num_tokens`) in the
project's own loop: drafts copied from the prompt and the text so far by n-gram match
(`replicate.core.ngram`), verified by the full model; no draft model at all.

The loop follows transformers' assisted decoding step for step, so that it commits the same tokens with the
same number of full forwards (tests/test_new_methods.py counts them): the first pass runs the prompt and the
draft found in the prompt together (`DecodeResult.prefill_cycle`), every later pass [last token, drafts...];
a cycle without a match is one plain step. Drafts never exceed the token budget (transformers drafts past it
and crops after verification: the committed tokens and the number of passes are the same). Sampling keeps
the full model's law: copied drafts are verified as point-mass drafts (`copied_draft_acceptance`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from replicate.core.decoding import DecodeSettings, _check_prompt, _commit, _finished, check_cache_lengths
from replicate.core.kv_cache import make_cache
from replicate.core.methods import Decoder, MethodTraits, register_method
from replicate.core.ngram import NgramSettings
from replicate.core.passes import forward, synchronize
from replicate.core.sampling import copied_draft_acceptance
from replicate.core.skipping import truncate_cache
from replicate.records import DecodeResult
from replicate.schema import at_least


@torch.inference_mode()
def prompt_lookup_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    settings: DecodeSettings,
    lookup: NgramSettings,
    generator: torch.Generator | None = None,
    check_cache: bool = False,
) -> DecodeResult:
    """Decode `prompt_ids` (1, seq) with n-gram drafts (`lookup`); `check_cache` verifies every layer's cache
    length after each cycle (tests)."""
    _check_prompt(prompt_ids, settings.max_new_tokens)
    device = prompt_ids.device
    prompt = prompt_ids[0].tolist()
    cache = make_cache(settings.kv_cache, model.config, len(prompt) + settings.max_new_tokens)
    result = DecodeResult([], 0.0, 0.0, full_forwards=0, prefill_cycle=True)
    tokens: list[int] = []
    cached = (
        0  # positions in the cache: every committed token but the last (the whole prompt after the prefill)
    )
    synchronize(device)
    start_time = time.perf_counter()
    while not _finished(tokens, settings):
        context = prompt + tokens
        budget = settings.max_new_tokens - len(tokens) - 1  # a cycle commits its accepted drafts + one token
        drafts = lookup.draft(context, settings.eos_token_ids)[:budget]
        fed = context[cached:]  # the prompt in the first pass, the last committed token afterwards
        feed_ids = torch.tensor([fed + drafts], device=device)
        target_logits = forward(model, feed_ids, cache, cached, last_only=False, num_logits=len(drafts) + 1)
        num_accepted, next_token = copied_draft_acceptance(
            drafts, target_logits, settings.sampling, generator
        )
        cached = len(context) + num_accepted
        truncate_cache(cache, cached)  # the next token's KV is written when it is fed next cycle
        _commit(tokens, [*drafts[:num_accepted], next_token], settings)
        if result.full_forwards == 0:
            synchronize(device)
            result.prefill_time = time.perf_counter() - start_time
        result.full_forwards += 1
        result.drafted.append(len(drafts))
        result.accepted.append(num_accepted)
        result.draft_sources.append("ngram" if drafts else "none")
        if check_cache and not _finished(tokens, settings):
            check_cache_lengths(result, cache, len(prompt) + len(tokens) - 1)
    synchronize(device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result


@register_method
@dataclass(frozen=True)
class PromptLookupConfig(MethodTraits):
    """Prompt lookup decoding: `max_draft_tokens` = transformers' prompt_lookup_num_tokens (its candidate
    generator's num_output_tokens), `max_matching_ngram_size` as in transformers."""

    name: Literal["prompt_lookup"]
    max_draft_tokens: int
    max_matching_ngram_size: int
    needs_skip_set: ClassVar[bool] = False

    def __post_init__(self):
        at_least("max_draft_tokens", self.max_draft_tokens, 1)
        at_least("max_matching_ngram_size", self.max_matching_ngram_size, 1)

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        lookup = NgramSettings(self.max_draft_tokens, self.max_matching_ngram_size)
        settings = decoder.settings(max_new_tokens)
        return prompt_lookup_decode(
            decoder.loaded.model, prompt_ids, settings, lookup, generator, decoder.check_cache
        )
