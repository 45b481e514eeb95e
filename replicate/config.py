"""The one place configs are composed and typed.

- `compose_config(overrides, name)`: a root config of `conf/` (`config` for runs, `search_config`, `bench`)
  with command-line style overrides, exactly as the CLI composes it. Safe inside a running Hydra app (the
  bench's, the search's, or a user's own): the app's Hydra state is set aside and restored.
- `run_config(cfg)`: the typed, validated `RunConfig` of a composed run config; a bad value raises
  `ConfigError` naming the key, the value and what is allowed, before any model or data loads.
- `options(group)`: the names of a config group (the group directory is the registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omegaconf import DictConfig

from replicate.core.model_config import ModelConfig, model_config
from replicate.core.sampling_config import SamplingConfig
from replicate.overrides import compose_config
from replicate.paths import CONF_DIR
from replicate.schema import (
    ConfigError,
    FieldError,
    MappingAccess,
    at_least,
    at_least_each,
    build,
    build_registered,
    plain,
    to_dict,
)
from replicate.statistics import BootstrapConfig
from tasks.config import TaskConfig, task_config

__all__ = ["CONF_DIR", "ConfigError", "RunConfig", "compose_config", "options", "run_config"]


def options(group: str) -> list[str]:
    """The registered names of a config group (the group directory is the registry)."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


@dataclass(frozen=True)
class WarmupConfig(MappingAccess):
    runs: int
    max_new_tokens: int

    def __post_init__(self):
        at_least_each(self, runs=0, max_new_tokens=1)


# What `replicate.cost_profile.measure_cost_profile` accepts, for every config that has one measured.
COST_PROFILE_MINIMUMS = {"context_length": 1, "repeats": 1, "warmup": 0}


@dataclass(frozen=True)
class CostModelConfig(MappingAccess):
    """The run's cost profile (`replicate.cost_model`): time each kind of pass once, after warm-up."""

    enabled: bool
    context_length: int
    repeats: int
    warmup: int

    def __post_init__(self):
        at_least_each(self, **COST_PROFILE_MINIMUMS)


@dataclass(frozen=True)
class DivergenceConfig(MappingAccess):
    """How a greedy run's differences from its baseline are judged (`replicate.run.metrics.divergence_verdict`):
    a near-tie when the baseline's top-two logit margin is at most `near_tie_ulps` units in the last place of
    the model's dtype at the top logit's magnitude."""

    near_tie_ulps: float

    def __post_init__(self):
        at_least("near_tie_ulps", self.near_tie_ulps, 0.0)


@dataclass(frozen=True)
class LoggerConfig(MappingAccess):
    """`logger=none`: results live in the run directory only."""

    name: Literal["none"]


@dataclass(frozen=True)
class WandbLoggerConfig(MappingAccess):
    """`logger=wandb` (conf/logger/wandb.yaml)."""

    name: Literal["wandb"]
    project: str
    entity: str | None
    mode: Literal["online", "offline", "disabled"]
    group: str
    run_name: str
    job_type: str
    tags: tuple[str, ...]
    notes: str | None
    dir: str | None
    log_samples: bool
    max_text_chars: int

    def __post_init__(self):
        at_least("max_text_chars", self.max_text_chars, 0)


LOGGERS = {"none": LoggerConfig, "wandb": WandbLoggerConfig}


def logger_config(cfg: Mapping[str, Any], path: str = "logger") -> LoggerConfig | WandbLoggerConfig:
    return build_registered(LOGGERS, "name", cfg, path, "logger", " (conf/logger/)")


@dataclass(frozen=True)
class RunConfig(MappingAccess):
    """One run (`conf/config.yaml`): every value that affects its results. `experiment` and `paper` are the
    free-form sections of a paper-table experiment (conf/experiment/), recorded with the run."""

    model: ModelConfig
    task: TaskConfig
    method: Any  # a registered method config (`replicate.core.methods.METHODS`), built by run_config
    logger: LoggerConfig | WandbLoggerConfig
    n_samples: int
    max_new_tokens: int
    seed: int
    sampling: SamplingConfig
    run_baseline: bool
    warmup: WarmupConfig
    cost_model: CostModelConfig
    verify_cache: bool
    resume: bool
    force: bool
    divergence: DivergenceConfig
    bootstrap: BootstrapConfig
    experiment: dict[str, Any] | None = None
    paper: dict[str, Any] | None = None

    def __post_init__(self):
        at_least_each(self, n_samples=1, max_new_tokens=1, seed=0)
        if self.max_new_tokens + 5 > self.model.max_context:
            raise FieldError(
                "max_new_tokens",
                self.max_new_tokens,
                f"leaves no room for a prompt in model.max_context={self.model.max_context}",
            )
        from replicate.core.methods import check_method_settings  # with the registry's decoding loops (torch)

        try:
            check_method_settings(self.method, self.sampling, self.model.kv_cache)
        except ValueError as error:
            raise FieldError("method.name", self.method.name, str(error)) from None
        if self.task.min_baseline_chars_filter is not None and self.method.drafts and not self.run_baseline:
            raise FieldError(
                "run_baseline",
                self.run_baseline,
                f"task.min_baseline_chars_filter={self.task.min_baseline_chars_filter} judges the autoregressive "
                "baseline's completion: set run_baseline=true, or task.min_baseline_chars_filter=null",
            )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def ineffective_settings(config: RunConfig) -> list[str]:
    """Settings of a valid run config that cannot take effect, each named with why (the run warns)."""
    notes = [
        f"sampling.{setting} has no effect under greedy decoding (sampling.temperature=0 takes the argmax); "
        "set sampling.temperature > 0 to sample"
        for setting in config.sampling.ignored()
    ]
    if config.method.drafts and config.method.max_draft_tokens >= config.max_new_tokens:
        notes.append(
            f"method.max_draft_tokens={config.method.max_draft_tokens} cannot take effect with "
            f"max_new_tokens={config.max_new_tokens}: a cycle never drafts past the token budget"
        )
    return notes


def run_config(cfg: Mapping[str, Any] | DictConfig | RunConfig) -> RunConfig:
    """The typed run config of a composed one; ConfigError (naming key, value, what is allowed) if bad."""
    if isinstance(cfg, RunConfig):
        return cfg
    from replicate.core.methods import method_config  # the decoding loops (torch) load with the registry

    data = dict(plain(cfg))
    data.pop("hydra", None)
    for key, convert in (("model", model_config), ("task", task_config), ("method", method_config)):
        if key in data:
            data[key] = convert(data[key], key)
    if "logger" in data:
        data["logger"] = logger_config(data["logger"])
    if "sampling" in data:
        data["sampling"] = build(SamplingConfig, data["sampling"], "sampling")
    return build(RunConfig, data)
