"""One run directory as the report reads it: its files as they are (nothing recomputed), its status, and the
quantities the paper's tables compare (`measured`; names in `replicate.report.tables`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate.metrics_record import RunMetrics
from replicate.records import SampleRecord
from replicate.run.rundir import CONFIG_FILE, METRICS_FILE, SAMPLES_FILE


@dataclass
class RunResult:
    """The files of one run directory, read as they are (nothing is recomputed)."""

    path: Path
    config: dict[str, Any]
    metrics: RunMetrics | None
    records: list[SampleRecord]
    damaged: str | None = None  # why a file of the run directory could not be read

    @property
    def experiment(self) -> str | None:
        return (self.config.get("experiment") or {}).get("name")

    @property
    def expected_samples(self) -> int | None:
        """Samples the run will have when finished (HumanEval: problems x samples_per_problem)."""
        n_samples = self.config.get("n_samples")
        if n_samples is None:
            return None
        return int(n_samples) * int((self.config.get("task") or {}).get("samples_per_problem") or 1)

    @property
    def status(self) -> str:
        if self.damaged is not None:
            return f"damaged ({self.damaged})"
        if self.metrics is not None:
            # samples.jsonl keeps the samples the baseline filter excluded; metrics.json counts the kept ones
            decoded = self.metrics.n_samples + len(self.metrics.excluded_ids or ())
            if len(self.records) != decoded:
                return (
                    f"inconsistent (samples.jsonl holds {len(self.records)} samples, metrics.json says "
                    f"{self.metrics.n_samples} kept and {decoded - self.metrics.n_samples} excluded)"
                )
            return "ok"
        expected = self.expected_samples
        return f"incomplete ({len(self.records)}/{expected if expected is not None else '?'} samples)"


def measured(run: RunResult | None) -> dict[str, Any]:
    """The compared quantities of a finished run; empty for a missing, unfinished, damaged or inconsistent
    one (never zeros)."""
    if run is None or run.metrics is None or run.status != "ok":
        return {}
    metrics = run.metrics
    return {
        "ar": metrics.get("baseline_score"),
        "ssd": metrics.get("score"),
        "ar_paper_scoring": metrics.get("paper_compatible.baseline_score"),
        "ssd_paper_scoring": metrics.get("paper_compatible.score"),
        "speedup": metrics.get("speedup"),
        "acceptance": metrics.get("acceptance_rate"),
    }


def is_run_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in (CONFIG_FILE, METRICS_FILE, SAMPLES_FILE))
