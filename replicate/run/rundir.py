"""The run directory, the record of truth: `samples.jsonl` (one line per sample, appended and flushed as
each sample finishes, so a killed run loses at most the sample in progress), `metrics.json` (written
atomically at the end) and `config.yaml` (the resolved config)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL log written by `append_jsonl`; a final line cut short by a kill is dropped (its
    record is produced again), any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise ValueError(f"{path}:{number + 1} is not valid JSON; the file is damaged") from None
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a JSONL log with `records` (drops a torn last line before appending resumes)."""
    write_atomic(Path(path), "".join(json.dumps(record) + "\n" for record in records))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record and fsync, so a kill loses at most the record being written."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / SAMPLES_FILE)


def rewrite_samples(run_dir: Path, records: list[dict[str, Any]]) -> None:
    write_jsonl(Path(run_dir) / SAMPLES_FILE, records)


def append_sample(run_dir: Path, record: dict[str, Any]) -> None:
    append_jsonl(Path(run_dir) / SAMPLES_FILE, record)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    write_atomic(Path(run_dir) / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None
