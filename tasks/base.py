"""The interface every benchmark implements, and helpers shared by all of them.

A task turns a dataset into `Sample`s (the exact prompt text, the reference, what scoring needs),
turns a raw completion into a prediction, and scores predictions. The runner knows nothing else
about a task: it tokenizes `Sample.prompt`, decodes, and hands the completion back.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicate.core.prompts import truncate_middle

__all__ = ["BaselineFilter", "Sample", "Score", "Task", "data_dir", "truncate_middle"]

# The offline evaluation files ship inside this package (package data), so a clone and an installed copy
# find them at the same place relative to this module.
SHIPPED_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Sample:
    """One evaluation item.

    id: stable identifier (dataset id; for repeated sampling `"<task_id>#<seed>"`).
    prompt: the exact text fed to the tokenizer.
    reference: the reference output (a summary), or None where scoring uses `meta` (HumanEval).
    seed: added to the run's seed to seed this sample's sampling (pass@k draws seeds 0..n-1).
    meta: whatever scoring needs (HumanEval: the problem record).
    """

    id: str
    prompt: str
    reference: str | None = None
    seed: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A benchmark built from its `conf/task/<name>.yaml` config (a mapping)."""

    name: str

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg

    @abstractmethod
    def samples(self, n: int | None = None) -> list[Sample]:
        """The first `n` evaluation samples (all when None), in the paper's order."""

    @abstractmethod
    def dev_prompts(self, n: int) -> list[str]:
        """`n` prompts from the training side, never an evaluation item (for the layer search)."""

    @abstractmethod
    def postprocess(self, completion: str, sample: Sample) -> str:
        """The prediction scored for a raw completion (text after the prompt)."""

    def paper_prediction(self, completion_after_first_token: str, sample: Sample) -> str:
        """The prediction the authors' notebooks would score (`task.paper_postprocess`). Their `infer_input_ids`
        decodes `generate_ids[0, input_ids.size(0):]`, and `input_ids.size(0)` is the batch size 1, so the
        completion they post-process lacks its first generated token: that is what is passed here."""
        raise NotImplementedError(
            f"task {self.name} has no paper-compatible scoring; set task.paper_postprocess=false"
        )

    @abstractmethod
    def score_sample(self, sample: Sample, prediction: str) -> dict[str, float]:
        """Per-sample metric values, e.g. {"rouge2": 0.12} or {"passed": 1.0}."""

    @abstractmethod
    def aggregate(self, samples: list[Sample], scores: list[dict[str, float]]) -> dict[str, Any]:
        """Task-level result: {"metric": name, "score": value, "ci_low": .., "ci_high": .., ...}."""

    def selection(self) -> dict[str, Any]:
        """What was selected and from where (source, revision, ids, shot), for the run record."""
        return {}

    def score_samples(self, samples: list[Sample], predictions: list[str]) -> list[Score]:
        """Score many predictions at once (the runner does, after decoding); tasks that can work in parallel
        (HumanEval: `execution.workers` programs at a time) override this and say why each scored so."""
        return [
            Score(self.score_sample(sample, prediction))
            for sample, prediction in zip(samples, predictions, strict=True)
        ]

    def prepare_scoring(self) -> dict[str, Any] | None:
        """Check, before anything is decoded, that scoring can run here; raise naming what is missing. Returns
        what the run record should say about it (HumanEval: the sandbox in force), or None."""
        return None

    def baseline_exclusions(self, samples: list[Sample], baseline_completions: list[str]) -> BaselineFilter:
        """The paper's notebook silently skips samples whose autoregressive completion is under 5 characters
        (or has "....." in its first 5). Here that filter is off unless `min_baseline_chars_filter` is set,
        and the runner reports what it excluded. `baseline_filter_leading_dots` adds the "....." rule."""
        min_chars = self.cfg["min_baseline_chars_filter"]
        leading_dots = self.cfg["baseline_filter_leading_dots"]
        kept, excluded = [], []
        for sample, completion in zip(samples, baseline_completions, strict=True):
            too_short = min_chars is not None and len(completion) < min_chars
            dotted = min_chars is not None and leading_dots and "....." in completion[:5]
            (excluded if too_short or dotted else kept).append(sample.id)
        return BaselineFilter(
            kept_ids=kept, excluded_ids=excluded, min_chars=min_chars, leading_dots=leading_dots
        )


@dataclass(frozen=True)
class Score:
    """One prediction's metric values (e.g. {"passed": 1.0}) and, where the task has one, why it scored so
    (HumanEval: the execution record: status, reason, exception, exit status, duration, sandboxed)."""

    values: dict[str, float]
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class BaselineFilter:
    """Which samples the baseline-length filter keeps and excludes (reported, never silent)."""

    kept_ids: list[str]
    excluded_ids: list[str]
    min_chars: int | None
    leading_dots: bool


def data_dir() -> Path:
    """Where offline evaluation data lives: `$REPLICATE_DATA_DIR` when set (an override, e.g. a larger or
    private copy with the same layout), else the files shipped in `tasks/data/` (see its README.md)."""
    env = os.environ.get("REPLICATE_DATA_DIR")
    return Path(env) if env else SHIPPED_DATA_DIR
