"""Running the GPU check: the sections of `sections` in that order under one time budget; results.json and
report.md are rewritten as soon as each section ends, so a run cut off by its lease keeps what finished.

A section that raises is recorded as failed (with its error) and the check goes on with the next one; a
section whose estimate (`estimates_s`, generous) no longer fits in what is left of `budget_s` is recorded as
skipped, so the check ends within its budget unless a section overruns its estimate. Either makes the exit
status 1, as does any failed check; nothing is left out of the report silently.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from replicate.errors import MissingResource
from replicate.gpu_check.config import SECTIONS, GpuCheckConfig
from replicate.gpu_check.environment import gpu_environment
from replicate.gpu_check.report import write_report
from replicate.gpu_check.sections import (
    end_to_end_section,
    host_sync_section,
    lossless_section,
    shapes_section,
)
from replicate.run.rundir import write_atomic


def require_check_device(cfg: GpuCheckConfig, rehearse: bool) -> torch.device:
    """The device of the check; without CUDA (and not rehearsing) a clear error before anything runs."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MissingResource(
            f"gpu-check needs a CUDA GPU (device={cfg.device}) but torch.cuda.is_available() is False on this "
            f"machine (torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run it on a GPU machine "
            "with a CUDA build of torch, or rehearse the same code on the CPU with tiny shapes: "
            "`make gpu-check REHEARSE=1` (python -m replicate.gpu_check --rehearse)."
        )
    if device.type == "cpu" and not rehearse:
        raise MissingResource(
            "gpu-check with device=cpu measures nothing a GPU user needs; use --rehearse for the CPU rehearsal"
        )
    return device


def _section(
    results: dict[str, Any],
    name: str,
    started: float,
    budget_s: float,
    function: Callable[[], dict],
    estimate_s: float = 0.0,
) -> None:
    elapsed = time.perf_counter() - started
    if elapsed + estimate_s > budget_s:
        results["sections"][name] = {
            "status": "skipped",
            "reason": f"its estimate of {estimate_s:.0f} s does not fit the budget of {budget_s:.0f} s "
            f"({elapsed:.0f} s elapsed)",
        }
        print(f"gpu-check: {name} SKIPPED ({results['sections'][name]['reason']})", flush=True)
        return
    print(f"gpu-check: {name} ...", flush=True)
    section_start = time.perf_counter()
    try:
        section = {"status": "ok", **function()}
    except Exception as error:  # recorded and reported; the other sections still run
        section = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
    section["wall_s"] = time.perf_counter() - section_start
    results["sections"][name] = section
    print(f"gpu-check: {name} {section['status']} in {section['wall_s']:.1f} s", flush=True)


def _plan(cfg: GpuCheckConfig, device: torch.device, output_dir: Path) -> dict[str, Callable[[], dict]]:
    """Every section the check knows, by name; `cfg.sections` picks which run and in what order."""
    plan: dict[str, Callable[[], dict]] = {
        f"lossless_{dtype}": lambda dtype=dtype: lossless_section(cfg, device, dtype)
        for dtype in ("float32", "bfloat16", "float16")
    }
    plan["shapes"] = lambda: shapes_section(cfg)
    plan["host_syncs"] = lambda: host_sync_section(cfg, device)
    plan["end_to_end"] = lambda: end_to_end_section(cfg, device, output_dir)
    assert set(plan) == set(SECTIONS), "a section without a function, or a function without a section"
    return plan


def _conclude(results: dict[str, Any], cfg: GpuCheckConfig, wall_s: float, complete: bool) -> None:
    """Checks so far and the verdict. An incomplete result (written after each section, so that a run cut
    off by its lease still returns what finished) has no verdict: `passed` is None."""
    checks = {
        label: check
        for section in results["sections"].values()
        for label, check in section.get("checks", {}).items()
    }
    if complete:
        checks[f"the check ended within its budget of {cfg.budget_s:.0f} s"] = {
            "passed": wall_s <= cfg.budget_s,
            "detail": f"{wall_s:.0f} s",
        }
    results["wall_s"] = wall_s
    results["complete"] = complete
    results["pending"] = [name for name in cfg.sections if name not in results["sections"]]
    results["checks"] = checks
    incomplete = [name for name, section in results["sections"].items() if section["status"] != "ok"]
    failed = [label for label, check in checks.items() if check["passed"] is False]
    results["passed"] = (not incomplete and not failed) if complete else None


def _write(results: dict[str, Any], output_dir: Path) -> None:
    write_atomic(output_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    write_report(results, output_dir / "report.md")


def run_check(cfg: GpuCheckConfig, settings: dict[str, Any], rehearse: bool) -> tuple[dict[str, Any], int]:
    """Run the sections of `cfg.sections` in order; results.json and report.md in cfg.output_dir are rewritten
    after the environment and after every section. Returns (results, exit status)."""
    started = time.perf_counter()
    device = require_check_device(cfg, rehearse)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "rehearsal": rehearse,
        "settings": settings,
        "not_selected": [name for name in SECTIONS if name not in cfg.sections],
        "environment": gpu_environment(device, cfg.attention),
        "sections": {},
    }
    _conclude(results, cfg, time.perf_counter() - started, complete=False)
    _write(results, output_dir)
    plan = _plan(cfg, device, output_dir)
    for name in cfg.sections:
        _section(results, name, started, cfg.budget_s, plan[name], cfg.estimates_s.get(name, 0.0))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        last = name == cfg.sections[-1]
        _conclude(results, cfg, time.perf_counter() - started, complete=last)
        _write(results, output_dir)
    checks = results["checks"]
    print(
        f"gpu-check: {'PASSED' if results['passed'] else 'NOT PASSED'} in {results['wall_s']:.0f} s; "
        f"{output_dir}/report.md"
    )
    for name, section in results["sections"].items():
        if section["status"] != "ok":
            print(f"  section {name}: {section['status']}: {section.get('error') or section.get('reason')}")
    for label, check in checks.items():
        if check["passed"] is False:
            print(f"  check failed: {label}: {check['detail']}")
    return results, 0 if results["passed"] else 1
