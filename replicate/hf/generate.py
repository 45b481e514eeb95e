"""Self-speculative decoding as a transformers `custom_generate` method.

    out = model.generate(**inputs, custom_generate=replicate.hf.self_speculative_generate,
                         max_new_tokens=64, model_name="smollm2_135m")   # or skip_attention=[...], skip_mlp=[...]

transformers prepares everything as for its own decoding (GenerationConfig, logits warpers, stopping criteria,
max_length, EOS) and calls this function instead of its sampling loop; the loop is
`replicate.core.decoding.self_speculative_decode`. Greedy output (`do_sample=False`) is token-identical to
`generate` without `custom_generate` (tests/test_hf.py); sampling (`do_sample=True` with temperature, top_k,
top_p) is speculative sampling, identically distributed.

Honoured: `max_new_tokens` / `max_length`, EOS, every stopping criterion (checked after each committed token,
so a criterion met inside a verification cycle cuts there, as step-by-step decoding would), `streamer` (the
committed tokens of each cycle are put at once), `return_dict_in_generate` (a `GenerateDecoderOnlyOutput`
with `sequences`). Refused with a message: batch size > 1, padding in `attention_mask`, a non-empty
`past_key_values`, beams, several return sequences, `assistant_model`, logits processors other than the
sampling warpers (repetition_penalty, min_new_tokens, ...), and output_scores / logits / attentions / hidden
states (the draft/verify loop does not keep them per step).

transformers 5.23 does not pass `streamer` to a callable `custom_generate` (it drops it with the other
mode arguments) though it puts the prompt into it; this function reads it from the `generate` call it runs
under, so `model.generate(..., streamer=s, custom_generate=...)` streams as usual.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from replicate.core.decoding import DecodeSettings, Speculation, self_speculative_decode
from replicate.hf.settings import (
    method_settings,
    sampling_config,
    skip_plan,
    split_options,
    with_option_parameters,
)

# What transformers' generate passes to a decoding method besides its own arguments; anything else is a
# model input this loop would ignore, so it is refused.
_EXPECTED_MODEL_KWARGS = {"attention_mask", "position_ids", "logits_to_keep", "past_key_values", "use_cache"}
_OUTPUT_FLAGS = ("output_scores", "output_logits", "output_attentions", "output_hidden_states")


def _generate_call() -> dict[str, Any]:
    """The local variables of the transformers `generate` call this function runs under ({} if none)."""
    from transformers.generation.utils import GenerationMixin

    code = inspect.unwrap(GenerationMixin.generate).__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return frame.f_locals
        frame = frame.f_back
    return {}


def _check_inputs(
    model: nn.Module, input_ids: torch.Tensor, generation_config: Any, model_kwargs: dict[str, Any]
) -> None:
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError("self-speculative generate supports decoder-only models, not encoder-decoder ones")
    for name in ("num_beams", "num_return_sequences"):
        value = getattr(generation_config, name, None)
        if value is not None and value > 1:
            raise ValueError(f"{name}={value} is not supported by self-speculative generate; use {name}=1")
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(
            f"self-speculative generate decodes one sequence: input_ids must have shape (1, seq_len), got "
            f"{tuple(input_ids.shape)}; call generate once per prompt"
        )
    if generation_config.return_dict_in_generate:
        requested = [flag for flag in _OUTPUT_FLAGS if getattr(generation_config, flag, False)]
        if requested:
            raise ValueError(
                f"{', '.join(requested)} cannot be returned by self-speculative generate (the draft/verify loop "
                "keeps no per-step scores, attentions or hidden states); drop them"
            )
    unexpected = sorted(set(model_kwargs) - _EXPECTED_MODEL_KWARGS)
    if unexpected:
        raise ValueError(f"self-speculative generate does not take the model inputs {unexpected}; drop them")
    mask = model_kwargs.get("attention_mask")
    if mask is not None and not bool((mask == 1).all()):
        raise ValueError(
            "attention_mask has padding (zeros): self-speculative generate decodes one unpadded sequence; "
            "pass the prompt without padding (an all-ones mask, or none)"
        )
    cache = model_kwargs.get("past_key_values")
    if cache is not None and cache.get_seq_length() > 0:
        raise ValueError(
            "past_key_values holds a filled cache: self-speculative generate builds its own (draft layers lag "
            "behind the full ones); pass the whole prompt without past_key_values"
        )


class _Commits:
    """`on_commit` of the decoding loop: checks the stopping criteria after each new token (cutting the
    tokens at the first one met) and puts the committed tokens into the streamer."""

    def __init__(self, prompt_ids: torch.Tensor, stopping_criteria: Any, streamer: Any):
        self.prompt_ids, self.stopping_criteria, self.streamer = prompt_ids, stopping_criteria, streamer
        self.checked = 0  # new tokens already checked (and streamed)

    def __call__(self, tokens: list[int]) -> bool:
        prompt_length = self.prompt_ids.shape[1]
        new = torch.tensor([tokens], dtype=self.prompt_ids.dtype, device=self.prompt_ids.device)
        sequence = torch.cat([self.prompt_ids, new], dim=1)  # (1, prompt + new tokens)
        stop = False
        for position in range(self.checked, len(tokens)):
            # scores=None: the loop keeps no per-step scores (criteria that read them are not supported).
            if bool(self.stopping_criteria(sequence[:, : prompt_length + position + 1], None).any()):
                del tokens[position + 1 :]
                stop = True
                break
        if self.streamer is not None and len(tokens) > self.checked:
            self.streamer.put(torch.tensor(tokens[self.checked :]))
        self.checked = len(tokens)
        return stop


def _decode_settings(
    input_ids: torch.Tensor, generation_config: Any, logits_processor: Any
) -> DecodeSettings:
    """The token budget, EOS ids and sampling law transformers prepared, for the decoding loop."""
    sampling = sampling_config(generation_config, logits_processor)
    eos = generation_config._eos_token_tensor
    eos_token_ids = frozenset() if eos is None else frozenset(int(t) for t in eos.flatten().tolist())
    max_new_tokens = generation_config.max_length - input_ids.shape[1]
    if max_new_tokens < 1:
        raise ValueError(
            f"max_length={generation_config.max_length} leaves no room after the {input_ids.shape[1]}-token "
            "prompt; set max_new_tokens"
        )
    return DecodeSettings(max_new_tokens, sampling, eos_token_ids)


@with_option_parameters
def self_speculative_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    logits_processor: Sequence[Any],
    stopping_criteria: Any,
    generation_config: Any,
    **kwargs: Any,
) -> Any:
    """Called by `model.generate(..., custom_generate=self_speculative_generate)`; returns what `generate`
    returns: `sequences` (1, prompt + new tokens), or a `GenerateDecoderOnlyOutput` holding them when
    `return_dict_in_generate`.

    Keyword arguments of `generate` read here (`replicate.hf.settings.GenerateOptions`; the signature
    transformers inspects names each of them, the rest of `kwargs` are model inputs):
    - skip set: `skip_attention` / `skip_mlp` (decoder layer ids), or `model_name` (a `conf/model/` name);
      a model this project configures is recognised without either (see `replicate.hf.settings`);
    - `method`: `adaptive_draft_exit` (default, the paper's) or `self_speculative` (fixed K, optional static
      `threshold`); its other settings default to `conf/method/<method>.yaml`: `max_draft_tokens`,
      `threshold`, `initial_threshold`, `threshold_step`, `acceptance_ema`, `threshold_ema`,
      `target_acceptance`, `reset_per_sample`;
    - `draft_exit`: a draft-exit rule (`replicate.core.draft_exit`) whose state, e.g. the adaptive threshold,
      carries across calls, as the paper's evaluation does (a fresh rule per call otherwise);
    - `decode_results`: a list that receives this call's `DecodeResult` (drafted / accepted per cycle, times).
    """
    options, model_kwargs = split_options(kwargs)
    _check_inputs(model, input_ids, generation_config, model_kwargs)
    call = _generate_call()
    if call.get("assistant_model") is not None:
        raise ValueError("assistant_model is not used by self-speculative generate (the model drafts itself)")
    plan = skip_plan(model, options.model_name, options.skip_attention, options.skip_mlp)
    config, rule = method_settings(options.method, options.draft_exit, options.method_overrides())
    settings = _decode_settings(input_ids, generation_config, logits_processor)
    streamer = call.get("streamer")  # generate has already put the prompt into it
    on_commit = _Commits(input_ids, stopping_criteria, streamer)
    speculation = Speculation(plan, config.max_draft_tokens, rule)
    result = self_speculative_decode(model, input_ids, settings, speculation, on_commit=on_commit)
    if streamer is not None:
        streamer.end()
    if options.decode_results is not None:
        options.decode_results.append(result)
    new = torch.tensor([result.tokens], dtype=input_ids.dtype, device=input_ids.device)
    sequences = torch.cat([input_ids, new], dim=1)
    if generation_config.return_dict_in_generate:
        from transformers.generation import GenerateDecoderOnlyOutput

        return GenerateDecoderOnlyOutput(sequences=sequences)
    return sequences
