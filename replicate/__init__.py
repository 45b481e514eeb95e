"""Self-speculative decoding (Draft & Verify, Zhang et al., ACL 2024): a lossless, measured reference.

Python API, without Hydra (values are checked exactly as on the command line):

    import replicate
    lm = replicate.load("smollm2_135m")                       # any conf/model/ name, plus overrides
    out = replicate.generate(lm, "def fib(n):", method="adaptive_draft_exit", max_new_tokens=64)
    print(out.text, out.result.accepted, out.result.drafted)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from replicate.errors import UserError
from replicate.schema import ConfigError

# Everything else is imported on first use (PEP 562): `import replicate` and the command line's --help stay
# cheap (no torch) until a model is needed.
_LAZY = {
    "DecodeResult": "replicate.records",
    "DecodeSettings": "replicate.core.decoding",
    "Decoder": "replicate.core.methods",
    "Generation": "replicate.api",
    "LoadedModel": "replicate.core.models",
    "SamplingConfig": "replicate.core.sampling",
    "SkipPlan": "replicate.core.skipping",
    "Speculation": "replicate.core.decoding",
    "autoregressive_decode": "replicate.core.decoding",
    "generate": "replicate.api",
    "load": "replicate.api",
    "make_decoder": "replicate.api",
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

if TYPE_CHECKING:
    from replicate.api import Generation, generate, load, make_decoder
    from replicate.core.decoding import (
        DecodeSettings,
        Speculation,
        autoregressive_decode,
        self_speculative_decode,
    )
    from replicate.core.methods import Decoder
    from replicate.core.models import LoadedModel
    from replicate.core.sampling import SamplingConfig
    from replicate.core.skipping import SkipPlan, skip_sublayers
    from replicate.records import DecodeResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'replicate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
