"""Figures of the report (PNG, matplotlib's Agg backend: no display needed).

- speedup per row, measured (with its bootstrap interval) beside the paper's;
- acceptance rate and speedup against K (Tables 3 and 10) or the static threshold gamma (Table 4), with the
  adaptive draft-exit as a horizontal reference;
- the adaptive threshold over verification cycles (paper Figure 5), from `samples.jsonl` records
  (`record.method.thresholds`, samples in order: the threshold carries over between samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from replicate.report.tables import RunResult, TableRow  # noqa: E402

MEASURED_COLOR, PAPER_COLOR = "tab:blue", "tab:gray"


def row_label(row: TableRow, key_fields: Sequence[str]) -> str:
    parts = []
    for field in key_fields:
        value = row.key[field]
        if field == "temperature":
            parts.append(f"T={value:g}")
        elif field in ("K", "gamma"):
            parts.append(f"{field}={value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def speedup_figure(title: str, rows: Sequence[TableRow], key_fields: Sequence[str], path: Path) -> Path:
    """Bars of the measured speedup (error bar: its bootstrap interval) and the paper's, per row; a missing
    or unfinished run gets no bar but a label, so it cannot be mistaken for a speedup of zero."""
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2))
    width = 0.38
    for index, row in enumerate(rows):
        value = row.measured().get("speedup")
        if value is not None:
            interval = row.run.metrics.speedup_ci if row.run.metrics else None
            error = None
            if interval:
                error = [[max(0.0, value - interval[0])], [max(0.0, interval[1] - value)]]
            axes.bar(index - width / 2, value, width, color=MEASURED_COLOR, yerr=error, capsize=3)
        else:
            axes.text(
                index - width / 2, 0.05, row.status.split(" (")[0], rotation=90, ha="center", va="bottom"
            )
        if row.paper and row.paper.get("speedup") is not None:
            axes.bar(index + width / 2, row.paper["speedup"], width, color=PAPER_COLOR)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    axes.set_xticks(range(len(rows)), [row_label(row, key_fields) for row in rows], rotation=35, ha="right")
    axes.set_ylabel("speedup (time per token, AR / method)")
    axes.set_title(title, fontsize=9)
    axes.legend(
        handles=[
            plt.Rectangle((0, 0), 1, 1, color=MEASURED_COLOR, label="measured"),
            plt.Rectangle((0, 0), 1, 1, color=PAPER_COLOR, label="paper"),
        ],
        fontsize=8,
    )
    return _save(figure, path)


def sweep_figure(title: str, rows: Sequence[TableRow], sweep_field: str, path: Path) -> Path:
    """Acceptance rate and speedup against the swept quantity (K or gamma); the adaptive row is a dashed line."""
    figure, panels = plt.subplots(1, 2, figsize=(10, 4))
    for axes, field in zip(panels, ("acceptance", "speedup")):
        for source, color, marker in (("measured", MEASURED_COLOR, "o"), ("paper", PAPER_COLOR, "s")):
            points, adaptive = [], None
            for row in rows:
                values = row.measured() if source == "measured" else (row.paper or {})
                value = values.get(field)
                if value is None:
                    continue
                if row.key[sweep_field] == "adaptive":
                    adaptive = value
                else:
                    points.append((float(row.key[sweep_field]), value))
            points.sort()
            if points:
                axes.plot(*zip(*points), color=color, marker=marker, label=source)
            if adaptive is not None:
                axes.axhline(adaptive, color=color, linestyle="--", label=f"{source}, adaptive")
        axes.set_xlabel(sweep_field)
        axes.set_ylabel(field)
        axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def threshold_trace(run: RunResult) -> list[float]:
    """The draft-exit threshold of every verification cycle, samples in order."""
    trace: list[float] = []
    for record in sorted(run.records, key=lambda record: record.index):
        trace.extend(record.method.thresholds)
    return trace


def threshold_figure(title: str, traces: Sequence[tuple[str, list[float]]], path: Path) -> Path:
    """The adaptive threshold gamma over verification cycles, one line per run (paper Figure 5)."""
    figure, axes = plt.subplots(figsize=(8, 4))
    for label, trace in traces:
        axes.plot(range(len(trace)), trace, linewidth=0.9, label=label)
    axes.set_xlabel("verification cycle (all samples, in order)")
    axes.set_ylabel("draft-exit threshold gamma")
    axes.set_title(title, fontsize=9)
    if len(traces) <= 12:
        axes.legend(fontsize=7)
    return _save(figure, path)
