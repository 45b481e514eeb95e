"""Markdown pieces of the report: number formatting, the paper-layout table, the statistics table and the
provenance (environments, models, data) of the runs. A missing or unfinished run never shows a number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replicate.columns import Column, columns
from replicate.metrics_record import RunMetrics
from replicate.report.tables import COMPARED_TITLES, KEY_TITLES, RunResult, TableRow, TableSpec


def statistic(metrics: RunMetrics | None, name: str) -> Any:
    """A metrics.json value by `RunMetrics.get` key (`cost_model.<name>` for the cost model's); None for a
    missing run or a run without that section."""
    return None if metrics is None else metrics.get(name)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def key_text(value: Any) -> str:
    """A row key as the paper writes it (temperature 0 and 0.2, K 4, gamma 0.6)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def column_headers(chosen: Sequence[Column]) -> list[str]:
    return [f"{column.title} [95% CI]" if column.interval else column.title for column in chosen]


def column_cells(metrics: RunMetrics | None, chosen: Sequence[Column]) -> list[str]:
    """One cell per column: the value, with its interval where the column has one."""
    return [with_interval(metrics, column.key, column.interval) for column in chosen]


def with_interval(metrics: RunMetrics | None, name: str, interval_name: str | None = None) -> str:
    if interval_name is None:
        return fmt(statistic(metrics, name))
    value, interval = statistic(metrics, name), statistic(metrics, interval_name)
    if value is None:
        return "-"
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else fmt(value)


def comparison_cell(row: TableRow, field: str) -> str:
    """measured / paper / difference; a run that is missing or unfinished shows its status, never a number."""
    if row.run is None:
        value = "missing"
    elif row.run.status != "ok":
        value = row.run.status.split(" ")[0]
    else:
        value = fmt(row.measured().get(field))
    reference = (row.paper or {}).get(field)
    cell = f"{value} / {fmt(reference)}"
    difference = row.difference(field)
    return cell if difference is None else f"{cell} / {difference:+.3f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def layout_table(spec: TableSpec, rows: Sequence[TableRow]) -> list[str]:
    """The paper's layout: its rows and columns, each cell measured / paper / difference."""
    fields = [field for field in spec.key_fields if field != spec.group_field]
    groups: list[Any] = []
    lines_by_key: dict[tuple, dict[Any, TableRow]] = {}
    for row in rows:
        group = row.key.get(spec.group_field) if spec.group_field else None
        if group not in groups:
            groups.append(group)
        lines_by_key.setdefault(tuple(row.key[field] for field in fields), {})[group] = row
    headers = [KEY_TITLES[field] for field in fields]
    for group in groups:
        prefix = f"{group} " if spec.group_field else ""
        headers += [f"{prefix}{COMPARED_TITLES[field]}" for field in spec.compared]
    body = []
    for key, by_group in lines_by_key.items():
        cells = [key_text(value) for value in key]
        for group in groups:
            row = by_group.get(group)
            cells += [comparison_cell(row, field) if row else "" for field in spec.compared]
        body.append(cells)
    return markdown_table(headers, body)


def relative(path: Path | None, root: Path) -> str:
    if path is None:
        return "-"
    return str(path.relative_to(root)) if path.is_relative_to(root) and path != root else str(path)


DETAILS = columns(
    "n_samples", "speedup", "speedup_total_time", "acceptance_rate", "acceptance_rate_pooled", "mean_accepted_length",
    "identical_fraction", "divergences.near_tie", "divergences.unexplained", "n_excluded",
    "cost_model.predicted_speedup", "cost_model.efficiency", "final_threshold",
)  # fmt: skip


def details_table(spec: TableSpec, rows: Sequence[TableRow], root: Path) -> list[str]:
    headers = [KEY_TITLES[field] for field in spec.key_fields] + ["status", *column_headers(DETAILS), "run"]
    body = []
    for row in rows:
        metrics = row.run.metrics if row.run else None
        body.append(
            [key_text(row.key[field]) for field in spec.key_fields]
            + [row.status, *column_cells(metrics, DETAILS), relative(row.run.path if row.run else None, root)]
        )
    return markdown_table(headers, body)


def provenance_section(runs: list[RunResult]) -> list[str]:
    """Where the results come from: environments, model identities and data selections, each listed once."""
    environments: dict[tuple, list[str]] = {}
    models: dict[str, set[str]] = {}
    data: dict[str, set[str]] = {}
    for run in runs:
        metrics = run.metrics
        if metrics is None:
            continue
        environment = metrics.environment
        versions = environment.get("versions") or {}
        signature = (
            environment.get("device"), environment.get("gpu") or environment.get("cpu"), environment.get("gpu_count"),
            versions.get("torch"), versions.get("transformers"), environment.get("python"),
            (environment.get("git_commit") or "-")[:12] + (" (dirty)" if environment.get("git_dirty") else ""),
        )  # fmt: skip
        environments.setdefault(signature, []).append(environment.get("date") or "-")
        if metrics.model_identity:
            models.setdefault(metrics.model, set()).add(json.dumps(metrics.model_identity, sort_keys=True))
        if metrics.selection:
            selection = {k: v for k, v in metrics.selection.items() if not k.endswith("_ids")}
            data.setdefault(metrics.task or "-", set()).add(json.dumps(selection, sort_keys=True))
    headers = [
        "runs",
        "device",
        "processor",
        "GPUs",
        "torch",
        "transformers",
        "python",
        "git commit",
        "dates",
    ]
    body = [
        [str(len(dates)), *(fmt(value) for value in signature), f"{min(dates)} .. {max(dates)}"]
        for signature, dates in sorted(environments.items(), key=lambda item: str(item[0]))
    ]
    lines = ["## Environment of the runs", ""] + markdown_table(headers, body) + ["", "Models:", ""]
    lines += [f"- {name}: {identity}" for name in sorted(models) for identity in sorted(models[name])]
    lines += ["", "Data (sample ids are in each metrics.json `selection`):", ""]
    lines += [f"- {name}: {selection}" for name in sorted(data) for selection in sorted(data[name])]
    return lines + [""]
