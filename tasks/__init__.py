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

Importing the package is cheap (the typed configs of `tasks.config` need no torch): the names below load
their modules on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tasks.config import TaskConfig, task_config

if TYPE_CHECKING:
    from tasks.base import Task

# The registry: a task's name (conf/task/<name>.yaml `name`) -> the module and class that implement it.
_TASK_CLASSES = {
    "cnndm": ("tasks.cnndm", "CnnDailyMailTask"),
    "xsum": ("tasks.xsum", "XSumTask"),
    "humaneval": ("tasks.humaneval", "HumanEvalTask"),
}
# The public names this package re-exports, and the module each lives in (imported on first use).
_EXPORTS = {
    "BaselineFilter": "tasks.base",
    "Sample": "tasks.base",
    "Task": "tasks.base",
    "data_dir": "tasks.base",
    "truncate_middle": "tasks.base",
    "ExecutionResult": "tasks.sandbox",
    "SandboxSettings": "tasks.sandbox",
    "SandboxUnavailableError": "tasks.sandbox",
    "describe_sandbox": "tasks.sandbox",
    "DataUnavailableError": "tasks.articles",
}


def load_task(cfg: Mapping[str, Any] | TaskConfig) -> Task:
    """The task named by `cfg["name"]`, configured by `cfg` (checked first: `tasks.config.task_config`)."""
    config = task_config(cfg)
    module, name = _TASK_CLASSES[config.name]
    return getattr(importlib.import_module(module), name)(config)


def __getattr__(name: str) -> Any:
    if name == "TASKS":  # name -> Task class, every task module imported
        value: Any = {task: getattr(importlib.import_module(m), c) for task, (m, c) in _TASK_CLASSES.items()}
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "TASKS",
    "BaselineFilter",
    "DataUnavailableError",
    "ExecutionResult",
    "Sample",
    "SandboxSettings",
    "SandboxUnavailableError",
    "Task",
    "TaskConfig",
    "data_dir",
    "describe_sandbox",
    "load_task",
    "task_config",
    "truncate_middle",
]
