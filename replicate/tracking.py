"""Experiment tracking: Weights & Biases, off by default (`logger=none`), on with `logger=wandb`
(conf/logger/wandb.yaml: project, entity, mode, group, tags).

`run_and_track` (what `python -m replicate` runs) calls `log_run` after the runner has written `samples.jsonl` and
`metrics.json`, so the local
results never depend on the tracker: any W&B failure (no network, bad credentials, a wandb bug) is caught,
printed loudly and recorded in `<run_dir>/tracking.json`, and the run still succeeds. With
`WANDB_MODE=offline` (what `make` exports) nothing touches the network: W&B writes its run under
`<run_dir>/wandb/offline-run-*` (upload later with `wandb sync <that dir>`).

What a W&B run holds:
- the resolved config;
- summary keys: every scalar of metrics.json (nested sections flattened with "/", intervals as `_low` /
  `_high`), and the headline statistics under stable top-level names (`headline_summary`: speedup,
  acceptance_rate, identical_fraction, the task score under its metric's name, predicted_speedup, ...) with
  the paper's numbers as `paper/<quantity>` when the run is a row of a paper table;
- the per-sample table (`samples`) and native W&B charts built from tables: the speedup of every sample
  (`wandb.plot.bar`, key `sample_speedup`) and the adaptive threshold over verification cycles
  (`wandb.plot.line`, key `threshold_trace`, table `threshold_trace_table`, which the W&B Report of
  `python -m replicate.report <dir> --wandb-report` draws for every run of a table);
- one artifact (type `run-results`) holding samples.jsonl, metrics.json and config.yaml, with the headline
  statistics as its metadata.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replicate.columns import COLUMNS
from replicate.metrics_record import RunMetrics
from replicate.records import SampleRecord
from replicate.run.rundir import CONFIG_FILE, METRICS_FILE, SAMPLES_FILE, write_atomic

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from replicate.config import RunConfig

TRACKING_FILE = "tracking.json"
SAMPLE_COLUMNS = (
    "index", "id", "new_tokens", "time_s", "baseline_time_s", "speedup", "drafted", "accepted", "acceptance",
    "cycles", "full_forwards", "identical", "first_difference", "baseline_margin", "threshold_after",
)  # fmt: skip


def summary_values(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalars of metrics.json, nested sections flattened with "/", intervals split into _low/_high."""
    values: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            values.update(summary_values(value, f"{name}/"))
        elif isinstance(value, (list, tuple)) and len(value) == 2 and key.endswith("_ci"):
            values[f"{name}_low"], values[f"{name}_high"] = value
        elif isinstance(value, (bool, int, float, str)) or value is None:
            values[name] = value
    return values


def sample_rows(records: Sequence[SampleRecord], max_text_chars: int) -> tuple[list[str], list[list]]:
    """One row per sample: timing, drafting, identity with the baseline, scores and the prediction."""
    score_names = sorted({name for record in records for name in (record.method.scores or {})})
    columns = [*SAMPLE_COLUMNS, *(f"score/{name}" for name in score_names), "prediction"]
    rows = []
    for record in records:
        run, baseline = record.method, record.baseline
        drafted, accepted = sum(run.drafted), sum(run.accepted)
        speedup = None
        if baseline and run.new_tokens and baseline.new_tokens and run.total_time:
            speedup = baseline.time_per_token / run.time_per_token
        row = [
            record.index, str(record.id), run.new_tokens, run.total_time,
            baseline.total_time if baseline else None, speedup, drafted, accepted,
            accepted / drafted if drafted else None, len(run.drafted), run.full_forwards,
            record.identical, record.first_difference, record.baseline_margin, record.threshold_after,
        ]  # fmt: skip
        row += [(run.scores or {}).get(name) for name in score_names]
        rows.append([*row, str(run.prediction or "")[:max_text_chars]])
    return columns, rows


def headline_summary(config: Mapping[str, Any], metrics: RunMetrics) -> dict[str, Any]:
    """The headline statistics (`columns.COLUMNS`) under stable top-level keys (`cost_model.x` as `x`, other
    sections as `section/x`),
    intervals as `<interval>_low` / `_high`, the task score also under its metric's name (e.g. `pass@1`,
    `baseline/pass@1`), and the paper's numbers as `paper/<quantity>` for a run in a paper table. A
    statistic the run does not have is None, never 0."""
    from replicate.report.tables import paper_values_for_run

    values: dict[str, Any] = {}
    for column in COLUMNS:
        # The cost model's statistics are headline keys of their own; other sections stay apart
        # (`paper_compatible/score` must not overwrite the faithful `score`).
        section, _, name = column.key.rpartition(".")
        values[name if section == "cost_model" else column.key.replace(".", "/")] = metrics.get(column.key)
        if column.interval:
            interval = metrics.get(column.interval) or (None, None)
            values[f"{column.interval}_low"], values[f"{column.interval}_high"] = interval
    if metrics.metric:
        values[metrics.metric] = metrics.score
        values[f"baseline/{metrics.metric}"] = metrics.baseline_score
    for quantity, value in (paper_values_for_run(config) or {}).items():
        values[f"paper/{quantity}"] = value
    return values


