"""The one forward pass every loop, the cost profile and the bench run, and the device drain around clocks.

`forward` runs the model at explicit positions against a KV cache (`replicate.core.kv_cache`); `synchronize`
waits for queued device work (CUDA, MPS; nothing to wait for on the CPU) before a clock is read.
"""

from __future__ import annotations

import torch
from torch import nn

from replicate.core.kv_cache import KVCache


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def forward(
    model: nn.Module,
    token_ids: torch.Tensor,
    cache: KVCache,
    start: int,
    last_only: bool,
    num_logits: int | None = None,
) -> torch.Tensor:
    """Run `token_ids` (1, q) at positions start..start+q-1. Returns logits (q, vocab), or (1, vocab) when
    `last_only` (as generate's prefill does, so logits come from the same kernels as the library's), or those
    of the last `num_logits` positions (num_logits, vocab) when given (a prefill that also verifies drafts)."""
    positions = torch.arange(start, start + token_ids.shape[1], device=token_ids.device).unsqueeze(0)
    output = model(
        input_ids=token_ids,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=num_logits if num_logits is not None else (1 if last_only else 0),
    )
    return output.logits[0]
