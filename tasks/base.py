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

    @abstractmethod
    def score_sample(self, sample: Sample, prediction: str) -> dict[str, float]:
        """Per-sample metric values, e.g. {"rouge2": 0.12} or {"passed": 1.0}."""

    @abstractmethod
    def aggregate(self, samples: list[Sample], scores: list[dict[str, float]]) -> dict[str, Any]:
        """Task-level result: {"metric": name, "score": value, "ci_low": .., "ci_high": .., ...}."""

    def selection(self) -> dict[str, Any]:
        """What was selected and from where (source, revision, ids, shot), for the run record."""
        return {}

    def score_samples(self, samples: list[Sample], predictions: list[str]) -> list[dict[str, float]]:
        """Score many predictions at once; tasks that can work in parallel (HumanEval) override this."""
        return [
            self.score_sample(sample, prediction)
            for sample, prediction in zip(samples, predictions, strict=True)
        ]

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


def truncate_middle(token_ids: list[int], max_length: int) -> list[int]:
    """Cut a too-long prompt as the paper's `clip_input` does: keep the first 2 and the last 3 tokens and drop
    the excess from the end of the part between them, i.e. keep the first `max_length - 3` and the last 3
    tokens (max_length 5 keeps the first 2 and last 3). For an article prompt that keeps the article's
    beginning and the closing "\nSummary:". Prompts of at most `max_length` tokens are returned unchanged.

    Departures, both at edges only: the paper cuts when prompt + max_new_tokens >= context, and at exact
    equality its `[:-0]` slice empties the middle (5 tokens survive); we keep such a prompt whole. Below
    max_length 5 (the paper would still return 5 tokens) we keep the last min(3, max_length) tokens and
    fill the rest from the start."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if len(token_ids) <= max_length:
        return list(token_ids)
    tail = min(3, max_length)
    head = max_length - tail
    return list(token_ids[:head]) + list(token_ids[len(token_ids) - tail :])
