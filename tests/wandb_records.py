"""Reading what an offline W&B run wrote: its transaction log (`run-<id>.wandb`), without wandb's uploader.

The file is a 7-byte header (":W&B", magic, version) followed by records framed as in LevelDB's log format:
32 KiB blocks, each record chunk behind a 7-byte header (crc32, little-endian length, chunk type: 1 full,
2 first, 3 middle, 4 last; zero padding at a block's end). Each record is a `wandb_internal_pb2.Record`."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK_SIZE, HEADER_SIZE = 32768, 7


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = HEADER_SIZE, b""
    while position < len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        length, kind = (
            (0, 0) if left_in_block < HEADER_SIZE else struct.unpack_from("<HB", data, position + 4)
        )
        if kind == 0:  # block padding
            position += left_in_block
            continue
        pending += data[position + HEADER_SIZE : position + HEADER_SIZE + length]
        position += HEADER_SIZE + length
        if kind in (1, 4):  # a whole record, or its last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def finished_records(path: Path, timeout_s: float = 60.0) -> list[Any]:
    """The records of a run's log once its `exit` record is there (W&B's service may still be writing the
    file for a moment after `run.finish()` returns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = list(records(path))
        if any(record.WhichOneof("record_type") == "exit" for record in found):
            return found
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout_s} s"
        time.sleep(0.2)


def offline_run(run_dir: Path) -> dict[str, Any]:
    """The summary (last value of each key), artifacts (name, type, metadata, file paths) and logged tables
    of the one offline W&B run under `run_dir/wandb/`."""
    logs = list(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    summary: dict[str, Any] = {}
    artifacts = []
    for record in finished_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                summary[key] = json.loads(item.value_json)
        elif kind == "artifact":
            artifact = record.artifact
            artifacts.append(
                {
                    "name": artifact.name,
                    "type": artifact.type,
                    "metadata": json.loads(artifact.metadata or "{}"),
                    "files": sorted(entry.path for entry in artifact.manifest.contents),
                }
            )
    tables = sorted(
        key.rpartition("/")[0]
        for key, value in summary.items()
        if key.endswith("/_type") and value == "table-file"
    )
    return {"summary": summary, "artifacts": artifacts, "tables": tables}
