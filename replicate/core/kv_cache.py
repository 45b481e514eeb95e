"""The KV caches of the decoding loops: `dynamic` (grows by concatenation) and `static` (preallocated once).

`model.kv_cache` picks one; both loops, the cost profile and the bench take it from the loaded model.

- `dynamic`: `SkipAwareCache`, transformers' DynamicCache with the mask sized from the longest layer
  (`replicate.core.skipping`). Every new token concatenates onto each layer's keys and values, i.e. copies
  the whole cache of that layer: O(length) memory traffic per token and layer, and allocator churn.
- `static`: `StaticSkipAwareCache`. Each layer's keys and values are allocated once per decode at the full
  capacity the decode can need (prompt + max_new_tokens positions, known before it starts) and written in
  place; nothing is reallocated or copied afterwards.

Why not transformers' `StaticCache`: its layers hand attention the whole preallocated buffer and rely on
the mask to hide the unwritten tail, so every pass attends over max_cache_len positions (a different kernel
shape than generate's, and cost that does not follow the real length), and a layer's write position is a
device tensor. Here each layer keeps its own length as a host int (skipped attention layers lag while
drafting, exactly as in the dynamic cache), and `update` returns a view of the filled prefix, so attention
sees the same shapes as with the dynamic cache, the mask is sized from the longest layer, and truncation
(`truncate_cache`, `crop`) only moves the length back: the stale tail is never read, since a position is
always written before any pass attends to it.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from replicate.core.model_config import KV_CACHES
from replicate.core.skipping import SkipAwareCache


class CacheCapacityError(RuntimeError):
    """A static cache was asked to hold more positions than it was allocated for."""


class PreallocatedLayer(CacheLayerMixin):
    """One layer's keys and values, each (batch, kv_heads, capacity, head_dim), allocated on the first
    update on the device and in the dtype of the first keys it receives (so a layer placed on another
    device by a `device_map` keeps its cache there). `length` positions are filled."""

    is_sliding = False
    is_croppable = True
    is_compileable = False  # lengths are host ints; no torch.compile / CUDA-graph claim is made

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, key_dim = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states.new_empty((batch, heads, self.capacity, key_dim))
        self.values = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (batch, kv_heads, q, head_dim) at positions length..length+q-1; return views of the filled
        prefix, (batch, kv_heads, length + q, head_dim)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise CacheCapacityError(
                f"the static KV cache holds {self.capacity} positions but a pass needs {end}; the decode's "
                "capacity is prompt + max_new_tokens (a bug if reached from the decoding loops)"
            )
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.capacity

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last `-tokens_to_remove` positions (negative, as DynamicLayer.crop takes it)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of positions to remove, got {tokens_to_remove}")
        self.length = max(0, self.length + tokens_to_remove)

    def reset(self) -> None:
        self.length = 0


class StaticSkipAwareCache(Cache):
    """Preallocated layers, sized like `SkipAwareCache`: the mask and the query offset follow the longest
    layer, since layers whose attention the draft skips do not grow while drafting."""

    def __init__(self, num_layers: int, capacity: int):
        if capacity < 1:
            raise ValueError(f"a static KV cache needs a capacity >= 1, got {capacity}")
        super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])
        self.capacity = capacity

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return max((layer.length for layer in self.layers), default=0)

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.get_seq_length()

    def layer_lengths(self) -> list[int]:
        return [layer.length for layer in self.layers]


KVCache = SkipAwareCache | StaticSkipAwareCache


def make_cache(kind: str, model_config, capacity: int) -> KVCache:
    """A fresh cache of `kind` (`model.kv_cache`) for a model with this transformers config; `capacity`:
    the most positions one decode writes (the static cache allocates them on its first pass)."""
    if kind == "dynamic":
        return SkipAwareCache(config=model_config)
    if kind == "static":
        return StaticSkipAwareCache(model_config.num_hidden_layers, capacity)
    raise ValueError(f"kv_cache={kind!r} is not one of {', '.join(KV_CACHES)}; set model.kv_cache")
