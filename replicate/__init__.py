"""Self-speculative decoding (Draft & Verify, Zhang et al., ACL 2024): a lossless, measured reference.

Python API, without Hydra (values are checked exactly as on the command line):

    import replicate
    lm = replicate.load("smollm2_135m")                       # any conf/model/ name, plus overrides
    out = replicate.generate(lm, "def fib(n):", method="adaptive_draft_exit", max_new_tokens=64)
    print(out.text, out.result.accepted, out.result.drafted)

Importing the package is cheap: torch, transformers and Hydra load when a model, a decoder or a config is
first needed (the names below are resolved on first use), so `import replicate.statistics` or a command's
`--help` does not pay for them. Packages: `core` (the decoding loops and what they need), `run` (one run:
runner, records, metrics), `bench`, `report`, `search`, `lossless`, `gpu_check`, `hf` (transformers
`custom_generate`); docs/architecture.md maps every module.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replicate.errors import UserError
from replicate.schema import ConfigError, build, plain

if TYPE_CHECKING:
    from replicate.core.methods import Decoder
    from replicate.core.models import LoadedModel
    from replicate.records import DecodeResult

# The public names this package re-exports, and the module each lives in (imported on first use).
_EXPORTS = {
    "DecodeResult": "replicate.records",
    "DecodeSettings": "replicate.core.decoding",
    "Decoder": "replicate.core.methods",
    "LoadedModel": "replicate.core.models",
    "SamplingConfig": "replicate.core.sampling",
    "SkipPlan": "replicate.core.skipping",
    "Speculation": "replicate.core.decoding",
    "autoregressive_decode": "replicate.core.decoding",
    "self_speculative_decode": "replicate.core.decoding",
    "skip_sublayers": "replicate.core.skipping",
}

__all__ = [
    "ConfigError",
    "UserError",
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
    from replicate.config import options

    if not isinstance(name, str) or name not in options(group):
        raise ConfigError(f"unknown {group} {name!r}; known: {', '.join(options(group))} (conf/{group}/)")
    return name


def load(model: str, **overrides: Any) -> LoadedModel:
    """Load a model by its config name (`conf/model/<model>.yaml`); keyword arguments override config
    values, e.g. `load("tiny_llama", num_hidden_layers=6)`. Bad values raise ConfigError before loading."""
    from replicate.config import compose_config
    from replicate.core.models import load_model

    cfg = plain(compose_config([f"model={_known('model', model)}"]).model)
    return load_model({**cfg, **overrides})  # merged after composing: values keep their Python types


def make_decoder(
    loaded: LoadedModel, method: str = "adaptive_draft_exit", temperature: float = 0.0, top_p: float = 1.0,
    top_k: int = 0, **method_overrides: Any,
) -> Decoder:  # fmt: skip
    """A reusable decoder (it keeps the adaptive threshold across prompts, as the paper's evaluation does).
    Method parameters default to `conf/method/<method>.yaml`; keyword arguments override them."""
    from replicate.config import compose_config
    from replicate.core.methods import build_decoder, method_config
    from replicate.core.sampling import SamplingConfig

    cfg = plain(compose_config([f"method={_known('method', method)}"]).method)
    sampling = build(SamplingConfig, {"temperature": temperature, "top_p": top_p, "top_k": top_k}, "sampling")
    for setting in sampling.ignored():
        warnings.warn(f"{setting} has no effect under greedy decoding (temperature=0)", stacklevel=2)
    return build_decoder(method_config({**cfg, **method_overrides}), loaded, sampling)


@dataclass
class Generation:
    text: str
    tokens: list[int]
    result: DecodeResult
    prompt_truncated: bool


def generate(
    loaded: LoadedModel, prompt: str, method: str | Decoder = "adaptive_draft_exit", max_new_tokens: int = 128,
    seed: int = 0, **decoder_options: Any,
) -> Generation:  # fmt: skip
    """Decode one prompt with `method`: a method name (options as in `make_decoder`), or a decoder from
    `make_decoder`, which carries its state (the adaptive threshold) across calls (then pass no options).

    A prompt longer than `max_context - max_new_tokens` tokens is cut in the middle as the CLI cuts it
    (`replicate.core.prompts.encode_prompt`); `Generation.prompt_truncated` says so."""
    import torch

    from replicate.core.methods import Decoder
    from replicate.core.models import LoadedModel
    from replicate.core.prompts import encode_prompt

    if not isinstance(loaded, LoadedModel):
        raise ConfigError(
            f"generate() needs a model from replicate.load(...) as its first argument, got {type(loaded).__name__}"
        )
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt must be a string, got {prompt!r} ({type(prompt).__name__})")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(method, Decoder):
        decoder = method
        if decoder_options:
            raise ConfigError(
                f"generate() got a decoder and also {', '.join(sorted(decoder_options))}; the decoder already "
                "fixes the method and its options: pass either a decoder or a method name with options"
            )
        if decoder.loaded is not loaded:
            raise ConfigError(
                f"the decoder was built for model {decoder.loaded.name!r}, not for the model passed here "
                f"({loaded.name!r}); build one with make_decoder(<this model>, ...)"
            )
    else:
        decoder = make_decoder(loaded, method, **decoder_options)
    prompt_ids, truncated = encode_prompt(loaded, prompt, max_new_tokens)
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    result = decoder(prompt_ids, max_new_tokens, generator)
    return Generation(loaded.decode(result.tokens), result.tokens, result, truncated)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'replicate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