def threshold_rows(records: Sequence[SampleRecord]) -> list[list]:
    """[cycle, sample index, threshold] of every verification cycle, samples in order (the threshold carries
    over from one sample to the next)."""
    rows: list[list] = []
    for record in sorted(records, key=lambda record: record.index):
        rows += [[len(rows) + i, record.index, gamma] for i, gamma in enumerate(record.method.thresholds)]
    return rows


def _charts(wandb: Any, records: Sequence[SampleRecord], sample_table: tuple[list[str], list[list]]) -> dict:
    """Native W&B charts: per-sample speedup bars and the adaptive threshold trace (when it moves)."""
    charts: dict[str, Any] = {}
    columns, rows = sample_table
    speedups = [[row[columns.index("id")], row[columns.index("speedup")]] for row in rows]
    speedups = [row for row in speedups if row[1] is not None]
    if speedups:
        table = wandb.Table(columns=["sample", "speedup"], data=speedups)
        title = "speedup per sample (baseline / method time per token)"
        charts["sample_speedup"] = wandb.plot.bar(table, "sample", "speedup", title=title)
    trace = threshold_rows(records)
    if len({row[2] for row in trace}) > 1:
        table = wandb.Table(columns=["cycle", "sample", "threshold"], data=trace)
        title = "draft-exit threshold over verification cycles"
        charts["threshold_trace"] = wandb.plot.line(table, "cycle", "threshold", title=title)
    return charts


def _artifact(wandb: Any, run_dir: Path, metrics: RunMetrics, headline: Mapping[str, Any]) -> Any:
    """samples.jsonl, metrics.json and config.yaml of the run as one artifact."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{metrics.model}-{metrics.task}-{metrics.method}")
    artifact = wandb.Artifact(name, type="run-results", metadata=dict(headline))
    for file_name in (SAMPLES_FILE, METRICS_FILE, CONFIG_FILE):
        artifact.add_file(str(run_dir / file_name), name=file_name)
    return artifact


def _log_to_wandb(
    config_record: RunConfig, run_dir: Path, metrics: RunMetrics, records: Sequence[SampleRecord]
) -> dict:
    import wandb

    settings = config_record.logger
    config = config_record.to_dict()
    run = wandb.init(
        project=settings.project,
        entity=settings.entity,
        mode=settings.mode,
        group=settings.group,
        name=settings.run_name,
        tags=list(settings.tags or []),
        job_type=settings.job_type,
        notes=settings.notes,
        dir=str(settings.dir or run_dir),
        config=config,
        reinit="create_new",  # one process may run several jobs (Hydra multirun)
    )
    try:
        headline = headline_summary(config, metrics)
        log: dict[str, Any] = {}
        sample_table = sample_rows(records, settings.max_text_chars)
        if settings.log_samples and records:
            log["samples"] = wandb.Table(columns=sample_table[0], data=sample_table[1])
        log.update(_charts(wandb, records, sample_table))
        if log:
            run.log(log)
        run.summary.update({**summary_values(metrics.to_dict()), **headline})
        run.log_artifact(_artifact(wandb, run_dir, metrics, headline))
        return {"status": "ok", "id": run.id, "url": run.url, "mode": settings.mode, "dir": run.dir}
    finally:
        run.finish()


def log_run(config: RunConfig, run_dir: Path, metrics: RunMetrics, records: Sequence[SampleRecord]) -> None:
    """Send a finished run to the configured tracker; never raises (the run's local files are the record)."""
    tracker = config.logger.name
    if tracker == "none":
        return
    run_dir = Path(run_dir)
    try:
        if tracker != "wandb":
            raise ValueError(f"logger.name={tracker!r} is not a known tracker (none, wandb)")
        outcome = {"tracker": tracker, **_log_to_wandb(config, run_dir, metrics, records)}
    except Exception as error:  # a tracker failure must never lose or fail the run
        message = f"{type(error).__name__}: {error}"
        outcome = {
            "tracker": tracker,
            "status": "failed",
            "error": message,
            "traceback": traceback.format_exc(),
        }
        warnings.warn(
            f"experiment tracking failed ({message}); the run's results are safe in {run_dir}", stacklevel=2
        )
        logger.warning("%s logging failed: %s\n  results are in %s", tracker, message, run_dir)
    write_atomic(run_dir / TRACKING_FILE, json.dumps(outcome, indent=2, default=str) + "\n")


def run_and_track(cfg: Any, run_dir: Path) -> RunMetrics:
    """`replicate.run.runner.run`, then the configured tracker for a run finished by this call (a run
    directory that was already finished is not logged again)."""
    from replicate.config import run_config
    from replicate.run.rundir import read_metrics, read_samples
    from replicate.run.runner import run

    config = run_config(cfg)
    was_finished = not config.force and read_metrics(run_dir) is not None if Path(run_dir).exists() else False
    metrics = run(config, run_dir)
    if not was_finished:
        log_run(config, Path(run_dir), metrics, read_samples(run_dir))
    return metrics
