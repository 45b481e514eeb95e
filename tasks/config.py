"""The typed task configs (`conf/task/*.yaml`), checked before any data or model loads.

The tasks read their config by key (`cfg["hub"]["path"]`), which these dataclasses allow (`MappingAccess`).
The sandbox settings under HumanEval's `execution` are checked by `tasks.sandbox.SandboxSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from replicate.schema import FieldError, MappingAccess, at_least, at_least_each, build_registered, one_of
from replicate.statistics import BootstrapConfig

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass(frozen=True)
class HubSourceConfig(MappingAccess):
    path: str
    config: str | None
    revision: str
    test_split: str
    train_split: str
    id_field: str
    document_field: str
    summary_field: str


@dataclass(frozen=True)
class DevSelectionConfig(MappingAccess):
    shuffle_seed: int
    shot_offset: int

    def __post_init__(self):
        at_least("shot_offset", self.shot_offset, 1)


@dataclass(frozen=True)
class OfflineSourceConfig(MappingAccess):
    file: str
    id_field: str
    document_field: str
    summary_field: str
    sort_field: str | None
    held_out_items: int
    sha256: str | None

    def __post_init__(self):
        at_least("held_out_items", self.held_out_items, 0)


@dataclass(frozen=True)
class RankedRowsConfig(MappingAccess):
    """A file of rows known to sit at `rank_field` in the paper's selection (tasks/selection.py)."""

    file: str
    rank_field: str
    id_field: str
    summary_field: str


@dataclass(frozen=True)
class SelectionCheckConfig(MappingAccess):
    """Hub runs: check the selection against known positions and/or a committed hash of its ids."""

    ranked: RankedRowsConfig | None
    ids_sha256: str | None

    def __post_init__(self):
        if self.ids_sha256 is not None and (
            len(self.ids_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.ids_sha256)
        ):
            raise FieldError("ids_sha256", self.ids_sha256, "must be 64 lower-case hex digits, or null")


@dataclass(frozen=True)
class RougeConfig(MappingAccess):
    types: tuple[str, ...]
    use_stemmer: bool

    def __post_init__(self):
        for name in self.types:
            one_of("types", name, ROUGE_TYPES)


@dataclass(frozen=True)
class TaskConfig(MappingAccess):
    """What every task config holds."""

    name: str
    n_samples: int
    max_new_tokens: int
    shots: int
    stop_sequence: str
    metric: str
    bootstrap: BootstrapConfig
    min_baseline_chars_filter: int | None
    baseline_filter_leading_dots: bool
    paper_postprocess: bool

    def __post_init__(self):
        at_least_each(self, n_samples=1, max_new_tokens=1, shots=0, min_baseline_chars_filter=1)


@dataclass(frozen=True)
class SummarizationConfig(TaskConfig):
    """CNN/DM and XSum, 1-shot (tasks/summarization.py)."""

    name: Literal["cnndm", "xsum"]
    source: Literal["auto", "hub", "offline"]
    selection_size: int
    shuffle_seed: int
    hub: HubSourceConfig
    dev: DevSelectionConfig
    offline: OfflineSourceConfig
    selection_check: SelectionCheckConfig
    rouge: RougeConfig

    def __post_init__(self):
        super().__post_init__()
        at_least("selection_size", self.selection_size, 1)
        if self.metric not in self.rouge.types:
            raise FieldError("metric", self.metric, f"must be one of rouge.types {list(self.rouge.types)}")


@dataclass(frozen=True)
class HumanEvalConfig(TaskConfig):
    """HumanEval, 0-shot, scored by execution (tasks/humaneval.py)."""

    name: Literal["humaneval"]
    samples_per_problem: int
    k: tuple[int, ...]
    indent_to_tabs: bool
    execution: dict[str, Any]
    dev_prompts: tuple[str, ...]

    def __post_init__(self):
        super().__post_init__()
        at_least("samples_per_problem", self.samples_per_problem, 1)
        for k in self.k:
            at_least("k", k, 1)
        ks = [k for k in self.k if k <= self.samples_per_problem]
        if not self.metric.startswith("pass@") or self.metric.removeprefix("pass@") not in map(str, ks):
            raise FieldError(
                "metric",
                self.metric,
                f"must be pass@k with k in the k list {list(self.k)} and k <= samples_per_problem "
                f"({self.samples_per_problem})",
            )


TASK_CONFIGS: dict[str, type[TaskConfig]] = {
    "cnndm": SummarizationConfig,
    "xsum": SummarizationConfig,
    "humaneval": HumanEvalConfig,
}


def task_config(cfg: Mapping[str, Any] | TaskConfig, path: str = "task") -> TaskConfig:
    """The typed config of a task; ConfigError naming the key for an unknown task or a bad value."""
    if isinstance(cfg, TaskConfig):
        return cfg
    return build_registered(TASK_CONFIGS, "name", cfg, path, "task", " (conf/task/)")
