"""Self-speculative decoding (Draft & Verify, Zhang et al., ACL 2024): a lossless, measured reference.

Python API, without Hydra:

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
from replicate.core.decoding import DecodeResult, autoregressive_decode, self_speculative_decode
from replicate.core.methods import Decoder, build_decoder
from replicate.core.models import LoadedModel, load_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan, skip_sublayers

__all__ = [
    "DecodeResult",
    "Decoder",
    "Generation",
    "LoadedModel",
    "SamplingConfig",
    "SkipPlan",
    "autoregressive_decode",
    "generate",
    "load",
    "make_decoder",
    "self_speculative_decode",
    "skip_sublayers",
]


def _overrides(prefix: str, values: dict[str, Any]) -> list[str]:
    return [
        f"{prefix}{key}={value!r}" if isinstance(value, str) else f"{prefix}{key}={value}"
        for key, value in values.items()
    ]


def load(model: str, **overrides: Any) -> LoadedModel:
    """Load a model by its config name (`conf/model/<model>.yaml`); keyword arguments override config
    values, e.g. `load("tiny_llama", num_hidden_layers=6)`."""
    if model not in options("model"):
        raise ValueError(f"unknown model {model!r}; known models: {', '.join(options('model'))}")
    cfg = compose_config([f"model={model}", *_overrides("model.", overrides)])
    return load_model(cfg.model)


def make_decoder(
    loaded: LoadedModel, method: str = "adaptive_draft_exit", temperature: float = 0.0, top_p: float = 1.0,
    top_k: int = 0, **method_overrides: Any,
) -> Decoder:  # fmt: skip
    """A reusable decoder (it keeps the adaptive threshold across prompts, as the paper's evaluation does).
    Method parameters default to `conf/method/<method>.yaml`; keyword arguments override them."""
    if method not in options("method"):
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(options('method'))}")
    cfg = compose_config([f"method={method}", *_overrides("method.", method_overrides)])
    return build_decoder(cfg.method, loaded, SamplingConfig(temperature, top_p, top_k))


@dataclass
class Generation:
    text: str
    tokens: list[int]
    result: DecodeResult


def generate(
    loaded: LoadedModel, prompt: str, method: str = "adaptive_draft_exit", max_new_tokens: int = 128,
    seed: int = 0, decoder: Decoder | None = None, **decoder_options: Any,
) -> Generation:  # fmt: skip
    """Decode one prompt. Pass a `decoder` from `make_decoder` to carry state across calls."""
    decoder = decoder or make_decoder(loaded, method, **decoder_options)
    prompt_ids = torch.tensor([loaded.encode(prompt)], device=loaded.device)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    result = decoder(prompt_ids, max_new_tokens, generator)
    return Generation(loaded.decode(result.tokens), result.tokens, result)
