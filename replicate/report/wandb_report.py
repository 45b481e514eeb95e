"""`python -m replicate.report <dir> --wandb-report --entity <you>`: a W&B Report of the runs under <dir>, built
as code with `wandb-workspaces` (Reports API v2).

One section per paper table the directory holds runs of: the paper's layout with measured / paper /
difference (from the run directories, as in report.md), then a panel grid over those runs' W&B runs (by the
run ids their `tracking.json` recorded; by the W&B group, i.e. the experiment's name, where none was logged):
speedup bars beside the paper's (`speedup`, `paper/speedup` summary keys, `replicate.tracking`), acceptance
and task-score bars where the table compares them, and the adaptive threshold traces (the runs'
`threshold_trace_table`). Runs in no paper table get one section of their own.

The report's spec (the JSON W&B stores for a report) is always written to `<dir>/wandb_report.json`, with no
network and no login: that needs the entity given explicitly (`--entity`, or `logger.entity` in the runs'
configs). Online (WANDB_MODE neither offline nor disabled) the report is also saved to W&B and its URL printed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replicate.report.markdown import column_cells, column_headers, layout_table, markdown_table, relative
from replicate.report.tables import TABLES, RunResult, TableSpec, table_rows
from replicate.schema import ConfigError

SPEC_FILE = "wandb_report.json"
REPORT_COLUMNS_KEYS = ("n_samples", "speedup", "acceptance_rate", "identical_fraction", "score")


def _tracked_id(run: RunResult) -> str | None:
    """The W&B run id `replicate.tracking` recorded for this run directory (None if it was not logged)."""
    path = run.path / "tracking.json"
    if not path.is_file():
        return None
    outcome = json.loads(path.read_text())
    return outcome.get("id") if outcome.get("status") == "ok" else None


def _runset(name: str, runs: Sequence[RunResult], group: str | None) -> tuple[Any, str]:
    """The runs of a section as a W&B run set, and a sentence saying how they were selected."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    ids = sorted({run_id for run_id in map(_tracked_id, runs) if run_id})
    if ids:
        how = f"Panels: the {len(ids)} W&B runs these run directories logged (tracking.json)."
        return wr.Runset(name=name, filters=[expr.Metric("ID").isin(ids)]), how
    if group:
        how = f"No run here was logged to W&B (no tracking.json id); the panels show the project's group {group!r}."
        return wr.Runset(name=name, filters=[expr.Metric("Group") == group]), how
    return wr.Runset(name=name), "No run here was logged to W&B; the panels show the project's runs."


def _panels(compared: Sequence[str]) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    panels = [
        wr.BarPlot(title="speedup: measured and paper", metrics=["speedup", "paper/speedup"], orientation="v")
    ]
    if "acceptance" in compared:
        panels.append(
            wr.BarPlot(
                title="acceptance rate: measured and paper",
                metrics=["acceptance_rate", "paper/acceptance"],
                orientation="v",
            )
        )
    if "ssd" in compared:
        panels.append(
            wr.BarPlot(
                title="task score: measured and paper", metrics=["score", "paper/ssd"], orientation="v"
            )
        )
    panels.append(
        wr.CustomChart(
            query={"summaryTable": {"tableKey": "threshold_trace_table"}},
            chart_name="wandb/line/v0",
            chart_fields={"x": "cycle", "y": "threshold", "stroke": "name"},
            chart_strings={
                "title": "adaptive draft-exit threshold over verification cycles (paper Figure 5)"
            },
        )
    )
    return panels


def table_section(spec: TableSpec, runs: list[RunResult]) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    rows = table_rows(spec, runs)
    runset, how = _runset(spec.name, runs, spec.name)
    intro = "Cells: measured / paper / difference (measured - paper), from the run directories. " + how
    return [
        wr.H2(spec.title),
        wr.P(intro),
        wr.MarkdownBlock("\n".join(layout_table(spec, rows))),
        wr.PanelGrid(runsets=[runset], panels=_panels(spec.compared)),
    ]


def other_runs_section(runs: list[RunResult], root: Path) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    from replicate.columns import columns

    chosen = columns(*REPORT_COLUMNS_KEYS)
    headers = ["run", "method", "status", *column_headers(chosen)]
    body = [
        [relative(run.path, root), str((run.config.get("method") or {}).get("name")), run.status]
        + column_cells(run.metrics, chosen)
        for run in runs
    ]
    runset, how = _runset("other runs", runs, None)
    return [
        wr.H2("Other runs"),
        wr.P(how),
        wr.MarkdownBlock("\n".join(markdown_table(headers, body))),
        wr.PanelGrid(runsets=[runset], panels=_panels(("acceptance",))),
    ]


def build_report(root: Path, runs: list[RunResult], entity: str, project: str) -> Any:
    """The `wandb_workspaces` Report object of the runs under `root` (nothing is sent anywhere)."""
    import wandb_workspaces.reports.v2 as wr

    by_table: dict[str, list[RunResult]] = {}
    for run in runs:
        by_table.setdefault(run.experiment if run.experiment in TABLES else "", []).append(run)
    blocks: list[Any] = []
    for name, spec in TABLES.items():
        if name in by_table:
            blocks += table_section(spec, by_table[name])
    if by_table.get(""):
        blocks += other_runs_section(by_table[""], root)
    return wr.Report(
        project=project,
        entity=entity,
        title=f"Self-speculative decoding: {root.name}"[:128],
        description=f"{len(runs)} runs; measured beside the paper's numbers (Zhang et al., ACL 2024).",
        blocks=blocks,
    )


def _configured(runs: Sequence[RunResult], key: str) -> str | None:
    values = {(run.config.get("logger") or {}).get(key) for run in runs} - {None}
    return values.pop() if len(values) == 1 else None


def write_wandb_report(
    root: Path, runs: list[RunResult], out: Path, entity: str | None, project: str | None
) -> dict[str, Any]:
    """Write the report's spec to `out/wandb_report.json`; save the report to W&B when online. Returns
    {"spec": path, "url": url or None}."""
    entity = entity or _configured(runs, "entity")
    if not entity:
        raise ConfigError(
            "a W&B report needs its entity: pass --entity <your W&B user or team> (the runs' configs name none)"
        )
    project = project or _configured(runs, "project") or _default_project()
    report = build_report(root, runs, entity, project)
    # `_to_model` is what `Report.save` sends (wandb-workspaces has no public spec export); it needs no network
    # while the run sets name no entity or project of their own (they default to the report's project).
    model = report._to_model()
    spec = {
        "entity": entity,
        "project": project,
        "title": report.title,
        "description": report.description,
        "spec": json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True)),
    }
    path = Path(out) / SPEC_FILE
    path.write_text(json.dumps(spec, indent=2) + "\n")
    url = None
    if os.environ.get("WANDB_MODE", "online") not in ("offline", "disabled"):
        url = report.save().url
    return {"spec": path, "url": url}


def _default_project() -> str:
    from replicate.config import compose_config

    return str(compose_config(["logger=wandb"]).logger.project)
