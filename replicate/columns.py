"""The statistics tables show of a run (`replicate.records.RunMetrics`), defined once: the runner's table, the
report, its CSV and W&B all read `COLUMNS` / `DETAIL_COLUMNS`; `columns(*keys)` picks some of them by key;
`format_table` is the runner's plain-text table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replicate.metrics_record import RunMetrics


@dataclass(frozen=True)
class Column:
    """A headline statistic: its `RunMetrics.get` key, the title tables show, and its interval's key."""

    key: str
    title: str
    interval: str | None = None


COLUMNS = (
    Column("n_samples", "n"),
    Column("new_tokens", "tokens"),
    Column("tokens_per_s", "tok/s"),
    Column("speedup", "speedup", "speedup_ci"),
    Column("speedup_total_time", "speedup (total time)", "speedup_total_time_ci"),
    Column("acceptance_rate", "acceptance", "acceptance_rate_ci"),
    Column("mean_accepted_length", "accepted length"),
    Column("identical_fraction", "identical"),
    Column("metric", "metric"),
    Column("score", "score"),
    Column("baseline_score", "baseline score"),
    Column("paper_compatible.score", "score (paper's scoring)"),
    Column("divergences.near_tie", "near ties"),
    Column("divergences.unexplained", "unexplained"),
    Column("cost_model.predicted_speedup", "predicted speedup"),
    Column("cost_model.efficiency", "efficiency"),
)

DETAIL_COLUMNS = (
    *COLUMNS,
    Column("acceptance_rate_pooled", "acceptance, pooled"),
    Column("baseline_tokens_per_s", "baseline tok/s"),
    Column("final_threshold", "final gamma"),
    Column("n_excluded", "excluded"),
    Column("post_eos_tokens", "post-EOS tokens"),
)


def columns(*keys: str) -> tuple[Column, ...]:
    """The columns of these keys, in the order given (titles and intervals from `DETAIL_COLUMNS`)."""
    by_key = {column.key: column for column in DETAIL_COLUMNS}
    return tuple(by_key[key] for key in keys)


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_table(rows: list[RunMetrics]) -> str:
    """A plain-text table of run metrics, one row per run, with the headline columns (`COLUMNS`)."""
    columns = [("method", None), *((column.title, column.key) for column in COLUMNS)]
    cells = [[row.method, *(_cell(row.get(key)) for _, key in columns[1:])] for row in rows]
    widths = [max(len(header), *(len(r[i]) for r in cells)) for i, (header, _) in enumerate(columns)]
    lines = ["  ".join(header.ljust(w) for (header, _), w in zip(columns, widths))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in cells]
    if rows:
        lines.insert(0, f"model={rows[0].model} task={rows[0].task}")
    return "\n".join(lines)
