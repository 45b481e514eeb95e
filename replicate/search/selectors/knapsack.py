"""`search.strategy=knapsack`: the sub-blocks whose skipping saves the most time for a bounded loss of agreement.

In the style of KnapSpec (Cha et al., 2026): attention and MLP sub-blocks are separate items, each with
a cost saving from a measured per-device latency model and a value for the draft's faithfulness, and a
knapsack picks the draft. Here:

- saving_i: what skipping sub-block i saves per draft step, from the search's cost profile
  (`replicate.search.sub_block_costs`: attention_saving_s or mlp_saving_s, the same profile every
  strategy's predicted speedup uses);
- weight_i = -log a_i, where a_i is the teacher-forced top-1 agreement with the full model of the draft
  that skips sub-block i alone (`replicate.search.teacher_forced`, one draft pass per dev prompt). With
  independent damage, the agreement of a set is prod_i a_i, so a floor f on it is the budget
  sum_i weight_i <= -log f.

For every floor f in `search.knapsack.acceptance_floors`, a 0/1 knapsack maximizes the total saving within
that budget and between `search.min_skipped` and `search.max_skipped` items (exact DP over weights rounded
to 1/`weight_resolution`; equal savings go to the smaller weight). The distinct answers are the family the
selection scores with the search's objective. Each is also given the speedup the cost model predicts for
drafting K tokens at its product agreement (`cost_model.speedup_for_acceptance`), logged as its
`selector_score`.

Departures from KnapSpec: it re-solves per context length during decoding with latencies that grow with
the context and uses hidden-state cosine similarity as its acceptance proxy; here one profile (one context
length) and the measured single-skip agreement, computed once from the dev prompts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from replicate.cost_model import speedup_for_acceptance
from replicate.search.space import SearchSpace
from replicate.search.sub_block_costs import profile_for_plan

SubBlock = tuple[str, int]
# Agreements are floored here before the log: a sub-block whose removal destroys every prediction is
# infinitely heavy in theory, merely too heavy for any floor in practice.
SMALLEST_AGREEMENT = 1e-6
# Weight of the tie-break between equal savings (scaled to <= 1): far below any saving difference.
TIE_BREAK = 1e-9


def sub_block_saving(costs: Mapping, block: SubBlock) -> float:
    """Seconds (or, for `source: weights`, fractions of a full step) one skip of `block` saves per draft step."""
    return float(costs["attention_saving_s"] if block[0] == "attention" else costs["mlp_saving_s"])


def solve_knapsack(
    weights: Sequence[float],
    savings: Sequence[float],
    budget: float,
    min_items: int,
    max_items: int,
    resolution: int,
) -> list[int] | None:
    """Indices of the items that maximize the total saving with total weight <= budget and min_items ..
    max_items items (None when no such set exists). Weights are rounded up to 1/resolution units."""
    if resolution < 1:
        raise ValueError(f"search.knapsack.weight_resolution must be >= 1, got {resolution}")
    units = [math.ceil(weight * resolution - 1e-9) for weight in weights]
    capacity = math.floor(budget * resolution + 1e-9)
    count = len(weights)
    max_items = min(max_items, count)
    if capacity < 0 or min_items > max_items:
        return None
    # best[c, u]: the largest saving of exactly c items of total weight exactly u units (-inf: impossible).
    best = np.full((max_items + 1, capacity + 1), -np.inf)
    best[0, 0] = 0.0
    taken = np.zeros((count, max_items + 1, capacity + 1), dtype=bool)
    largest = max(savings, default=0.0) or 1.0
    for item, (unit, saving) in enumerate(zip(units, savings)):
        if unit > capacity:
            continue
        value = saving / largest - TIE_BREAK * unit  # savings scaled to <= 1, so the tie-break stays tiny
        for items in range(max_items, 0, -1):  # descending: every item is used at most once
            candidate = best[items - 1, : capacity + 1 - unit] + value
            better = candidate > best[items, unit:]
            best[items, unit:][better] = candidate[better]
            taken[item, items, unit:][better] = True
    feasible = best[min_items:]
    if not np.isfinite(feasible).any():
        return None
    items, total = np.unravel_index(np.argmax(feasible), feasible.shape)
    items = int(items) + min_items
    total = int(total)
    chosen = []
    for item in range(count - 1, -1, -1):  # walk back: the last item that improved (items, total)
        if items and taken[item, items, total]:
            chosen.append(item)
            items, total = items - 1, total - units[item]
    return sorted(chosen)


@dataclass(frozen=True)
class KnapsackBounds:
    """What bounds the knapsack's answers: the acceptance floors (one answer each), the number of skipped
    sub-blocks, the weights' rounding (1/`resolution`) and the K its predicted speedup drafts."""

    floors: Sequence[float]
    min_skipped: int
    max_skipped: int
    resolution: int
    max_draft_tokens: int


def knapsack_family(
    candidates: Sequence[SubBlock],
    agreements: Mapping[SubBlock, float],
    costs: Mapping,
    bounds: KnapsackBounds,
) -> list[dict]:
    """One knapsack answer per acceptance floor (duplicates dropped, floors in the given order): each a dict
    with `floor`, `skip` (the sub-blocks), `product_agreement` and `model_speedup` (see module docstring)."""
    floors = bounds.floors
    if not floors or any(not 0.0 < floor <= 1.0 for floor in floors):
        raise ValueError(
            f"search.knapsack.acceptance_floors must be non-empty values in (0, 1], got {floors}"
        )
    weights = [-math.log(max(agreements[block], SMALLEST_AGREEMENT)) for block in candidates]
    savings = [sub_block_saving(costs, block) for block in candidates]
    family, seen = [], set()
    for floor in floors:
        chosen = solve_knapsack(
            weights, savings, -math.log(floor), bounds.min_skipped, bounds.max_skipped, bounds.resolution
        )
        if chosen is None:
            continue
        blocks = [candidates[i] for i in chosen]
        key = tuple(blocks)
        if key in seen:
            continue
        seen.add(key)
        agreement = math.prod(agreements[block] for block in blocks)
        plan = SearchSpace.plan_of(blocks)
        speedup = speedup_for_acceptance(profile_for_plan(costs, plan), bounds.max_draft_tokens, agreement)
        family.append(
            {"floor": floor, "skip": blocks, "product_agreement": agreement, "model_speedup": speedup}
        )
    return family
