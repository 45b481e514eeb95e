"""`python -m replicate.report <dir> [--out DIR] [--spec-bench] [--wandb-report --entity E]`: the reproduced paper
tables from the run directories under <dir> (searched recursively), with the paper's numbers beside the
measured ones. `--spec-bench` also writes Spec-Bench-format answer files and prints both speedup definitions
(`replicate.report.spec_bench`); `--wandb-report` builds a W&B Report (`replicate.report.wandb_report`).

It reads each run directory's files as they are (`config.yaml`, `metrics.json`, `samples.jsonl`) and runs
nothing. It writes `report.md` (the paper's table layout, detailed statistics, the environments, models and
data of the runs, figures), `report.csv` (one line per table row) and PNG figures under `figures/`. A paper row
without a run is "missing" and one whose run has not finished is "incomplete": neither ever shows a number.
Statistics are defined in `replicate/run/metrics.py`; `predicted_speedup` and `efficiency` (the cost model) are
shown when metrics.json has them, "-" otherwise.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from replicate.arguments import report_parser
from replicate.cli import user_errors
from replicate.columns import DETAIL_COLUMNS, columns
from replicate.core.methods import method_config
from replicate.errors import DataError
from replicate.metrics_record import RunMetrics
from replicate.records import RecordError
from replicate.report import comparison, figures
from replicate.report.authorship import check_authorship, record_authorship
from replicate.report.markdown import (
    column_cells,
    column_headers,
    details_table,
    fmt,
    key_text,
    layout_table,
    markdown_table,
    provenance_section,
    relative,
    statistic,
)
from replicate.report.tables import (
    COMPARED,
    TABLES,
    RunResult,
    TableRow,
    TableSpec,
    is_run_dir,
    measured,
    table_rows,
)
from replicate.run.rundir import CONFIG_FILE, read_metrics, read_samples
from replicate.schema import ConfigError

SKIPPED_DIRECTORIES = {".hydra", ".submitit", "wandb", "figures", "__pycache__"}
CSV_KEYS = ("model", "task", "temperature", "metric", "K", "gamma")
OTHER_RUNS = columns(
    "n_samples", "metric", "score", "baseline_score", "speedup", "speedup_total_time", "acceptance_rate",
    "mean_accepted_length", "identical_fraction", "cost_model.predicted_speedup", "cost_model.efficiency",
)  # fmt: skip


def load_run(path: Path) -> RunResult:
    """The run directory's files as they are; a damaged file marks the run `damaged`, naming the file."""
    try:
        metrics, records = read_metrics(path), read_samples(path)
    except RecordError as error:
        return RunResult(path=path, config=_config(path, None), metrics=None, records=[], damaged=str(error))
    return RunResult(path=path, config=_config(path, metrics), metrics=metrics, records=records)


def _config(path: Path, metrics: RunMetrics | None) -> dict[str, Any]:
    config_path = path / CONFIG_FILE
    if config_path.is_file():
        return yaml.safe_load(config_path.read_text()) or {}
    # A run directory without its config: what metrics.json says about it.
    names = {"model": metrics.model, "task": metrics.task, "method": metrics.method} if metrics else {}
    return {key: {"name": names.get(key)} for key in ("model", "task", "method")}


def find_runs(root: Path) -> list[RunResult]:
    """Every run directory under `root` (itself included), in path order."""
    runs = []
    for directory, subdirectories, _ in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        if is_run_dir(Path(directory)):
            runs.append(load_run(Path(directory)))
            subdirectories[:] = []  # a run directory holds no other runs
    return runs


def threshold_traces(rows: Sequence[tuple[str, RunResult]]) -> list[tuple[str, list[float]]]:
    traces = []
    for label, run in rows:
        if method_config(run.config.get("method") or {}).adapts_threshold:
            trace = figures.threshold_trace(run)
            if trace:
                traces.append((label, trace))
    return traces


