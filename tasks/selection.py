"""Is a hub selection the paper's? `shuffle(seed=42).select(range(1000))` only gives the paper's items if the
pinned dataset revision keeps the row order the authors' `datasets` 2.11 saw, which nothing else checks.

Two checks, both configured in the task's `selection_check` and both recorded in metrics.json
(`selection.selection_check`):
- `ranked`: rows known to sit at a given position of the paper's selection (XSum: the 79 rows of
  `xsum/xsum_official_subset_79.jsonl`, whose `official_rank` was derived from the official split file and
  numpy's `default_rng(42).permutation`) must be found there: same summary (whitespace-normalized, since that
  file collapsed newlines) and, where the file has one, the same id.
- `ids_sha256`: the sha256 of the selected ids joined by newlines, compared with the committed value once one
  exists; until then the status says `unverified` (CNN/DM: no independent list of the paper's items exists).
A mismatch of either is an error naming what differs: the run would not measure the paper's items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from replicate.errors import MissingFile
from tasks.base import data_dir


class SelectionMismatchError(ValueError):
    """The hub selection is not the paper's; the message names the first differences and what to check."""


def _normalized(text: Any) -> str:
    return " ".join(str(text).split())


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the ids joined by newlines, in selection order."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _check_ranked(selected: Sequence[Mapping[str, str]], ranked: Mapping[str, Any], title: str) -> dict:
    path = data_dir() / ranked["file"]
    if not path.is_file():
        raise MissingFile(
            f"{title}: selection_check.ranked.file {path} not found (data directory: data_dir()); provide it, "
            "or set task.selection_check.ranked=null to skip the check (the run then records no rank check)"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    mismatches, checked = [], 0
    for row in rows:
        rank = row[ranked["rank_field"]]
        if rank is None or rank >= len(selected):
            continue
        checked += 1
        item = selected[rank]
        same_summary = _normalized(item["summary"]) == _normalized(row[ranked["summary_field"]])
        file_id = row.get(ranked["id_field"])
        same_id = file_id is None or str(file_id) == item["id"]
        if not (same_summary and same_id):
            expected = (
                f"id {file_id}"
                if file_id is not None
                else f"summary {_normalized(row[ranked['summary_field']])[:40]!r}"
            )
            mismatches.append(f"position {rank}: expected {expected}, found id {item['id']}")
    if mismatches:
        raise SelectionMismatchError(
            f"{title}: {len(mismatches)} of the {checked} rows of {path} are not at their {ranked['rank_field']} "
            f"in this selection ({'; '.join(mismatches[:3])}): the hub revision's row order differs from the "
            "paper's. Check task.hub.revision (and the datasets version's shuffle)"
        )
    return {"ranked_file": str(path), "ranked_checked": checked, "ranked_status": "match"}


def check_selection(
    selected: Sequence[Mapping[str, str]], check: Mapping[str, Any], title: str
) -> dict[str, Any]:
    """Check the hub selection (`selected`: each item's `id` and `summary`, in selection order) against the
    configured `selection_check`; returns what metrics.json records, or raises SelectionMismatchError."""
    digest = ids_digest([item["id"] for item in selected])
    result: dict[str, Any] = {"items": len(selected), "ids_sha256": digest, "expected_ids_sha256": None}
    if check["ranked"] is not None:
        result.update(_check_ranked(selected, check["ranked"], title))
    expected = check["ids_sha256"]
    if expected is not None:
        if digest != expected:
            raise SelectionMismatchError(
                f"{title}: the selected ids hash to {digest}, not the committed task.selection_check.ids_sha256 "
                f"{expected}: this hub revision selects other items than the paper's. Check task.hub.revision"
            )
        result["expected_ids_sha256"] = expected
    if expected is not None:
        result["status"] = "verified"
    elif check["ranked"] is not None:
        result["status"] = "ranks_verified"  # the ranked rows match; the other ids have no reference yet
    else:
        result["status"] = "unverified"
    return result
