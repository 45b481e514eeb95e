"""How each paper table is laid out, and how a run directory maps onto one of its rows.

A run belongs to an experiment through its resolved config (`config.yaml`: `experiment.name`); the paper's
numbers come from the same config (`paper`, copied from `../shared/paper/reference.yaml` into
`conf/experiment/<name>.yaml`). A row is identified by a key (model, task, temperature, K, gamma or metric);
a paper row without a run is reported as missing, a run without a paper row (e.g. a smoke run on another
model) as "not in the paper".

The compared quantities, under one name each whatever the paper's column is called:
- `ar`: the task metric of autoregressive decoding (metrics.json `baseline_score`);
- `ssd`: the task metric of the self-speculative method (`score`; the ablations' "ROUGE-2" column);
- `speedup`: the paper's speedup (`speedup`, mean time per token, autoregressive / method);
- `acceptance`: accepted draft tokens / drafted tokens, averaged over samples (`acceptance_rate`);
- `ar_paper_scoring`, `ssd_paper_scoring` (Tables 1-2): the same two metrics under the authors' scoring
  (metrics.json `paper_compatible`: the first generated token dropped, then their notebooks' post-processing),
  compared with the same paper numbers: the paper's numbers were scored that way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replicate.core.methods import method_config
from replicate.report.runs import RunResult, is_run_dir, measured

__all__ = [  # is_run_dir and measured: read by report.write through this module
    "COMPARED",
    "TABLES",
    "RunResult",
    "TableRow",
    "TableSpec",
    "is_run_dir",
    "measured",
    "paper_values_for_run",
    "table_rows",
]

COMPARED = ("ar", "ssd", "ar_paper_scoring", "ssd_paper_scoring", "speedup", "acceptance")
COMPARED_TITLES = {
    "ar": "AR",
    "ssd": "SSD",
    "ar_paper_scoring": "AR (paper's scoring)",
    "ssd_paper_scoring": "SSD (paper's scoring)",
    "speedup": "speedup",
    "acceptance": "acceptance",
}
# The metric columns of Tables 1-2: the faithful score, then the authors' scoring of the same decodes.
SCORED = ("ar", "ssd", "ar_paper_scoring", "ssd_paper_scoring")
KEY_TITLES = {
    "model": "model",
    "strategy": "skipped layers",
    "task": "task",
    "temperature": "T",
    "metric": "metric",
    "K": "K",
    "gamma": "gamma",
}


def _method(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("method") or {}


def _names(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": config["model"]["name"], "task": config["task"]["name"]}


def _fixed_or_adaptive(config: Mapping[str, Any], field: str) -> Any:
    method = method_config(_method(config))
    return "adaptive" if method.adapts_threshold else getattr(method, field, None)


@dataclass(frozen=True)
class TableSpec:
    """One paper table: its title, the fields that identify a row, the compared columns, how to read a run's
    key from its config and the paper's rows from the experiment's `paper` section."""

    name: str
    title: str
    key_fields: tuple[str, ...]
    compared: tuple[str, ...]
    run_key: Callable[[Mapping[str, Any]], dict[str, Any]]
    paper_rows: Callable[[Mapping[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]
    group_field: str | None = None  # shown as column groups in the paper's layout (Table 1: the task)
    sweep_field: str | None = None  # the x axis of the acceptance figure (Tables 3, 4, 10)


def _scored_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A Table 1-2 paper row's values, its AR and SSD numbers also referenced by the paper-scoring columns."""
    return {**values, "ar_paper_scoring": values["ar"], "ssd_paper_scoring": values["ssd"]}


