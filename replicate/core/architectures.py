"""Which decoder architectures the skipping code is correct for, and a refusal, by name, of every other one.

Skipping (`replicate.core.skipping`) assumes the Llama decoder layer exactly:

    h = h + self_attn(input_layernorm(h));  h = h + mlp(post_attention_layernorm(h))

so replacing `self_attn` (or `mlp`) by a zero and its pre-norm by the identity leaves `h` unchanged. It also
assumes every layer attends to the whole cache (no sliding window: the KV caches here keep every position).

Supported (each tested on a tiny random config, greedy output equal to `model.generate`'s in every cell of
the lossless matrix, dynamic and static KV caches):
- `llama`: LLaMA-2, CodeLLaMA, SmolLM2.
- `qwen2`: Qwen2 / Qwen2.5 / Qwen2.5-Coder (the same layer, q/k/v projections with biases), without a
  sliding window (`use_sliding_window: false`, the shipped default).

Refused before any weight loads (the model config's GGUF header or the hub config says the architecture),
and again when a model is handed to the decoding code directly. Every other architecture is refused as
untested; some for a known reason (`KNOWN_UNSUPPORTED`), e.g. Gemma 2 and 3, whose layers add a norm after
attention and another after the MLP inside the residual branch: skipping a sub-block there must also drop
those norms, which the Llama-style skip does not touch.
"""

from __future__ import annotations

from typing import Any

from replicate.errors import UserError

SUPPORTED_ARCHITECTURES = {
    "llama": "LlamaForCausalLM (LLaMA-2, CodeLLaMA, SmolLM2)",
    "qwen2": "Qwen2ForCausalLM (Qwen2, Qwen2.5, Qwen2.5-Coder; no sliding window)",
}
_GEMMA = (
    "its decoder layer applies post_attention_layernorm and post_feedforward_layernorm to the sub-block "
    "outputs inside the residual branch (and pre_feedforward_layernorm before the MLP), where a Llama-style "
    "skip of self_attn/mlp would leave them in place"
)
KNOWN_UNSUPPORTED = {
    "gemma2": _GEMMA,
    "gemma3": _GEMMA,
    "gemma3_text": _GEMMA,
    "mistral": "sliding-window attention, which the KV caches here do not implement (untested)",
    "qwen3": "q/k norms inside attention (untested)",
}


class UnsupportedArchitectureError(UserError):
    """The model's architecture is not one the skipping code is known to be exact for."""


def architecture_of(config: Any) -> str:
    """The `model_type` of a transformers config (or the name itself when given a string)."""
    if isinstance(config, str):
        return config
    model_type = getattr(config, "model_type", None)
    return getattr(config, "text_config", config).model_type if model_type is None else model_type


def check_architecture(config: Any, what: str) -> None:
    """Raise UnsupportedArchitectureError naming the architecture of `config` (a transformers config or a
    model_type string) unless it is supported; also refuse sliding-window layers."""
    name = architecture_of(config)
    if name not in SUPPORTED_ARCHITECTURES:
        reason = KNOWN_UNSUPPORTED.get(name, "untested with sub-block skipping")
        supported = ", ".join(f"{key} ({value})" for key, value in SUPPORTED_ARCHITECTURES.items())
        raise UnsupportedArchitectureError(
            f"{what}: architecture {name!r} is not supported: {reason}. Supported: {supported} "
            "(replicate/core/architectures.py)"
        )
    layer_types = getattr(config, "layer_types", None) if not isinstance(config, str) else None
    if layer_types and any(kind != "full_attention" for kind in layer_types):
        raise UnsupportedArchitectureError(
            f"{what}: architecture {name!r} with layer types {sorted(set(layer_types))} is not supported: "
            "the KV caches here implement full attention only (set use_sliding_window: false)"
        )


def gguf_architecture(path) -> str:
    """`general.architecture` from a GGUF file's header (llama.cpp's names equal transformers' model_type
    for the supported architectures), read without loading any tensor."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("general.architecture")
    if field is None:
        raise ValueError(f"{path}: the GGUF header has no general.architecture")
    return str(field.contents())
