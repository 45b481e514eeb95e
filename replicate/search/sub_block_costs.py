"""Per-sub-block costs for the `predicted_speedup` objective: a draft step's cost as a function of the skip set.

`replicate.cost_model` times the passes of one fixed skip plan. The search needs the draft step of every
plan it tries, so it measures once, at the start, two profiles with `measure_cost_profile`: one with every
attention sub-block skipped and one with every MLP sub-block skipped. Decoder layers have identical shapes,
so each skipped attention (MLP) sub-block saves 1/L of the first (second) profile's saving. A plan's draft
step is then

    draft_step(plan) = full_step - |plan.attention| * attention_saving - |plan.mlp| * mlp_saving

and the prediction itself is `cost_model.predicted_speedup`, with the prefill left out (it is the same for the
method and autoregressive decoding, and leaving it out keeps the objective free of wall-clock noise).

`source: weights` needs no timing at all: costs proportional to the weights a pass reads (a memory-bound
model: a verification pass over k + 1 tokens costs one full step). It is deterministic and the same on
every machine, but only as right as that assumption.

All times are seconds (`weights`: fractions of a full step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import replicate.cost_model as cost_model
from replicate.core.decoding import DecodeResult
from replicate.core.models import LoadedModel
from replicate.core.skipping import SkipPlan, decoder_layers
from replicate.cost_model import measure_cost_profile

COST_SOURCES = ("measured", "weights")


def measure_sub_block_costs(
    loaded: LoadedModel, context_length: int, max_draft_tokens: int, repeats: int, warmup: int
) -> dict[str, Any]:
    """Full step, verify passes (k + 1 tokens, k = 0..K) and the saving of one skipped attention and one
    skipped MLP sub-block, timed with `context_length` tokens in the KV cache."""
    num_layers = loaded.model.config.num_hidden_layers
    all_layers = tuple(range(num_layers))
    profiles = {
        kind: measure_cost_profile(
            dataclasses.replace(loaded, plan=plan), context_length, max_draft_tokens, repeats, warmup
        )
        for kind, plan in (("attention", SkipPlan(attention=all_layers)), ("mlp", SkipPlan(mlp=all_layers)))
    }
    # Each profile times its own full step; its saving is taken against that one, and the two are averaged
    # for the full step and the verify passes the prediction uses.
    savings = {
        kind: max(0.0, profile["full_step_s"] - profile["draft_step_s"]) / num_layers
        for kind, profile in profiles.items()
    }
    verify = zip(profiles["attention"]["verify_s"], profiles["mlp"]["verify_s"])
    return {
        "source": "measured",
        "num_layers": num_layers,
        "context_length": context_length,
        "full_step_s": (profiles["attention"]["full_step_s"] + profiles["mlp"]["full_step_s"]) / 2,
        "verify_s": [(a + b) / 2 for a, b in verify],
        "attention_saving_s": savings["attention"],
        "mlp_saving_s": savings["mlp"],
        "profiles": {kind: _without_samples(profile) for kind, profile in profiles.items()},
    }


def _without_samples(profile: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in profile.items() if key != "samples_s"}


def weight_sub_block_costs(loaded: LoadedModel, max_draft_tokens: int) -> dict[str, Any]:
    """Costs proportional to weights read per pass, as fractions of a full step (see module docstring)."""
    model = loaded.model
    layers = decoder_layers(model)

    def count(module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    attention = count(layers[0].self_attn) + count(layers[0].input_layernorm)
    mlp = count(layers[0].mlp) + count(layers[0].post_attention_layernorm)
    # The LM head always runs; the embedding lookup reads one row, so it does not count.
    head = count(model.get_output_embeddings()) + count(model.model.norm)
    full = len(layers) * (attention + mlp) + head
    return {
        "source": "weights",
        "num_layers": len(layers),
        "full_step_s": 1.0,
        "verify_s": [1.0] * (max_draft_tokens + 1),
        "attention_saving_s": attention / full,
        "mlp_saving_s": mlp / full,
    }


def profile_for_plan(costs: Mapping[str, Any], plan: SkipPlan) -> dict[str, Any]:
    """A `replicate.cost_model` profile for `plan`: full step, this plan's draft step, verify passes."""
    draft_step = (
        costs["full_step_s"]
        - len(plan.attention) * costs["attention_saving_s"]
        - len(plan.mlp) * costs["mlp_saving_s"]
    )
    return {
        "full_step_s": costs["full_step_s"],
        "draft_step_s": draft_step,
        "verify_s": list(costs["verify_s"]),
    }


def predicted_speedup(results: Sequence[DecodeResult], costs: Mapping[str, Any], plan: SkipPlan) -> float:
    """The paper's speedup (mean time per token, autoregressive / self-speculative) the cost profile predicts
    for these decodes' acceptance traces, prefill left out."""
    cycles = [
        {"drafted": r.drafted, "full_forwards": r.full_forwards, "new_tokens": r.num_new_tokens}
        for r in results
    ]
    return trace_predicted_speedup(cycles, costs, plan)


def trace_predicted_speedup(
    cycles: Sequence[Mapping[str, Any]], costs: Mapping[str, Any], plan: SkipPlan
) -> float:
    """`predicted_speedup` of a logged trace (a trial's `cycles`: per prompt `drafted`, `full_forwards`,
    `new_tokens`), so that any trial can be scored again with another cost profile."""
    traces = [
        cost_model.Trace(cycle["new_tokens"], cycle["full_forwards"], cycle["drafted"], prefill_time=0.0)
        for cycle in cycles
    ]
    return cost_model.predicted_speedup(traces, None, profile_for_plan(costs, plan))