def _table1_paper(paper: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rows = []
    for row in paper["rows"]:
        for task in ("cnndm", "xsum"):
            key = {"model": row["model"], "temperature": float(row["temperature"]), "task": task}
            rows.append(
                (key, _scored_values({field: row[task][field] for field in ("ar", "ssd", "speedup")}))
            )
    return rows


def _ablation_paper(sweep_field: str, compared: tuple[str, ...], renames: Mapping[Any, Any] | None = None):
    """Rows of an ablation of one field on the paper's model and task; `renames` maps the paper's value of
    that field to the experiment's (Table 7's "bayesian_optimization" row is the experiment's `searched`)."""
    renames = renames or {}

    def paper_rows(paper: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        rows = []
        for row in paper["rows"]:
            value = renames.get(row[sweep_field], row[sweep_field])
            key = {"model": paper["model"], "task": paper["task"], sweep_field: value}
            values = {
                "ssd": row.get("rouge2"),
                "acceptance": row.get("acceptance"),
                "speedup": row["speedup"],
            }
            rows.append((key, {field: values[field] for field in compared}))
        return rows

    return paper_rows


def _threshold_ablation(name: str, title: str, sweep_field: str, method_field: str) -> TableSpec:
    """Tables 3 and 4: a fixed value of one method field per row (K, gamma) against the adaptive draft-exit."""
    compared = ("ssd", "acceptance", "speedup")
    return TableSpec(
        name=name,
        title=title,
        key_fields=("model", "task", sweep_field),
        compared=compared,
        run_key=lambda c: {**_names(c), sweep_field: _fixed_or_adaptive(c, method_field)},
        paper_rows=_ablation_paper(sweep_field, compared),
        sweep_field=sweep_field,
    )


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="table1",
            title="Table 1: text generation (ROUGE-2), LLaMA-2 on CNN/DM and XSum",
            key_fields=("model", "temperature", "task"),
            compared=(*SCORED, "speedup"),
            run_key=lambda c: {**_names(c), "temperature": float(c["sampling"]["temperature"])},
            paper_rows=_table1_paper,
            group_field="task",
        ),
        TableSpec(
            name="table2",
            title="Table 2: code generation (HumanEval), CodeLLaMA-13B",
            key_fields=("model", "metric"),
            compared=(*SCORED, "speedup"),
            run_key=lambda c: {"model": c["model"]["name"], "metric": c["task"]["metric"]},
            paper_rows=lambda p: [
                (
                    {"model": p["model"], "metric": row["metric"]},
                    _scored_values({f: row[f] for f in ("ar", "ssd", "speedup")}),
                )
                for row in p["rows"]
            ],
        ),
        _threshold_ablation(
            "table3",
            "Table 3: fixed draft length K vs adaptive draft-exit (LLaMA-2-13B, CNN/DM, greedy)",
            "K",
            "max_draft_tokens",
        ),
        _threshold_ablation(
            "table4",
            "Table 4: static draft-exit threshold gamma (K=12) vs adaptive (LLaMA-2-13B, CNN/DM, greedy)",
            "gamma",
            "threshold",
        ),
        TableSpec(
            name="table7",
            title="Table 7: which sub-layers to skip, same count in every row (LLaMA-2-13B, CNN/DM, greedy)",
            key_fields=("model", "task", "strategy"),
            compared=("acceptance", "speedup"),
            run_key=lambda c: {**_names(c), "strategy": c["experiment"]["row"]},
            paper_rows=_ablation_paper(
                "strategy", ("acceptance", "speedup"), {"bayesian_optimization": "searched"}
            ),
        ),
        TableSpec(
            name="table10",
            title="Table 10: maximum draft length K under adaptive draft-exit (LLaMA-2-13B, CNN/DM, greedy)",
            key_fields=("model", "task", "K"),
            compared=("acceptance", "speedup"),
            run_key=lambda c: {**_names(c), "K": _method(c).get("max_draft_tokens")},
            paper_rows=_ablation_paper("K", ("acceptance", "speedup")),
            sweep_field="K",
        ),
    )
}


@dataclass
class TableRow:
    """One row of a reproduced table: the paper's values (None: not in the paper) and the run (None: missing)."""

    key: dict[str, Any]
    paper: dict[str, Any] | None
    run: RunResult | None
    runs_found: int = 0

    @property
    def status(self) -> str:
        if self.run is None:
            return "missing"
        status = self.run.status
        if self.paper is None:
            status += ", not in the paper"
        if self.runs_found > 1:
            status += f", {self.runs_found} runs (latest shown)"
        return status

    def measured(self) -> dict[str, Any]:
        return measured(self.run)

    def difference(self, field: str) -> float | None:
        value, reference = self.measured().get(field), (self.paper or {}).get(field)
        if isinstance(value, (int, float)) and isinstance(reference, (int, float)):
            return value - reference
        return None


def _preference(run: RunResult) -> tuple:
    """Which of several runs of one row to show: finished before unfinished, then the latest."""
    date = (run.metrics.environment.get("date") if run.metrics else None) or ""
    return (run.metrics is not None, date, str(run.path))


def table_rows(spec: TableSpec, runs: list[RunResult]) -> list[TableRow]:
    """The paper's rows in the paper's order, each with its run, then the runs the paper has no row for."""
    paper = next((run.config["paper"] for run in runs if run.config.get("paper")), None)
    by_key: dict[tuple, list[RunResult]] = {}
    for run in runs:
        key = spec.run_key(run.config)
        by_key.setdefault(tuple(key[field] for field in spec.key_fields), []).append(run)
    rows = []
    paper_keys = [key for key, _ in spec.paper_rows(paper)] if paper else []
    for key, values in spec.paper_rows(paper) if paper else []:
        found = by_key.pop(tuple(key[field] for field in spec.key_fields), [])
        best = max(found, key=_preference) if found else None
        rows.append(TableRow(key=key, paper=values, run=best, runs_found=len(found)))
    # Runs without a paper row (e.g. smoke runs on another model) follow the paper's order of each field's
    # values (strategies, K, tasks), then the text order of values the paper does not have.
    order = {field: list(dict.fromkeys(key[field] for key in paper_keys)) for field in spec.key_fields}

    def position(item):
        return tuple(
            (order[field].index(value), "") if value in order[field] else (len(order[field]), str(value))
            for field, value in zip(spec.key_fields, item[0])
        )

    for key_values, found in sorted(by_key.items(), key=position):
        best = max(found, key=_preference)
        rows.append(TableRow(dict(zip(spec.key_fields, key_values)), None, best, len(found)))
    return rows


def paper_values_for_run(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The paper's numbers for the row a run belongs to (None when it is in no table or no row)."""
    name = (config.get("experiment") or {}).get("name")
    spec, paper = TABLES.get(name), config.get("paper")
    if spec is None or not paper:
        return None
    key = spec.run_key(config)
    for paper_key, values in spec.paper_rows(paper):
        if all(paper_key[field] == key[field] for field in spec.key_fields):
            return values
    return None
