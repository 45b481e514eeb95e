"""The layer search's typed config (`conf/search_config.yaml` and the `search` group, conf/search/).

`search_run_config(cfg)` checks a composed search config before any model loads: the `search` node (this
module's `SearchConfig`, every key of conf/search/default.yaml) and the model, method and sampling nodes (the
run's own typed configs). A wrong type, NaN, an out-of-range value, an unknown key (a typo) or a setting the
chosen strategy cannot use ends the CLI with one line naming the key, the value and what is allowed.
The search code reads the composed mapping; this is its gate and its documentation of every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicate.config import COST_PROFILE_MINIMUMS
from replicate.core.methods import method_config
from replicate.core.model_config import model_config
from replicate.core.sampling import SamplingConfig
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
from replicate.search.objective import OBJECTIVES
from replicate.search.sub_block_costs import COST_SOURCES
from replicate.search.teacher_forced import ACCEPTANCE_ESTIMATES

STRATEGIES = ("bayesian", "cosine_similarity", "knapsack", "dynamic_programming")
SUB_BLOCK_KINDS = ("attention", "mlp")


@dataclass(frozen=True)
class TeacherForcedConfig(MappingAccess):
    """`context`: keys of earlier positions, the full model's (`full`) or the draft's own (`draft`)."""

    context: str

    def __post_init__(self):
        one_of("context", self.context, ("full", "draft"))


@dataclass(frozen=True)
class AcquisitionConfig(MappingAccess):
    """UCB acquisition of the Bayesian optimizer (bayesian-optimization's settings)."""

    kappa: float
    random_samples: int
    lbfgs_starts: int

    def __post_init__(self):
        at_least_each(self, kappa=0.0, random_samples=1, lbfgs_starts=0)


@dataclass(frozen=True)
class SearchCostProfileConfig(MappingAccess):
    """The cost profile of `objective: predicted_speedup` (and the knapsack's savings)."""

    source: str
    context_length: int | None
    repeats: int
    warmup: int
    file: str | None

    def __post_init__(self):
        one_of("source", self.source, COST_SOURCES)
        at_least_each(self, **COST_PROFILE_MINIMUMS)  # context_length None: the search's mean


@dataclass(frozen=True)
class CosineSimilarityConfig(MappingAccess):
    kinds: list[str]

    def __post_init__(self):
        if not self.kinds:
            raise FieldError("kinds", self.kinds, f"must name at least one of {', '.join(SUB_BLOCK_KINDS)}")
        for kind in self.kinds:
            one_of("kinds", kind, SUB_BLOCK_KINDS)


@dataclass(frozen=True)
class KnapsackConfig(MappingAccess):
    acceptance_floors: list[float]
    weight_resolution: int

    def __post_init__(self):
        if not self.acceptance_floors:
            raise FieldError("acceptance_floors", self.acceptance_floors, "must hold at least one floor")
        for floor in self.acceptance_floors:
            if not 0.0 < floor <= 1.0:
                raise FieldError("acceptance_floors", floor, "each floor must be in (0, 1]")
        at_least("weight_resolution", self.weight_resolution, 1)


@dataclass(frozen=True)
class SearchConfig(MappingAccess):
    """One search (conf/search/default.yaml documents each key and the paper's value)."""

    name: str
    strategy: str
    acceptance_estimate: str
    teacher_forced: TeacherForcedConfig
    objective: str
    iterations: int
    init_points: int
    random_state: int
    gp_alpha: float
    acquisition: AcquisitionConfig
    dev_tasks: list[str]
    prompts_per_task: int
    max_new_tokens: int
    include_prefill_time: bool
    skip_threshold: float
    max_skipped: int | None
    min_skipped: int
    candidates: dict[str, list[int]] | None
    warm_start: Any
    reuse_duplicate_plans: bool
    cost_profile: SearchCostProfileConfig
    warmup_decodes: int
    time_budget_minutes: float | None
    progress_bar: bool
    resume: bool
    cosine_similarity: CosineSimilarityConfig
    knapsack: KnapsackConfig
    dynamic_programming: dict[str, Any]

    def __post_init__(self):
        one_of("strategy", self.strategy, STRATEGIES)
        one_of("acceptance_estimate", self.acceptance_estimate, ACCEPTANCE_ESTIMATES)
        one_of("objective", self.objective, OBJECTIVES)
        if self.acceptance_estimate == "teacher_forced" and self.objective != "predicted_speedup":
            raise FieldError(
                "objective",
                self.objective,
                "acceptance_estimate=teacher_forced decodes nothing, so it can only price its acceptance: "
                "use objective=predicted_speedup",
            )
        for field in ("iterations", "init_points", "random_state", "min_skipped", "warmup_decodes"):
            at_least(field, getattr(self, field), 0)
        for field in ("prompts_per_task", "max_new_tokens", "max_skipped"):
            at_least(field, getattr(self, field), 1)
        at_least("gp_alpha", self.gp_alpha, 0.0)
        if not 0.0 <= self.skip_threshold < 1.0:
            raise FieldError("skip_threshold", self.skip_threshold, "must be in [0, 1)")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise FieldError("time_budget_minutes", self.time_budget_minutes, "must be > 0, or null for none")
        if self.max_skipped is not None and self.max_skipped < self.min_skipped:
            raise FieldError("max_skipped", self.max_skipped, f"must be >= min_skipped={self.min_skipped}")
        if not self.dev_tasks:
            raise FieldError("dev_tasks", self.dev_tasks, "must name at least one task")
        for kind in self.candidates or {}:
            one_of("candidates", kind, SUB_BLOCK_KINDS)
        if self.dynamic_programming:
            raise FieldError("dynamic_programming", self.dynamic_programming, "takes no settings: use {}")


@dataclass(frozen=True)
class SearchRunConfig:
    """The typed nodes of a composed search config."""

    search: SearchConfig
    model: Any
    method: Any
    sampling: SamplingConfig


def search_run_config(cfg: Any) -> SearchRunConfig:
    """Check a composed search config (`conf/search_config.yaml`); ConfigError naming key, value and what is
    allowed. Layer indices (candidates, warm_start) are checked against the model's depth once it is known."""
    data = plain(cfg)
    missing = [key for key in ("search", "model", "method", "sampling") if key not in data]
    if missing:
        raise ConfigError(
            f"the search config has no {', '.join(missing)} node; compose conf/search_config.yaml"
        )
    return SearchRunConfig(
        search=build(SearchConfig, data["search"], "search"),
        model=model_config(data["model"], "model"),
        method=method_config(data["method"], "method"),
        sampling=build(SamplingConfig, data["sampling"], "sampling"),
    )
