"""The residual stream of the full model, one sub-block at a time, and single sub-blocks applied to any state.

A Llama decoder layer is two sub-blocks on the residual stream h (shapes (1, T, hidden) throughout):

    attention sub-block:  h -> h + self_attn(input_layernorm(h))
    MLP sub-block:        h -> h + mlp(post_attention_layernorm(h))

Sub-block j of the ordered list (attention 0, MLP 0, attention 1, MLP 1, ...) maps state j to state j + 1;
state 0 is the token embeddings and state 2L the last layer's output (before the final norm). A skipped
sub-block is the identity (its pre-norm skipped too), exactly as `replicate.core.skipping.skip_sublayers`.

`apply_sub_block` runs a decoder layer with its other sub-block skipped (through `skip_sublayers`), with the
keyword arguments (rotary position embeddings, causal mask) that the model's own forward passed to its
layers, captured once per sequence by `layer_arguments`. So the states here are the model's own numbers,
not a re-implementation of the layer (`tests/test_search_selectors.py` checks the last state against the
model's output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from replicate.core.skipping import SkipPlan, decoder_layers, skip_sublayers

SubBlock = tuple[str, int]  # (kind, layer): ("attention", 3) or ("mlp", 3)


class _Captured(Exception):
    """Stops the model's forward once the first layer's inputs are captured."""


def sub_block_order(num_layers: int) -> list[SubBlock]:
    """Sub-blocks in the order the residual stream passes them: attention 0, MLP 0, attention 1, ..."""
    return [(kind, layer) for layer in range(num_layers) for kind in ("attention", "mlp")]


@dataclass
class LayerInputs:
    """What the model's forward passes to every decoder layer for one sequence of T tokens.

    embeddings: state 0, (1, T, hidden). arguments: the layers' keyword arguments (position embeddings,
    attention mask, position ids; no cache)."""

    embeddings: torch.Tensor
    arguments: dict[str, Any]


@torch.inference_mode()
def layer_inputs(model: nn.Module, token_ids: torch.Tensor) -> LayerInputs:
    """Capture layer 0's input and keyword arguments for `token_ids` (1, T) without running any layer."""
    captured: dict[str, Any] = {}

    def hook(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        captured["kwargs"] = {key: value for key, value in kwargs.items() if key != "hidden_states"}
        raise _Captured

    handle = decoder_layers(model)[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=token_ids, use_cache=False)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "hidden" not in captured:
        raise RuntimeError("the model's forward never reached its first decoder layer")
    return LayerInputs(captured["hidden"], captured["kwargs"])


@torch.inference_mode()
def apply_sub_block(
    model: nn.Module, block: SubBlock, hidden: torch.Tensor, inputs: LayerInputs
) -> torch.Tensor:
    """State after sub-block `block` applied to `hidden` (1, T, hidden) -> (1, T, hidden)."""
    kind, layer = block
    other = SkipPlan(mlp=(layer,)) if kind == "attention" else SkipPlan(attention=(layer,))
    with skip_sublayers(model, other):
        output = decoder_layers(model)[layer](hidden, **inputs.arguments)
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def residual_stream(model: nn.Module, inputs: LayerInputs) -> list[torch.Tensor]:
    """The full model's states 0 .. 2L for one sequence: 2L + 1 tensors of shape (1, T, hidden)."""
    states = [inputs.embeddings]
    for block in sub_block_order(model.config.num_hidden_layers):
        states.append(apply_sub_block(model, block, states[-1], inputs))
    return states


def mean_cosine_similarity(
    first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], start: Sequence[int]
) -> float:
    """Mean over the scored rows (rows from `start[i]` on, pooled over sequences i) of the cosine similarity
    of two states; first[i], second[i]: (1, T_i, hidden)."""
    similarities = [
        torch.nn.functional.cosine_similarity(a[0, s:].float(), b[0, s:].float(), dim=-1)
        for a, b, s in zip(first, second, start)
    ]
    return float(torch.cat(similarities).mean())
