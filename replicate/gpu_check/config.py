"""The typed config of the GPU check (conf/gpu_check.yaml; conf/gpu_check_rehearse.yaml for `--rehearse`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from replicate.bench.gpu_config import GpuShapesConfig
from replicate.config import compose_config, options
from replicate.core.methods import load_method_modules
from replicate.core.model_config import ATTENTION_IMPLEMENTATIONS, DTYPE_NAMES, KV_CACHES
from replicate.lossless.reference import MODELS
from replicate.schema import FieldError, MappingAccess, at_least, at_least_each, build, one_of, within

# Every section the check knows; `sections` in the config picks which run and in what order.
SECTIONS = ("lossless_float32", "lossless_bfloat16", "lossless_float16", "shapes", "host_syncs", "end_to_end")


@dataclass(frozen=True)
class LosslessSection(MappingAccess):
    """The lossless matrix, run once per `lossless_<dtype>` entry of `sections`."""

    models: tuple[int, ...] | None
    num_prompts: int
    max_new_tokens: int

    def __post_init__(self):
        if self.models is not None:
            for index in self.models:
                within("models", index, 0, len(MODELS) - 1)
        at_least_each(self, num_prompts=1, max_new_tokens=1)


@dataclass(frozen=True)
class HostSyncSection(MappingAccess):
    model: str
    max_new_tokens: int
    max_draft_tokens: int
    threshold: float

    def __post_init__(self):
        one_of("model", self.model, options("model"))
        at_least_each(self, max_new_tokens=2, max_draft_tokens=1)
        if not 0.0 < self.threshold <= 1.0:
            raise FieldError(
                "threshold", self.threshold, "must be in (0, 1]: the loop that reads every draft"
            )


@dataclass(frozen=True)
class EndToEndSection(MappingAccess):
    model: str
    dtype: str
    methods: tuple[str, ...]
    kv_caches: tuple[str, ...]
    n_samples: int
    max_new_tokens: int
    warmup_runs: int
    cost_model: dict[str, int]

    def __post_init__(self):
        one_of("model", self.model, options("model"))
        one_of("dtype", self.dtype, DTYPE_NAMES)
        for method in self.methods:
            one_of("methods", method, [name for name, cls in load_method_modules().items() if cls.drafts])
        for kind in self.kv_caches:
            one_of("kv_caches", kind, KV_CACHES)
        at_least_each(self, n_samples=1, max_new_tokens=1, warmup_runs=0)
        if set(self.cost_model) != {"context_length", "repeats", "warmup"}:
            raise FieldError("cost_model", self.cost_model, "needs exactly context_length, repeats, warmup")


@dataclass(frozen=True)
class GpuCheckConfig(MappingAccess):
    output_dir: str
    device: str
    sections: tuple[str, ...]
    budget_s: float
    estimates_s: dict[str, float]
    seed: int
    threads: int | None
    attention: tuple[str, ...]
    kv_caches: tuple[str, ...]
    lossless: LosslessSection
    host_syncs: HostSyncSection
    end_to_end: EndToEndSection
    shapes: GpuShapesConfig

    def __post_init__(self):
        one_of("device", self.device.split(":")[0], ("cuda", "cpu"))
        if not self.sections:
            raise FieldError(
                "sections", list(self.sections), f"names no section; sections: {', '.join(SECTIONS)}"
            )
        for name in self.sections:
            one_of("sections", name, SECTIONS)
        if len(set(self.sections)) != len(self.sections):
            raise FieldError("sections", list(self.sections), "names a section twice; each runs once")
        at_least("budget_s", self.budget_s, 1)
        unknown = set(self.estimates_s) - set(SECTIONS)
        if unknown:
            raise FieldError(
                "estimates_s", sorted(unknown), f"names no section; sections: {', '.join(SECTIONS)}"
            )
        for name, seconds in self.estimates_s.items():
            at_least(f"estimates_s.{name}", seconds, 0)
        at_least("seed", self.seed, 0)
        if self.threads is not None:
            at_least("threads", self.threads, 1)
        for name in self.attention:
            one_of("attention", name, ATTENTION_IMPLEMENTATIONS)
        for kind in self.kv_caches:
            one_of("kv_caches", kind, KV_CACHES)


def gpu_check_config(
    overrides: Sequence[str] = (), rehearse: bool = False
) -> tuple[GpuCheckConfig, dict[str, Any]]:
    """The typed config and its resolved plain form (recorded in results.json)."""
    from omegaconf import OmegaConf

    composed = compose_config(overrides, name="gpu_check_rehearse" if rehearse else "gpu_check")
    plain = OmegaConf.to_container(composed, resolve=True)
    return build(GpuCheckConfig, plain), plain
