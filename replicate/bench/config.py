"""The typed bench config (`conf/bench.yaml`): every value checked before any model loads, an unknown key
(`+profile.repeatz=1`) refused with the closest known one. `replicate bench` checks it before Hydra starts;
`run_bench` checks it again (the Python API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from replicate.config import WarmupConfig
from replicate.core.methods import method_config
from replicate.core.model_config import ATTENTION_IMPLEMENTATIONS, ModelConfig, model_config
from replicate.schema import (
    ConfigError,
    FieldError,
    MappingAccess,
    at_least,
    at_least_each,
    build,
    one_of,
    plain,
)
from replicate.statistics import BootstrapConfig
from tasks.config import TaskConfig, task_config

Section = Literal["profile", "cost_model", "parity", "peers", "memory", "kv_cache", "attention"]
SECTIONS: tuple[str, ...] = get_args(Section)


@dataclass(frozen=True)
class ProfileSettings(MappingAccess):
    context_length: int | Literal["auto"]
    max_draft_tokens: int
    repeats: int
    warmup: int

    def __post_init__(self):
        if self.context_length != "auto":
            at_least("context_length", self.context_length, 1)
        at_least_each(self, max_draft_tokens=1, repeats=1, warmup=0)


@dataclass(frozen=True)
class AttentionSettings(MappingAccess):
    implementations: tuple[str, ...]

    def __post_init__(self):
        for name in self.implementations:
            one_of("implementations", name, ATTENTION_IMPLEMENTATIONS)


@dataclass(frozen=True)
class PeerSettings(MappingAccess):
    assistant_early_exit: int | None
    prompt_lookup_num_tokens: int
    max_matching_ngram_size: int
    assistant: dict[str, Any]

    def __post_init__(self):
        at_least_each(self, assistant_early_exit=1, prompt_lookup_num_tokens=1, max_matching_ngram_size=1)


@dataclass(frozen=True)
class MemorySettings(MappingAccess):
    repeats: int
    max_new_tokens: int

    def __post_init__(self):
        at_least_each(self, repeats=1, max_new_tokens=1)


@dataclass(frozen=True)
class BenchConfig(MappingAccess):
    """conf/bench.yaml; `gpu` is typed by `replicate.bench.gpu_config` when `gpu_shapes` is on."""

    model: ModelConfig
    task: TaskConfig
    method: Any  # a registered method config (`replicate.core.methods.METHODS`), built by bench_config
    output_dir: str
    sections: tuple[Section, ...]
    threads: int | None
    seed: int
    n_prompts: int
    max_new_tokens: int
    repeats: int
    warmup: WarmupConfig
    placeholder_skip_when_empty: bool
    profile: ProfileSettings
    attention: AttentionSettings
    peers: PeerSettings
    memory: MemorySettings
    plot: bool
    bootstrap: BootstrapConfig
    gpu_shapes: bool
    gpu: dict[str, Any]

    def __post_init__(self):
        at_least_each(self, threads=1, seed=0, n_prompts=1, max_new_tokens=1, repeats=1)
        if not self.sections and not self.gpu_shapes:
            raise FieldError("sections", [], "is empty and gpu_shapes=false: nothing would be measured")


def bench_config(cfg: Any) -> BenchConfig:
    """The typed bench config of a composed one (and its `gpu` section when `gpu_shapes`); ConfigError."""
    from replicate.bench.gpu_config import gpu_shapes_config

    method = method_config(plain(cfg["method"]), "method")
    if not method.drafts and cfg.get("sections"):  # before `profile.max_draft_tokens: ${method...}` resolves
        raise ConfigError(
            f"method={method.name}: the bench races a self-speculative method against autoregressive decoding; "
            "pick one that drafts (method=adaptive_draft_exit or method=self_speculative)"
        )
    data = dict(plain(cfg))
    data.pop("hydra", None)
    for key, convert in (("model", model_config), ("task", task_config), ("method", method_config)):
        if key in data:
            data[key] = convert(data[key], key)
    config = build(BenchConfig, data)
    if config.gpu_shapes:
        gpu_shapes_config(config.gpu)
    return config
