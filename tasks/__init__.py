"""Benchmarks of the replication: `load_task(cfg)` builds one from its `conf/task/<name>.yaml` config.

What the runner calls, beyond the `Task` interface of `tasks.base`:
- `task.score_samples(samples, predictions)`: all scores at once (HumanEval runs `execution.workers`
  programs in parallel); `HumanEvalTask.execute(...)` gives the `ExecutionResult`s with status, reason and
  detail (`result.as_record()` for samples.jsonl; `result.sandboxed` for metrics.json).
- `task.baseline_exclusions(samples, baseline_completions)`: the paper's short-baseline filter, off unless
  `min_baseline_chars_filter` is set; returns kept and excluded ids, which `replicate.run.exclusions` applies
  to every statistic and reports (`excluded_ids`).
- `task.paper_prediction(completion_after_first_token, sample)`: the prediction the authors' notebooks would
  score (`paper_postprocess`).
- `task.selection()`: source, file and checksum or dataset revision, sample, shot and dev ids.
- `describe_sandbox(task.sandbox)`: which execution protections are in force here, for the run record;
  raises `SandboxUnavailableError` naming what is missing (call it before decoding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.base import BaselineFilter, Sample, Task, data_dir, truncate_middle
from tasks.cnndm import CnnDailyMailTask
from tasks.config import TaskConfig, task_config
from tasks.humaneval import HumanEvalTask
from tasks.sandbox import ExecutionResult, SandboxSettings, SandboxUnavailableError, describe_sandbox
from tasks.summarization import DataUnavailableError
from tasks.xsum import XSumTask

TASKS: dict[str, type[Task]] = {"cnndm": CnnDailyMailTask, "xsum": XSumTask, "humaneval": HumanEvalTask}


def load_task(cfg: Mapping[str, Any] | TaskConfig) -> Task:
    """The task named by `cfg["name"]`, configured by `cfg` (checked first: `tasks.config.task_config`)."""
    config = task_config(cfg)
    return TASKS[config.name](config)


__all__ = [
    "TASKS",
    "BaselineFilter",
    "DataUnavailableError",
    "ExecutionResult",
    "Sample",
    "SandboxSettings",
    "SandboxUnavailableError",
    "Task",
    "data_dir",
    "describe_sandbox",
    "load_task",
    "truncate_middle",
]
