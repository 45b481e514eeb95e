"""Counting the host's waits for the device during a decode.

A host sync happens whenever Python reads a device value (`.item()`, `.tolist()`, `int(t)`, `float(t)`,
`bool(t)`, `.cpu()`, `.numpy()`). `count_host_reads` counts those calls at the Python level on any device
(so the CPU rehearsal checks the same thing), and on CUDA also counts the synchronizing CUDA calls that
torch's sync debug mode reports (which include any made inside libraries, not only Python-level reads).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy")


@dataclass
class HostReads:
    """Calls that read a tensor on the host (python_reads) and, on CUDA, synchronizing CUDA calls seen by
    torch's sync debug mode (cuda_syncs; None off CUDA)."""

    python_reads: int = 0
    cuda_syncs: int | None = None


@contextmanager
def count_host_reads(device: torch.device) -> Iterator[HostReads]:
    """Count host reads of tensors (of any device) inside the block; see the module docstring."""
    counts = HostReads()
    originals = {name: getattr(torch.Tensor, name) for name in _READS}

    def counting(name: str):
        original = originals[name]

        def wrapper(self, *args, **kwargs):
            counts.python_reads += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in _READS:
        setattr(torch.Tensor, name, counting(name))
    previous_mode = torch.cuda.get_sync_debug_mode() if device.type == "cuda" else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            yield counts
        if device.type == "cuda":
            counts.cuda_syncs = sum("synchronizing" in str(warning.message).lower() for warning in caught)
    finally:
        if previous_mode is not None:
            torch.cuda.set_sync_debug_mode(previous_mode)
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
