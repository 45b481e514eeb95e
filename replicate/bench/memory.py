"""Peak memory of a decode: the CUDA caching allocator's counters on a GPU, the process's peak RSS elsewhere.

`peak_memory` is the one place memory is measured (bench memory section, the GPU shapes, gpu-check). On CUDA
it reads every visible device, so a model spread over several GPUs by a `device_map` is counted whole.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from replicate.bench.contenders import Contender

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_PROC_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _proc_kib(field_name: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def memory_method(device: torch.device) -> str | None:
    """How `peak_memory` measures on this device, or None when it cannot."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated (tensor memory of the caching allocator, summed over GPUs)"
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return "peak RSS (VmHWM of /proc/self/status, reset via /proc/self/clear_refs after gc and malloc_trim)"


def peak_memory(call: Callable[[], Any], device: torch.device) -> dict[str, int]:
    """Memory held before `call` (resident_bytes: weights, interpreter, caches kept) and its peak during
    `call` (peak_bytes); extra_bytes = peak - resident is what the decode itself needed at most.

    CUDA: the caching allocator's own counters. CPU (Linux): the process's peak resident set, whose
    high-water mark the kernel resets on request; freed heap is first handed back (malloc_trim) so that
    memory a previous decode left in the allocator does not hide this one's needs."""
    gc.collect()
    if device.type == "cuda":
        # Every visible GPU: with a device_map the model's layers (and their KV caches) are spread over them.
        # The sum of per-device peaks bounds the simultaneous total from above (peaks may be at other moments).
        gpus = [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
        for gpu in gpus:
            torch.cuda.synchronize(gpu)
            torch.cuda.reset_peak_memory_stats(gpu)
        torch.cuda.empty_cache()
        resident = sum(torch.cuda.memory_allocated(gpu) for gpu in gpus)
        call()
        for gpu in gpus:
            torch.cuda.synchronize(gpu)
        peak = sum(torch.cuda.max_memory_allocated(gpu) for gpu in gpus)
    else:
        _LIBC.malloc_trim(0)
        resident = _proc_kib("VmRSS") * 1024
        _CLEAR_REFS.write_text("5")
        call()
        peak = _proc_kib("VmHWM") * 1024
    return {"resident_bytes": resident, "peak_bytes": peak, "extra_bytes": max(peak - resident, 0)}


def memory_table(
    contenders: Sequence[Contender],
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    repeats: int,
    reference: str,
) -> dict[str, Any]:
    """Median peak memory of each contender over `repeats` rotating rounds, and its ratio to `reference`."""
    device = prompt_ids.device
    method = memory_method(device)
    if method is None:
        return {
            "method": None,
            "reason": "peak memory cannot be reset on this platform (no /proc/self/clear_refs)",
        }
    measured: dict[str, list[dict[str, int]]] = {contender.name: [] for contender in contenders}
    for round_index in tqdm(range(repeats), desc="peak memory", unit="round"):
        shift = round_index % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            measured[contender.name].append(
                peak_memory(lambda c=contender: c.decode(prompt_ids, max_new_tokens), device)
            )
    rows = {
        name: {key: int(statistics.median(m[key] for m in values)) for key in values[0]} | {"all": values}
        for name, values in measured.items()
    }
    base = rows[reference]
    for row in rows.values():
        row["peak_ratio_to_reference"] = row["peak_bytes"] / base["peak_bytes"]
        row["extra_ratio_to_reference"] = (
            row["extra_bytes"] / base["extra_bytes"] if base["extra_bytes"] else None
        )
    return {"method": method, "reference": reference, "prompt_tokens": prompt_ids.shape[1], "rows": rows}
