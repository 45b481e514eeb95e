"""`transformers_prompt_lookup`: transformers' own prompt lookup decoding (`model.generate(do_sample=False,
prompt_lookup_num_tokens=...)`) hosted by the runner as a peer, on the same model object, with the same
attention implementation and the same kind of cache (transformers' DynamicCache; the project's dynamic
cache is a DynamicCache too), interleaved with the same autoregressive baseline as every method.

Its loop is the library's, so its cycle trace is read from outside: a forward pre-hook records where each
full pass starts (the cache length) and how many tokens it feeds. Pass i feeds [last token, drafts...]
(the first: the prompt and its drafts), so drafted_i = fed_i - 1 (the first: fed_0 - prompt length), and
since the cache is cropped to the committed length before the next pass, accepted_i = start_{i+1} -
start_i - 1 (the first: start_1 - prompt length); the last pass's accepted count is what it committed
minus one (a lower bound where the budget or an EOS cut it, as in every method here). The prefill time is
the end of the first pass. Greedy only (the runner's sampled runs seed the project's loops, not
generate's); dynamic cache only (generate builds its own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from replicate.core.decoding import _check_prompt
from replicate.core.methods import Decoder, MethodTraits, register_method
from replicate.core.passes import synchronize
from replicate.records import DecodeResult
from replicate.schema import at_least


def trace_from_passes(
    passes: list[tuple[int, int]], prompt_length: int, num_new_tokens: int
) -> tuple[list[int], list[int]]:
    """(drafted, accepted) per pass from each pass's (start position, tokens fed); see the module docstring."""
    drafted, accepted = [], []
    committed_before = 0  # new tokens committed before pass i
    for index, (_, fed) in enumerate(passes):
        drafted.append(fed - (prompt_length if index == 0 else 1))
        if index + 1 < len(passes):
            committed_after = passes[index + 1][0] - prompt_length + 1
        else:
            committed_after = num_new_tokens
        accepted.append(max(0, min(drafted[-1], committed_after - committed_before - 1)))
        committed_before = committed_after
    return drafted, accepted


@register_method
@dataclass(frozen=True)
class TransformersPromptLookupConfig(MethodTraits):
    """transformers' prompt lookup with `prompt_lookup_num_tokens` and `max_matching_ngram_size`."""

    name: Literal["transformers_prompt_lookup"]
    prompt_lookup_num_tokens: int
    max_matching_ngram_size: int
    needs_skip_set: ClassVar[bool] = False
    supports_sampling: ClassVar[bool] = False
    supports_static_cache: ClassVar[bool] = False
    peer: ClassVar[bool] = True  # not the project's method: the library's, compared against

    def __post_init__(self):
        at_least("prompt_lookup_num_tokens", self.prompt_lookup_num_tokens, 1)
        at_least("max_matching_ngram_size", self.max_matching_ngram_size, 1)

    @property
    def max_draft_tokens(self) -> int:
        return self.prompt_lookup_num_tokens

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        _check_prompt(prompt_ids, max_new_tokens)
        model, device = decoder.loaded.model, prompt_ids.device
        eos = sorted(decoder.loaded.eos_token_ids)
        passes: list[tuple[int, int]] = []
        first_pass_end: list[float] = []

        def before(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            cache, ids = kwargs.get("past_key_values"), kwargs.get("input_ids")
            passes.append((0 if cache is None else cache.get_seq_length(), ids.shape[1]))

        def after(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
            if not first_pass_end:
                synchronize(device)
                first_pass_end.append(time.perf_counter())

        handles = [
            model.register_forward_pre_hook(before, with_kwargs=True),
            model.register_forward_hook(after, with_kwargs=True),
        ]
        try:
            synchronize(device)
            start_time = time.perf_counter()
            with torch.inference_mode():
                output = model.generate(
                    prompt_ids,
                    attention_mask=torch.ones_like(prompt_ids),
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    prompt_lookup_num_tokens=self.prompt_lookup_num_tokens,
                    max_matching_ngram_size=self.max_matching_ngram_size,
                    eos_token_id=eos or None,
                    pad_token_id=eos[0] if eos else 0,
                )
            synchronize(device)
            total_time = time.perf_counter() - start_time
        finally:
            for handle in handles:
                handle.remove()
        tokens = output[0, prompt_ids.shape[1] :].tolist()
        drafted, accepted = trace_from_passes(passes, prompt_ids.shape[1], len(tokens))
        return DecodeResult(
            tokens,
            prefill_time=first_pass_end[0] - start_time,
            total_time=total_time,
            full_forwards=len(passes),
            drafted=drafted,
            accepted=accepted,
            draft_sources=["ngram" if count else "none" for count in drafted],
            prefill_cycle=True,
        )
