"""Which attention implementations this machine can run, and switching a loaded model between them.

`model.attn_implementation` picks the implementation a model loads with. The bench and gpu-check profile a
model under several (`attention_implementation` switches it in place, weights untouched) to show whether a
fused kernel shrinks attention's share of a step, and with it the gain of skipping attention sub-blocks
(the paper's authors blame flash attention for speedups lost on other stacks).

Availability is decided in two steps and reported with its reason: `installed` asks transformers whether
the kernel's package is installed for this device (never downloading a hub kernel), and the caller then
runs the model once under it: an implementation that is installed but fails on this device or model is
reported as failed, with the error, and never silently replaced by another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def installed(name: str, device: torch.device) -> tuple[bool, str]:
    """Whether attention `name` can be tried on `device`, and why (or why not)."""
    from transformers.utils import import_utils

    if name == "eager":
        return True, "built into transformers"
    if name == "sdpa":
        return True, f"torch.nn.functional.scaled_dot_product_attention (torch {torch.__version__})"
    checks = {
        "flash_attention_2": ("is_flash_attn_2_available", "the flash-attn package (2.x)"),
        "flash_attention_3": ("is_flash_attn_3_available", "the flash-attn-3 package (flash_attn_interface)"),
        "flash_attention_4": ("is_flash_attn_4_available", "the flash-attn-4 package"),
        "flex_attention": ("is_torch_flex_attn_available", "torch.nn.attention.flex_attention"),
    }
    if name not in checks:
        raise ValueError(
            f"unknown attention implementation {name!r}; known: eager, sdpa, {', '.join(checks)}"
        )
    function_name, what = checks[name]
    if name.startswith("flash") and device.type != "cuda":
        return False, f"needs a CUDA device (this run is on {device.type})"
    if not getattr(import_utils, function_name)():
        return False, f"{what} is not installed for this torch/device (transformers.utils.{function_name})"
    return True, f"{what} (transformers.utils.{function_name})"


def current(model: nn.Module) -> str:
    return model.config._attn_implementation


@contextmanager
def attention_implementation(model: nn.Module, name: str) -> Iterator[None]:
    """Run `model` with attention implementation `name` within the block; the previous one is restored on
    exit, also on error."""
    previous = current(model)
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
