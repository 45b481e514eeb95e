"""What the GPU check ran on: the run environment (`replicate.run.environment`) plus the GPU's driver,
memory and compute capability, the numeric settings that change fp32 results (TF32), and which attention
implementations this installation offers on the device."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import torch

from replicate.core.attention import installed
from replicate.run.environment import environment

KERNEL_PACKAGES = ("flash-attn", "flash-attn-3", "flash-attn-4", "kernels", "triton")


def driver_version() -> tuple[str | None, str]:
    """The NVIDIA driver version from `nvidia-smi`, or None and why not."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None, "nvidia-smi not found on PATH"
    try:
        out = subprocess.run(
            [executable, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"nvidia-smi failed: {error}"
    if out.returncode != 0:
        return None, f"nvidia-smi exited with {out.returncode}: {out.stderr.strip()[:200]}"
    return out.stdout.strip().splitlines()[0], "nvidia-smi"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_environment(device: torch.device, attention: Sequence[str]) -> dict[str, Any]:
    info = environment(device)
    info["kernel_packages"] = {package: _version(package) for package in KERNEL_PACKAGES}
    info["tf32"] = {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    info["attention_implementations"] = {
        name: dict(zip(("installed", "reason"), installed(name, device))) for name in attention
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["driver"], info["driver_source"] = driver_version()
        info["gpu_memory_bytes"] = properties.total_memory
        info["compute_capability"] = f"{properties.major}.{properties.minor}"
        info["cudnn"] = torch.backends.cudnn.version()
    return info
