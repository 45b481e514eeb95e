"""The typed config of the GPU-shapes section (`gpu` in conf/bench.yaml, `shapes` in conf/gpu_check.yaml) and
the device check that stops it without CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from replicate.core.model_config import ATTENTION_IMPLEMENTATIONS, DTYPE_NAMES, KV_CACHES
from replicate.errors import MissingResource
from replicate.schema import FieldError, MappingAccess, at_least, at_least_each, build, one_of
from replicate.statistics import BootstrapConfig


@dataclass(frozen=True)
class ShapeConfig(MappingAccess):
    """The sizes of a random-weight Llama; num_key_value_heads null = num_attention_heads (LLaMA-2 7B/13B)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    num_key_value_heads: int | None = None

    def __post_init__(self):
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            at_least(name, getattr(self, name), 1)
        at_least("vocab_size", self.vocab_size, 2)
        if self.hidden_size % self.num_attention_heads:
            raise FieldError("hidden_size", self.hidden_size, "must be a multiple of num_attention_heads")

    def sizes(self) -> dict[str, int]:
        sizes = {key: getattr(self, key) for key in self.keys()}
        if sizes["num_key_value_heads"] is None:
            sizes["num_key_value_heads"] = self.num_attention_heads
        return sizes


@dataclass(frozen=True)
class GpuShapesConfig(MappingAccess):
    """The GPU-shapes section (`gpu` in conf/bench.yaml, `shapes` in conf/gpu_check.yaml)."""

    device: str
    shapes: dict[str, ShapeConfig]
    dtype: str
    attn_implementation: str
    attention: tuple[str, ...]
    kv_cache: str
    kv_caches: tuple[str, ...]
    context_length: int
    max_draft_tokens: int
    profile_repeats: int
    profile_warmup: int
    n_prompts: int
    max_new_tokens: int
    seed: int
    bootstrap: BootstrapConfig

    def __post_init__(self):
        one_of("dtype", self.dtype, DTYPE_NAMES)
        for name in (self.attn_implementation, *self.attention):
            one_of("attention", name, ATTENTION_IMPLEMENTATIONS)
        for kind in (self.kv_cache, *self.kv_caches):
            one_of("kv_caches", kind, KV_CACHES)
        at_least_each(self, context_length=1, max_draft_tokens=1)
        for name in ("profile_repeats", "n_prompts", "max_new_tokens"):
            at_least(name, getattr(self, name), 1)
        at_least("profile_warmup", self.profile_warmup, 0)
        if self.context_length + self.max_new_tokens > 4096:
            raise FieldError(
                "context_length", self.context_length, "plus max_new_tokens must fit 4096 positions"
            )


def gpu_shapes_config(cfg: Any, path: str = "gpu") -> GpuShapesConfig:
    return build(GpuShapesConfig, cfg, path)


def require_device(name: str) -> torch.device:
    """`gpu.device` as a torch device; CUDA without a CUDA device is a clear error. `cpu` is allowed for the
    rehearsal of the section at small shapes (tests, `python -m replicate.gpu_check --rehearse`)."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MissingResource(
            f"gpu.device={name}: the GPU section builds LLaMA-2-7B/13B-shaped models in bf16 on a CUDA GPU, "
            "but torch.cuda.is_available() is False on this machine. Run it on a GPU machine, leave "
            "gpu_shapes=false for the CPU sections, or rehearse it at tiny shapes with gpu.device=cpu and "
            "gpu.shapes set to small sizes (as `python -m replicate.gpu_check --rehearse` does)."
        )
    return device
