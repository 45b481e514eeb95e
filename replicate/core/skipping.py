"""Skipping attention and MLP sub-blocks of an unmodified transformers Llama, and the KV cache that goes with it.

A drafting forward pass is the same model with some sub-blocks replaced by the identity on the residual
stream: for a skipped attention sub-block the layer computes `residual + 0` (its pre-norm, projections and
KV-cache write are all skipped), likewise for a skipped MLP sub-block. `skip_sublayers` swaps the sub-modules
for the duration of a `with` block and always restores them, so the model object is never left altered
and no global state is involved.

Because skipped attention writes no KV, layers hold caches of different lengths while drafting.
`SkipAwareCache` sizes the attention mask and the positions from its longest layer (the non-skipped ones,
which are the only ones that attend), and `truncate_cache` cuts every layer back to the committed length
before verification.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from replicate.core.architectures import check_architecture


@dataclass(frozen=True)
class SkipPlan:
    """Which decoder layers' sub-blocks the draft pass skips (0-indexed layer ids)."""

    attention: tuple[int, ...] = ()
    mlp: tuple[int, ...] = ()

    @classmethod
    def from_lists(cls, attention: Sequence[int], mlp: Sequence[int]) -> SkipPlan:
        return cls(tuple(int(i) for i in attention), tuple(int(i) for i in mlp))

    def validate(self, num_layers: int) -> SkipPlan:
        """Raise ValueError for ids out of [0, num_layers) or repeated; return self."""
        for kind, ids in (("attention", self.attention), ("mlp", self.mlp)):
            bad = [i for i in ids if not 0 <= i < num_layers]
            if bad:
                raise ValueError(
                    f"skip {kind} ids {bad} are out of range for a model with {num_layers} layers "
                    f"(valid ids: 0..{num_layers - 1}); fix the model config's `skip.{kind}` list"
                )
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"skip {kind} ids {duplicates} appear more than once; list each layer once")
        return self

    def skips_everything(self, num_layers: int) -> bool:
        """Whether every attention and every MLP sub-block of a `num_layers`-layer model is skipped."""
        return set(self.attention) >= set(range(num_layers)) and set(self.mlp) >= set(range(num_layers))

    @staticmethod
    def skips_everything_message(num_layers: int) -> str:
        return (
            f"skips every attention and MLP sub-block of the {num_layers} layers, so the draft is the embedding "
            "alone and cannot predict anything; leave some layers out of the skip set"
        )

    @property
    def num_skipped(self) -> int:
        return len(self.attention) + len(self.mlp)


class _SkippedAttention(nn.Module):
    """Stands in for a skipped self-attention: contributes nothing and touches no cache."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, None]:
        # A 0-dim zero broadcasts over the residual: `residual + 0` is exactly `residual`.
        return hidden_states.new_zeros(()), None


class _SkippedMLP(nn.Module):
    """Stands in for a skipped MLP: contributes nothing."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.new_zeros(())


_SKIPPED_ATTENTION = _SkippedAttention()
_SKIPPED_MLP = _SkippedMLP()
_IDENTITY = nn.Identity()


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (`model.model.layers` for Llama-family models); a model whose
    config names an architecture the skip is not exact for is refused (`replicate.core.architectures`)."""
    config = getattr(model, "config", None)
    if config is not None:
        check_architecture(config, type(model).__name__)
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise TypeError(
            f"{type(model).__name__} has no `model.layers`; only Llama-family decoders are supported"
        )
    return layers


@contextmanager
def skip_sublayers(model: nn.Module, plan: SkipPlan) -> Iterator[None]:
    """Within the block, `model` runs as the draft model of `plan`; the original sub-modules are restored
    on exit, also when the block raises."""
    layers = decoder_layers(model)
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    replacements = [(i, "self_attn", _SKIPPED_ATTENTION, "input_layernorm") for i in plan.attention]
    replacements += [(i, "mlp", _SKIPPED_MLP, "post_attention_layernorm") for i in plan.mlp]
    try:
        for layer_id, block_name, stand_in, norm_name in replacements:
            layer = layers[layer_id]
            for name, module in ((block_name, stand_in), (norm_name, _IDENTITY)):
                # Write `_modules` directly: nn.Module.__setattr__ does bookkeeping we do not need per cycle.
                swapped.append((layer, name, layer._modules[name]))
                layer._modules[name] = module
        yield
    finally:
        for layer, name, original in reversed(swapped):
            layer._modules[name] = original


class SkipAwareCache(DynamicCache):
    """A DynamicCache whose mask size and query offset follow its longest layer.

    transformers sizes the attention mask from one reference layer (layer 0). While drafting, a skipped
    attention layer does not grow, so its length must not decide the mask of the layers that do attend.
    With all layers at equal length (prefill, verification, autoregressive decoding) it behaves exactly
    like DynamicCache.
    """

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return max((layer.get_seq_length() for layer in self.layers), default=0)

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.get_seq_length()

    def layer_lengths(self) -> list[int]:
        return [layer.get_seq_length() for layer in self.layers]


def truncate_cache(cache: DynamicCache, length: int) -> None:
    """Cut every layer's cache back to its first `length` positions (layers already shorter are kept)."""
    for layer in cache.layers:
        excess = layer.get_seq_length() - length
        if excess > 0:
            layer.crop(-excess)
