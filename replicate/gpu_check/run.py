"""Running the GPU check: every section in order under one time budget, then results.json and report.md.

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
from replicate.gpu_check.config import GpuCheckConfig
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


def run_check(cfg: GpuCheckConfig, settings: dict[str, Any], rehearse: bool) -> tuple[dict[str, Any], int]:
    """Run every section; write results.json and report.md to cfg.output_dir. Returns (results, exit status)."""
    started = time.perf_counter()
    device = require_check_device(cfg, rehearse)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "rehearsal": rehearse,
        "settings": settings,
        "environment": gpu_environment(device, cfg.attention),
        "sections": {},
    }
    budget = cfg.budget_s
    plan: list[tuple[str, Callable[[], dict]]] = []
    if "float32" in cfg.lossless.dtypes:
        plan.append(("lossless_float32", lambda: lossless_section(cfg, device, "float32")))
    plan.append(("host_syncs", lambda: host_sync_section(cfg, device)))
    plan.append(("shapes", lambda: shapes_section(cfg)))
    plan.append(("end_to_end", lambda: end_to_end_section(cfg, device, output_dir)))
    plan += [
        (f"lossless_{dtype}", lambda dtype=dtype: lossless_section(cfg, device, dtype))
        for dtype in cfg.lossless.dtypes
        if dtype != "float32"
    ]
    for name, function in plan:
        _section(results, name, started, budget, function, cfg.estimates_s.get(name, 0.0))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    wall_s = time.perf_counter() - started
    checks = {
        label: check
        for section in results["sections"].values()
        for label, check in section.get("checks", {}).items()
    }
    checks[f"the check ended within its budget of {budget:.0f} s"] = {
        "passed": wall_s <= budget,
        "detail": f"{wall_s:.0f} s",
    }
    results["wall_s"] = wall_s
    results["checks"] = checks
    incomplete = [name for name, section in results["sections"].items() if section["status"] != "ok"]
    failed = [label for label, check in checks.items() if check["passed"] is False]
    results["passed"] = not incomplete and not failed
    write_atomic(output_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    write_report(results, output_dir / "report.md")
    print(
        f"gpu-check: {'PASSED' if results['passed'] else 'NOT PASSED'} in {wall_s:.0f} s; {output_dir}/report.md"
    )
    for name in incomplete:
        print(
            f"  section {name}: {results['sections'][name]['status']}: {results['sections'][name].get('error') or results['sections'][name].get('reason')}"
        )
    for label in failed:
        print(f"  check failed: {label}: {checks[label]['detail']}")
    return results, 0 if results["passed"] else 1
