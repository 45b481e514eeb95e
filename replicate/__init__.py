"""Self-speculative decoding (Draft & Verify, Zhang et al., ACL 2024): a lossless, measured reference.

Python API, without Hydra (values are checked exactly as on the command line):

    import replicate
    lm = replicate.load("smollm2_135m")                       # any conf/model/ name, plus overrides
    out = replicate.generate(lm, "def fib(n):", method="adaptive_draft_exit", max_new_tokens=64)
    print(out.text, out.result.accepted, out.result.drafted)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from replicate.config import compose_config, options
from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.methods import Decoder, build_decoder, method_config
from replicate.core.models import LoadedModel, load_model
from replicate.core.prompts import encode_prompt
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan, skip_sublayers
from replicate.records import DecodeResult
from replicate.schema import ConfigError, build, plain

__all__ = [
    "ConfigError",
    "DecodeResult",
    "DecodeSettings",
    "Decoder",
    "Generation",
    "LoadedModel",
    "SamplingConfig",
    "SkipPlan",
    "Speculation",
    "autoregressive_decode",
    "generate",
    "load",
    "make_decoder",
    "self_speculative_decode",
    "skip_sublayers",
]


def _known(group: str, name: Any) -> str:
    if not isinstance(name, str) or name not in options(group):
        raise ConfigError(f"unknown {group} {name!r}; known: {', '.join(options(group))} (conf/{group}/)")
    return name


def load(model: str, **overrides: Any) -> LoadedModel:
    """Load a model by its config name (`conf/model/<model>.yaml`); keyword arguments override config
    values, e.g. `load("tiny_llama", num_hidden_layers=6)`. Bad values raise ConfigError before loading."""
    cfg = plain(compose_config([f"model={_known('model', model)}"]).model)
    return load_model({**cfg, **overrides})  # merged after composing: values keep their Python types


def make_decoder(
    loaded: LoadedModel, method: str = "adaptive_draft_exit", temperature: float = 0.0, top_p: float = 1.0,
    top_k: int = 0, **method_overrides: Any,
) -> Decoder:  # fmt: skip
    """A reusable decoder (it keeps the adaptive threshold across prompts, as the paper's evaluation does).
    Method parameters default to `conf/method/<method>.yaml`; keyword arguments override them."""
    cfg = plain(compose_config([f"method={_known('method', method)}"]).method)
    sampling = build(SamplingConfig, {"temperature": temperature, "top_p": top_p, "top_k": top_k}, "sampling")
    return build_decoder(method_config({**cfg, **method_overrides}), loaded, sampling)


@dataclass
class Generation:
    text: str
    tokens: list[int]
    result: DecodeResult
    prompt_truncated: bool


def generate(
    loaded: LoadedModel, prompt: str, method: str | None = None, max_new_tokens: int = 128, seed: int = 0,
    decoder: Decoder | None = None, **decoder_options: Any,
) -> Generation:  # fmt: skip
    """Decode one prompt with `method` (default adaptive_draft_exit; options as in `make_decoder`), or with a
    `decoder` from `make_decoder` to carry its state across calls (then pass no method or options).

    A prompt longer than `max_context - max_new_tokens` tokens is cut in the middle as the CLI cuts it
    (`replicate.core.prompts.encode_prompt`); `Generation.prompt_truncated` says so."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if decoder is not None:
        if method is not None or decoder_options:
            given = ", ".join(["method"] * (method is not None) + sorted(decoder_options))
            raise ConfigError(
                f"generate() got a decoder and also {given}; the decoder already fixes the method and its "
                "options: pass either decoder=... or method/options, not both"
            )
        if decoder.loaded is not loaded:
            raise ConfigError(
                f"the decoder was built for model {decoder.loaded.name!r}, not for the model passed here "
                f"({loaded.name!r}); build one with make_decoder(<this model>, ...)"
            )
    else:
        decoder = make_decoder(loaded, method or "adaptive_draft_exit", **decoder_options)
    prompt_ids, truncated = encode_prompt(loaded, prompt, max_new_tokens)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    result = decoder(prompt_ids, max_new_tokens, generator)
    return Generation(loaded.decode(result.tokens), result.tokens, result, truncated)