def experiment_section(
    spec: TableSpec, runs: list[RunResult], root: Path, out: Path
) -> tuple[list[str], list[TableRow]]:
    rows = table_rows(spec, runs)
    lines = [f"## {spec.title}", "", "Cells: measured / paper / difference (measured - paper).", ""]
    if "ssd_paper_scoring" in spec.compared:
        lines[-1:] = [
            "`(paper's scoring)`: the same decodes scored as the authors' notebooks score them (first generated "
            "token dropped; docs/replication.md), which is how the paper's numbers were scored.",
            "",
        ]
    lines += layout_table(spec, rows) + ["", "Statistics of each run:", ""]
    lines += details_table(spec, rows, root) + [""]
    speedup_path = figures.speedup_figure(
        spec.title, rows, spec.key_fields, out / "figures" / f"{spec.name}_speedup.png"
    )
    lines.append(f"![speedup, measured and paper]({speedup_path.relative_to(out)})")
    if spec.sweep_field:
        sweep_path = figures.sweep_figure(
            spec.title, rows, spec.sweep_field, out / "figures" / f"{spec.name}_acceptance.png"
        )
        lines.append(f"![acceptance and speedup against {spec.sweep_field}]({sweep_path.relative_to(out)})")
    labelled = [(figures.row_label(row, spec.key_fields), row.run) for row in rows if row.run]
    traces = threshold_traces(labelled)
    if traces:
        trace_path = figures.threshold_figure(
            f"{spec.name}: adaptive threshold over cycles (paper Figure 5)",
            traces,
            out / "figures" / f"{spec.name}_threshold.png",
        )
        lines.append(f"![threshold over cycles]({trace_path.relative_to(out)})")
    return lines + [""], rows


def other_runs_section(runs: list[RunResult], root: Path, out: Path) -> list[str]:
    headers = ["run", "model", "task", "method", "K", "threshold", "T", "status", *column_headers(OTHER_RUNS)]
    body = []
    for run in runs:
        config = run.config
        method = config.get("method") or {}
        body.append(
            [relative(run.path, root), fmt(config["model"]["name"]), fmt(config["task"]["name"])]
            + [fmt(method.get("name")), fmt(method.get("max_draft_tokens")), fmt(method.get("threshold"))]
            + [key_text((config.get("sampling") or {}).get("temperature")), run.status]
            + column_cells(run.metrics, OTHER_RUNS)
        )
    lines = ["## Other runs", ""] + markdown_table(headers, body) + [""]
    traces = threshold_traces([(relative(run.path, root), run) for run in runs])
    if traces:
        path = figures.threshold_figure(
            "adaptive threshold over cycles", traces, out / "figures" / "runs_threshold.png"
        )
        lines += [f"![threshold over cycles]({path.relative_to(out)})", ""]
    return lines


def csv_line(experiment: str, row: TableRow, root: Path) -> dict[str, Any]:
    """One line of report.csv: the row's key, status and run, each compared quantity with the paper's value
    and the difference, and the other statistics (empty where a run is missing, never zero)."""
    run = row.run
    metrics, config = (run.metrics, run.config) if run else (None, {})
    from_config = {
        "model": (config.get("model") or {}).get("name"),
        "task": (config.get("task") or {}).get("name"),
        "temperature": (config.get("sampling") or {}).get("temperature"),
        "metric": (config.get("task") or {}).get("metric"),
    }
    line: dict[str, Any] = {"experiment": experiment}
    line.update({key: row.key.get(key, from_config.get(key)) for key in CSV_KEYS})
    line.update(
        status=row.status,
        run_dir=relative(run.path, root) if run else None,
        method=(config.get("method") or {}).get("name"),
        n_samples=statistic(metrics, "n_samples"),
    )
    values = measured(run)
    for field in COMPARED:
        reference = (row.paper or {}).get(field)
        line.update(
            {field: values.get(field), f"{field}_paper": reference, f"{field}_diff": row.difference(field)}
        )
    for column in DETAIL_COLUMNS:
        line[column.key] = statistic(metrics, column.key)
        if column.interval:
            interval = statistic(metrics, column.interval)
            line[f"{column.interval}_low"], line[f"{column.interval}_high"] = interval or (None, None)
    return line


