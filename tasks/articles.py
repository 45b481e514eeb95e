"""The articles of the 1-shot summarization tasks (`tasks.summarization`): the item, the paper's prompt
format (`format_shot`, `format_query`), and the reading of an offline JSONL file, checked against its
configured sha256 and fields (a damaged, cut or wrongly shaped file is an error naming file and line)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicate.errors import DataError, MissingFile


class DataUnavailableError(MissingFile):
    """Offline evaluation data is missing; the message says where it was looked for and how to provide it."""


class DataFileError(DataError):
    """An offline data file that cannot be read as the config describes it; the message names file and line."""


@dataclass(frozen=True)
class Article:
    id: str
    document: str
    summary: str


def format_shot(article: Article) -> str:
    """One in-context example, exactly as the paper writes it (the summary's newlines removed, no space)."""
    return "Article: " + article.document + "\nSummary: " + article.summary.replace("\n", "") + "\n"


def format_query(shots: list[Article], article: Article) -> str:
    return "".join(format_shot(shot) for shot in shots) + "Article: " + article.document + "\nSummary:"


def read_articles(path: Path, offline: Mapping[str, Any], task_name: str) -> tuple[list[Article], str]:
    """The items of the offline file `path` described by `offline` (the task config's `offline` section),
    in file order or sorted by `offline.sort_field`, and the file's sha256; refuses a file whose sha256 is
    not the configured one (unless that is null)."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if offline["sha256"] is not None and digest != offline["sha256"]:
        raise DataFileError(
            f"{path} has sha256 {digest}, not the {offline['sha256']} that conf/task/{task_name}.yaml expects: "
            "the file was changed or cut, which would change the shot and the items. Restore it, or set "
            f"task.offline.sha256=null to use another file on purpose"
        )
    return _parse(path, raw, offline, task_name), digest


def _parse(path: Path, raw: bytes, offline: Mapping[str, Any], task_name: str) -> list[Article]:
    """The items of an offline JSONL file; a damaged, empty or wrongly shaped file is an error naming the
    file, the line and what is wrong."""
    fields = [offline["id_field"], offline["document_field"], offline["summary_field"]]
    if offline["sort_field"] is not None:
        fields.append(offline["sort_field"])
    rows = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(
                f"{path}:{number} is not valid JSON ({error.msg}); the file is damaged"
            ) from None
        missing = [name for name in fields if not isinstance(row, dict) or name not in row]
        if missing:
            raise DataFileError(
                f"{path}:{number} lacks the field(s) {missing} that conf/task/{task_name}.yaml `offline` names; "
                "is it the right file?"
            )
        rows.append(row)
    if not rows:
        raise DataFileError(f"{path} holds no items; the file is empty or damaged")
    if offline["sort_field"] is not None:
        rows.sort(key=lambda row: row[offline["sort_field"]])
    return [
        Article(str(row[offline["id_field"]]), row[offline["document_field"]], row[offline["summary_field"]])
        for row in rows
    ]
