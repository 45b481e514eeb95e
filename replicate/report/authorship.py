"""What `replicate report` may overwrite: only files it wrote itself. Every file it writes is listed in
`report.manifest.json` beside them; before writing, any existing file at one of its paths that the manifest
does not list (e.g. the gpu-check's own report.md, or a user's notes) is refused by name, and nothing is
written. A report.md from before the manifest existed is recognised by its first line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from replicate.errors import DataError

MANIFEST = "report.manifest.json"
WRITER = "replicate report"
_LEGACY_HEADER = "# Replication report:"


def _expand(out: Path, names: Sequence[str]) -> list[str]:
    """Relative paths of the existing files at `names` ("dir/" stands for every file under it)."""
    found = []
    for name in names:
        path = out / name
        if name.endswith("/"):
            if path.is_dir():
                found += sorted(str(p.relative_to(out)) for p in path.rglob("*") if not p.is_dir())
        elif path.exists():
            found.append(name)
    return found


def written_files(out: Path) -> set[str]:
    """The files a previous report wrote into `out` (empty when none did)."""
    manifest = Path(out) / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            raise DataError(
                f"{manifest} is damaged (not JSON); delete it only if {out} holds nothing else"
            ) from None
        if not isinstance(data, dict) or data.get("written_by") != WRITER:
            raise DataError(f"{manifest} was not written by {WRITER}")
        return set(data.get("files", []))
    report = Path(out) / "report.md"
    if report.is_file() and report.read_text().startswith(_LEGACY_HEADER):
        return set(
            _expand(Path(out), ("report.md", "report.csv", "figures/", "spec_bench/", "wandb_report.json"))
        )
    return set()


def check_authorship(out: Path, names: Sequence[str]) -> None:
    """Refuse (DataError) when a file at one of `names` in `out` exists and was not written by a report."""
    out = Path(out)
    foreign = sorted(set(_expand(out, names)) - written_files(out))
    if foreign:
        raise DataError(
            f"{out} already holds {', '.join(foreign)}, not written by {WRITER} (not in {MANIFEST}); nothing was "
            "written. Write the report elsewhere (--out DIR) or move those files"
        )


def record_authorship(out: Path, names: Sequence[str]) -> None:
    """Add the files now at `names` in `out` to its manifest (call after writing them)."""
    out = Path(out)
    files = sorted(written_files(out) | set(_expand(out, names)))
    text = json.dumps({"written_by": WRITER, "files": files}, indent=2) + "\n"
    temporary = out / f".{MANIFEST}.tmp"
    temporary.write_text(text)
    temporary.replace(out / MANIFEST)
