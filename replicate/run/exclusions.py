"""The paper's baseline filter, wired as evaluate_sum.ipynb applies it, but never silently.

The notebook skips a sample when its autoregressive completion is under 5 characters (or has "....." in its
first 5): every statistic of the run, times included, is then over the other samples. Here the filter is off
unless `task.min_baseline_chars_filter` is set (`Task.baseline_exclusions` holds the rule); when it is on, the
run's metrics are computed over the kept samples and metrics.json lists the excluded ones (`excluded_ids`).
samples.jsonl keeps every decoded sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replicate.core.models import LoadedModel
from replicate.records import SampleRecord
from replicate.schema import ConfigError
from tasks import Sample, Task

if TYPE_CHECKING:
    from replicate.config import RunConfig


def baseline_filter(
    config: RunConfig, task: Task, samples: list[Sample], records: list[SampleRecord], loaded: LoadedModel
) -> tuple[list[SampleRecord], list[str] | None]:
    """The records the task's baseline filter keeps, and the ids it excludes (None when the filter is off).
    As in evaluate_sum.ipynb, the filter reads the autoregressive decode's completion as the authors' code
    decodes it, without its first generated token (`Task.baseline_exclusions`)."""
    if config.task.min_baseline_chars_filter is None:
        return records, None
    baselines = [record.method if not config.method.drafts else record.baseline for record in records]
    if any(decode is None for decode in baselines):
        raise ConfigError(
            "the baseline filter needs every sample's autoregressive decode; run with run_baseline=true"
        )
    by_id = {sample.id: sample for sample in samples}
    completions = [loaded.decode(decode.tokens[1:]) for decode in baselines]
    verdict = task.baseline_exclusions([by_id[record.id] for record in records], completions)
    kept = [record for record in records if record.id in set(verdict.kept_ids)]
    if not kept:
        raise ConfigError(
            f"task.min_baseline_chars_filter={config.task.min_baseline_chars_filter} excluded all {len(records)} "
            "samples; nothing is left to measure (lower it, or set it to null)"
        )
    return kept, list(verdict.excluded_ids)