def readable_runs(root: Path) -> list[RunResult]:
    """The runs under `root`; DataError when there are none or a run's file is damaged (each file named), so
    a report is never written from them."""
    if not Path(root).is_dir():
        raise DataError(f"{root} is not a directory; name a run directory or a directory of them")
    runs = find_runs(root)
    if not runs:
        raise DataError(
            f"{root} holds no run directories (one holds config.yaml, metrics.json or samples.jsonl); "
            "name a run directory or a sweep directory"
        )
    damaged = [run.damaged for run in runs if run.damaged is not None]
    if damaged:
        raise DataError(
            f"{len(damaged)} damaged run file(s), no report written: {'; '.join(damaged)}; rerun those runs "
            "(force=true) or move their directories away"
        )
    return runs


REPORT_FILES = ("report.md", "report.csv", "figures/")


def write_report(root: Path, out: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.csv and figures/ for the runs under `root` (into `out`, default `root`).
    Refuses (DataError) a directory without runs, a damaged run file, and an output file it did not write."""
    root = Path(root).resolve()
    out = Path(out).resolve() if out else root
    runs = readable_runs(root)
    check_authorship(out, REPORT_FILES)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Replication report: {root.name}",
        "",
        f"{len(runs)} run directories under `{root.name}/`.",
        "",
    ]
    lines += [
        "Definitions of every statistic: `replicate/run/metrics.py`. Intervals: 95% percentile bootstrap over samples.",
        "",
    ]
    csv_lines = []
    by_experiment: dict[str, list[RunResult]] = {}
    for run in runs:
        known = run.experiment in TABLES or run.experiment == comparison.EXPERIMENT
        by_experiment.setdefault(run.experiment if known else "", []).append(run)
    if by_experiment.get(comparison.EXPERIMENT):
        compared = by_experiment[comparison.EXPERIMENT]
        lines += comparison.comparison_section(compared, root, out)
        csv_lines += [
            csv_line(comparison.EXPERIMENT, TableRow(key={}, paper=None, run=run), root) for run in compared
        ]
    for name, spec in TABLES.items():
        if name in by_experiment:
            section, rows = experiment_section(spec, by_experiment[name], root, out)
            lines += section
            csv_lines += [csv_line(name, row, root) for row in rows]
    if by_experiment.get(""):
        lines += other_runs_section(by_experiment[""], root, out)
        csv_lines += [csv_line("", TableRow(key={}, paper=None, run=run), root) for run in by_experiment[""]]
    lines += provenance_section(runs)
    markdown_path, csv_path = out / "report.md", out / "report.csv"
    markdown_path.write_text("\n".join(lines).rstrip() + "\n")
    columns = list(dict.fromkeys(key for line in csv_lines for key in line))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(
            {key: "" if value is None else value for key, value in line.items()} for line in csv_lines
        )
    record_authorship(out, REPORT_FILES)
    return {"markdown": markdown_path, "csv": csv_path}


@user_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = report_parser().parse_args(argv)
    if (args.entity or args.project) and not args.wandb_report:
        given = " and ".join(f"--{name}" for name in ("entity", "project") if getattr(args, name))
        raise ConfigError(f"{given} only acts with --wandb-report; add --wandb-report or drop {given}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; name a directory")
    from replicate.report.spec_bench import DIRECTORY, write_spec_bench
    from replicate.report.wandb_report import SPEC_FILE, write_wandb_report

    root = args.directory.resolve()
    out = Path(args.out).resolve() if args.out else root
    runs = readable_runs(root)
    exports = [f"{DIRECTORY}/"] * args.spec_bench + [SPEC_FILE] * args.wandb_report
    check_authorship(out, [*REPORT_FILES, *exports])  # before anything is written
    paths = write_report(root, out)
    print(f"report: {paths['markdown']}\ntable: {paths['csv']}")
    if args.spec_bench:
        _, table = write_spec_bench(root, runs, out)
        print(f"Spec-Bench answer files: {out / DIRECTORY}\n" + "\n".join(table))
    if args.wandb_report:
        written = write_wandb_report(root, runs, out, args.entity, args.project)
        print(
            f"W&B report spec: {written['spec']}"
            + (f"\nW&B report: {written['url']}" if written["url"] else "")
        )
    record_authorship(out, exports)
