"""Experiment tracking: Weights & Biases, off by default (`logger=none`), on with `logger=wandb`
(conf/logger/wandb.yaml: project, entity, mode, group, tags).

`run_and_track` (what `python -m replicate` runs) calls `log_run` after the runner has written `samples.jsonl` and
`metrics.json`, so the local
results never depend on the tracker: any W&B failure (no network, bad credentials, a wandb bug) is caught,
printed loudly and recorded in `<run_dir>/tracking.json`, and the run still succeeds. With
`WANDB_MODE=offline` (what `make` exports) nothing touches the network: W&B writes its run under
`<run_dir>/wandb/offline-run-*` (upload later with `wandb sync <that dir>`).

What a W&B run holds: the resolved config, the summary metrics (scalars of metrics.json, intervals as
`_low`/`_high`), a per-sample table, the speedup table (measured beside the paper's numbers when the run
belongs to a paper table) and the figures (threshold over cycles, per-sample speedup).
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replicate.records import COLUMNS, RunMetrics, SampleRecord
from replicate.run.rundir import write_atomic

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


def speedup_row(config: Mapping[str, Any], metrics: RunMetrics) -> tuple[list[str], list]:
    """The run's line of the speedup table, with the paper's numbers when the run is a row of a paper table."""
    from replicate.report.tables import paper_values_for_run

    paper = paper_values_for_run(config) or {}
    columns = ["model", "task", "method", "temperature"]
    row = [metrics.model, metrics.task, metrics.method, metrics.sampling.get("temperature")]
    for column in COLUMNS:
        columns.append(column.key)
        row.append(metrics.get(column.key))
        if column.interval:
            interval = metrics.get(column.interval) or (None, None)
            columns += [f"{column.interval}_low", f"{column.interval}_high"]
            row += list(interval)
    columns += ["paper_speedup", "paper_acceptance"]
    row += [paper.get("speedup"), paper.get("acceptance")]
    return columns, row


def _figures(run_dir: Path, records: Sequence[SampleRecord], directory: Path) -> dict[str, Path]:
    from replicate.report import figures as report_figures
    from replicate.report.tables import RunResult

    found: dict[str, Path] = {}
    trace = report_figures.threshold_trace(RunResult(run_dir, {}, None, list(records)))
    if trace and len(set(trace)) > 1:
        found["threshold_trace"] = report_figures.threshold_figure(
            "draft-exit threshold over cycles", [(run_dir.name, trace)], directory / "threshold.png"
        )
    speedups = report_figures.sample_speedup_figure(records, directory / "sample_speedup.png")
    if speedups is not None:
        found["sample_speedup"] = speedups
    return found


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
        run.summary.update(summary_values(metrics.to_dict()))
        log: dict[str, Any] = {}
        if settings.log_samples and records:
            columns, rows = sample_rows(records, settings.max_text_chars)
            log["samples"] = wandb.Table(columns=columns, data=rows)
        columns, row = speedup_row(config, metrics)
        log["speedup"] = wandb.Table(columns=columns, data=[row])
        with tempfile.TemporaryDirectory() as scratch:
            for name, path in _figures(run_dir, records, Path(scratch)).items():
                log[name] = wandb.Image(str(path))
            run.log(log)
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
        print(
            f"WARNING: {tracker} logging failed: {message}\n  results are in {run_dir}",
            file=sys.stderr,
            flush=True,
        )
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
