"""The run directory, the record of truth.

- `samples.jsonl`: one `SampleRecord` per line, appended and fsynced as each sample finishes, so a killed run
  loses at most the sample in progress.
- `metrics.json`: the `RunMetrics`, written atomically at the end.
- `config.yaml`: the resolved config the samples were decoded under, and `fingerprint.json`: the hash of
  the settings that decide a sample's result and of the data (file hash or hub revision, selected ids,
  shots). Both are written when a run starts and never rewritten by a finished or refused run.

Every reader names the file (and line) it cannot read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from replicate.errors import UnwritableDirectory
from replicate.metrics_record import RunMetrics
from replicate.records import SCHEMA_VERSION, RecordError, SampleRecord
from replicate.schema import ConfigError

if TYPE_CHECKING:
    from replicate.config import RunConfig
    from tasks import Sample, Task

SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
FINGERPRINT_FILE = "fingerprint.json"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL log written by `append_jsonl`; a final line cut short by a kill is dropped (its
    record is produced again), any other bad line is an error naming the file and line."""
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
            raise RecordError(f"{path}:{number + 1} is not valid JSON; the file is damaged") from None
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


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """A JSON file's content; RecordError naming the file when it is damaged."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path} is not valid JSON ({error}); the file is damaged") from None


def prepare(run_dir: Path) -> Path:
    """The run directory, created if needed; a clear error when it cannot be written."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UnwritableDirectory(
            f"cannot write the run directory {run_dir} ({error.strerror}); choose a writable one with "
            "hydra.run.dir=<dir> (or fix its permissions)"
        ) from None
    return run_dir


def read_samples(run_dir: Path) -> list[SampleRecord]:
    path = Path(run_dir) / SAMPLES_FILE
    lines = read_jsonl(path)
    return [SampleRecord.from_dict(line, f"{path}:{number + 1}") for number, line in enumerate(lines)]


def rewrite_samples(run_dir: Path, records: list[SampleRecord]) -> None:
    """Replace samples.jsonl with `records`; no records: no file (an empty one would look like results)."""
    if not records:
        (Path(run_dir) / SAMPLES_FILE).unlink(missing_ok=True)
        return
    write_jsonl(Path(run_dir) / SAMPLES_FILE, [record.to_dict() for record in records])


def append_sample(run_dir: Path, record: SampleRecord) -> None:
    append_jsonl(Path(run_dir) / SAMPLES_FILE, record.to_dict())


def write_metrics(run_dir: Path, metrics: RunMetrics) -> None:
    write_atomic(Path(run_dir) / METRICS_FILE, json.dumps(metrics.to_dict(), indent=2) + "\n")


def read_metrics(run_dir: Path) -> RunMetrics | None:
    path = Path(run_dir) / METRICS_FILE
    return RunMetrics.from_dict(read_json(path), str(path)) if path.exists() else None


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: list(node) if isinstance(node, tuple) else node}


# Settings that say how to treat the directory or where to report, not what the run is.
_HANDLING_KEYS = ("force", "resume", "logger")


def config_differences(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """How `config` (a run config as plain data) differs from the run's config.yaml, key by key
    ("key: old -> new"), apart from the settings that only say how to treat the directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return []  # nothing to compare with
    previous = _flat(yaml.safe_load(path.read_text()) or {})
    current = _flat(config)
    keys = [key for key in sorted(set(previous) | set(current)) if key.split(".")[0] not in _HANDLING_KEYS]
    missing = object()
    return [
        f"{key}: {previous.get(key, '(unset)')} -> {current.get(key, '(unset)')}"
        for key in keys
        if previous.get(key, missing) != current.get(key, missing)
    ]


@contextmanager
def nothing_left_on_failure(run_dir: Path) -> Iterator[None]:
    """A run that fails before its first sample is recorded leaves no config.yaml or fingerprint.json that
    would make its directory look like a started run."""
    try:
        yield
    except BaseException:
        if not (run_dir / SAMPLES_FILE).exists():
            for name in (CONFIG_FILE, FINGERPRINT_FILE):
                (run_dir / name).unlink(missing_ok=True)
        raise


# Settings that may differ between a run and its resumption: they change no sample's result.
RESUMABLE_KEYS = (
    "n_samples", "resume", "force", "logger", "cost_model", "warmup", "verify_cache", "paper", "divergence",
    "bootstrap",
)  # fmt: skip
# What identifies the data beyond the samples themselves (their ids are compared one by one).
_PER_SAMPLE_SELECTION = ("file", "sample_ids", "problem_ids", "n_problems")


def run_fingerprint(config: RunConfig, task: Task) -> dict[str, Any]:
    """The settings that decide a sample's result and the identity of the data (after `task.samples`)."""
    settings = {key: value for key, value in config.to_dict().items() if key not in RESUMABLE_KEYS}
    data = {key: value for key, value in task.selection().items() if key not in _PER_SAMPLE_SELECTION}
    canonical = json.dumps({"settings": settings, "data": data}, sort_keys=True, default=str)
    return {
        "schema_version": SCHEMA_VERSION,
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "settings": settings,
        "data": data,
    }


def _differences(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(previous) | set(current))
    return [key for key in keys if previous.get(key) != current.get(key)]


def resume_records(
    run_dir: Path, fingerprint: dict[str, Any], samples: Sequence[Sample]
) -> list[SampleRecord]:
    """The samples already decoded in `run_dir` under the same settings and data; refuses anything else."""
    done = read_samples(run_dir)
    if not done:
        return []
    path = run_dir / FINGERPRINT_FILE
    if not path.exists():
        raise ConfigError(
            f"{run_dir} holds samples but no {path.name}; use a new run directory or force=true"
        )
    previous = read_json(path)
    if previous.get("sha256") != fingerprint["sha256"]:
        changed = _differences(previous.get("settings", {}), fingerprint["settings"])
        changed += [f"data.{key}" for key in _differences(previous.get("data", {}), fingerprint["data"])]
        raise ConfigError(
            f"{run_dir} holds samples decoded with other settings or data ({', '.join(changed)} differ from its "
            f"{path.name}); use a new run directory, or force=true to discard them"
        )
    if [record.id for record in done] != [sample.id for sample in samples[: len(done)]]:
        raise ConfigError(
            f"{run_dir / SAMPLES_FILE} holds other samples than this config selects; use a new run dir"
        )
    return done
