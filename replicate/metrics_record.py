"""The record of a run's statistics, one type, built in one place (`replicate.run.metrics.run_metrics`) and
read everywhere; the per-decode and per-sample records are `replicate.records`, whose schema version and
readers this shares.

- `CostModelStats`: what the cost model says about a set of decodes (`replicate.cost_model`).
- `RunMetrics`: `metrics.json` of a run, and the `cost_model` section of a bench result (same shape).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replicate.records import SCHEMA_VERSION, check_version, from_mapping


@dataclass
class CostModelStats:
    """The cost model on a set of decodes (definitions: `replicate.cost_model`). The baseline fields are
    None when the decodes have no autoregressive baseline. `*_ci`: 95% percentile bootstrap intervals over
    samples (None with fewer than 2); `profiles_per_sample`: each decode was priced with a profile measured
    next to it rather than with one profile for all."""

    predicted_speedup: float
    efficiency: float
    overhead_fraction: float
    predicted_time_s: float
    measured_time_s: float
    baseline_efficiency: float | None
    baseline_overhead_fraction: float | None
    speedup_efficiency: float | None
    cost_profile: dict[str, Any] | None
    efficiency_ci: list[float] | None = None
    speedup_efficiency_ci: list[float] | None = None
    profiles_per_sample: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> CostModelStats:
        return from_mapping(cls, data, where)


@dataclass
class RunMetrics:
    """`metrics.json`. Decoding statistics are None where they do not apply (acceptance of autoregressive
    decoding; speedup and identity without a baseline); task scores are None where nothing was scored.
    scoring: what scored the samples (HumanEval: the sandbox in force, `sandboxed`; a re-score's date).
    excluded_ids: samples the baseline filter (`task.min_baseline_chars_filter`) excluded; every statistic is
    over the others (None: filter off). divergences: greedy runs' identical / near_tie / unexplained counts
    and the near-tie rule (None for sampled runs and runs without a baseline). post_eos_tokens: total over the
    method's decodes. paper_compatible: the task scores under the authors' scoring (`task.paper_postprocess`),
    beside the faithful `score` (None when off). cost_model_not_applicable: why a run that asked for the cost
    model has none (a method whose draft cost no single profile prices, e.g. a skip set chosen per cycle).
    draft_sources: cycles per draft source over the method's decodes (`DecodeResult.draft_sources`; None for
    methods that record none)."""

    model: str
    task: str | None
    method: str
    sampling: dict[str, Any]
    max_new_tokens: int
    identity_expected: bool
    n_samples: int
    new_tokens: int
    mean_new_tokens: float
    tokens_per_s: float
    mean_accepted_length: float
    acceptance_rate: float | None
    acceptance_rate_ci: list[float] | None
    acceptance_rate_pooled: float | None
    samples_without_drafts: int | None
    speedup: float | None
    speedup_ci: list[float] | None
    speedup_total_time: float | None
    speedup_total_time_ci: list[float] | None
    identical_fraction: float | None
    baseline_tokens_per_s: float | None
    prompts_truncated: int
    skip: dict[str, Any]
    decoder_state: dict[str, Any]
    environment: dict[str, Any]
    metric: str | None = None
    score: float | None = None
    task_scores: dict[str, Any] | None = None
    baseline_score: float | None = None
    baseline_task_scores: dict[str, Any] | None = None
    model_identity: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    fingerprint: dict[str, Any] | None = None
    scoring: dict[str, Any] | None = None
    cost_model: CostModelStats | None = None
    excluded_ids: list[str] | None = None
    divergences: dict[str, Any] | None = None
    post_eos_tokens: int | None = None
    paper_compatible: dict[str, Any] | None = None
    cost_model_not_applicable: str | None = None
    draft_sources: dict[str, int] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def final_threshold(self) -> float | None:
        return self.decoder_state.get("threshold")

    @property
    def n_excluded(self) -> int | None:
        """Samples the baseline filter excluded (None: filter off)."""
        return None if self.excluded_ids is None else len(self.excluded_ids)

    def get(self, key: str) -> Any:
        """A statistic by name; `cost_model.<name>` reads the cost model section, `divergences.<name>` and
        `paper_compatible.<name>` those mappings (None when the section is absent)."""
        section, _, name = key.rpartition(".")
        owner = getattr(self, section) if section else self
        if isinstance(owner, Mapping):
            return owner.get(name)
        return None if owner is None else getattr(owner, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> RunMetrics:
        check_version(data, where)
        return from_mapping(cls, data, where, {"cost_model": CostModelStats.from_dict})
