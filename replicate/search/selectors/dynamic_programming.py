"""`search.strategy=dynamic_programming`: the skip set whose last hidden state stays closest to the full model's.

In the style of CLaSp (Chen et al., ACL 2025), computed once from the dev sequences instead of after every
verification. The residual stream passes the sub-blocks in order (attention 0, MLP 0, attention 1, ...).
For every sub-block j and every number k of skipped candidates so far, the table keeps one draft state
D[j][k] (per dev sequence, (1, T, hidden)) and the set that produced it:

    D[j][k] = the better of  apply(sub-block j, D[j-1][k])   (run it)
                        and  D[j-1][k-1]                     (skip it; candidates only)

"better" being the higher mean cosine similarity with the full model's state after sub-block j over the
drafting rows (the continuation; the prompt is context). Non-candidates always run. The answer for k is the
set behind D[2L][k]: one set per k from `search.min_skipped` to `search.max_skipped`, which the selection
then scores with the search's objective. Like CLaSp's, the recursion is approximate: keeping one state per
(j, k) assumes the best prefix for k skips stays the best after later layers.

The prompt rows of every draft state are reset to the full model's state after each step, so the
continuation attends to the prompt as drafting does (its KV comes from the full model's prefill).

Cost: each sub-block runs once per live k, about (max_skipped + 1) full passes over the dev sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from replicate.search.selectors.residual_stream import (
    LayerInputs,
    SubBlock,
    apply_sub_block,
    mean_cosine_similarity,
    sub_block_order,
)


@dataclass
class DynamicProgrammingResult:
    """skipped[k]: the chosen set with k skipped candidates; similarity[k]: its last-state mean cosine
    similarity with the full model; sub_block_calls: sub-block applications per dev sequence."""

    skipped: dict[int, list[SubBlock]]
    similarity: dict[int, float]
    sub_block_calls: int


def _with_prompt_rows(
    states: Sequence[torch.Tensor], full: Sequence[torch.Tensor], scored_from: Sequence[int]
) -> list[torch.Tensor]:
    """Draft states (1, T, hidden) whose prompt rows are the full model's."""
    fixed = []
    for draft, reference, start in zip(states, full, scored_from):
        draft = draft.clone()
        draft[:, :start] = reference[:, :start]
        fixed.append(draft)
    return fixed


@torch.inference_mode()
def skip_set_dynamic_programming(
    model: nn.Module,
    inputs: Sequence[LayerInputs],
    streams: Sequence[Sequence[torch.Tensor]],
    scored_from: Sequence[int],
    candidates: Sequence[SubBlock],
    max_skipped: int,
) -> DynamicProgrammingResult:
    """The DP over the sub-blocks of `model` (see the module docstring).

    inputs[i], streams[i]: layer inputs and full-model residual states 0 .. 2L of dev sequence i;
    rows from scored_from[i] on are scored. Returns sets for every reachable k <= max_skipped."""
    is_candidate = set(candidates)
    # k -> (states per sequence, skipped sub-blocks); state 0 is the embeddings, never skipped.
    table: dict[int, tuple[list[torch.Tensor], list[SubBlock]]] = {0: ([s[0] for s in streams], [])}
    calls = 0
    for index, block in enumerate(sub_block_order(model.config.num_hidden_layers)):
        target = [stream[index + 1] for stream in streams]
        applied = {}
        for count, (states, skipped) in table.items():
            outputs = [apply_sub_block(model, block, state, seq) for state, seq in zip(states, inputs)]
            applied[count] = (_with_prompt_rows(outputs, target, scored_from), skipped)
            calls += 1
        if block not in is_candidate:
            table = applied
            continue
        updated = {}
        for count in range(min(max_skipped, max(table) + 1) + 1):
            options = []
            if count in applied:
                options.append(applied[count])
            if count - 1 in table:  # skipping leaves the continuation rows as they were
                states, skipped = table[count - 1]
                options.append((_with_prompt_rows(states, target, scored_from), [*skipped, block]))
            if options:
                scores = [mean_cosine_similarity(states, target, scored_from) for states, _ in options]
                # The first option (running the sub-block) wins ties: skip only when that is strictly closer.
                updated[count] = options[max(range(len(options)), key=lambda i: (scores[i], -i))]
        table = updated
    finals = [stream[-1] for stream in streams]
    return DynamicProgrammingResult(
        skipped={count: skipped for count, (_, skipped) in sorted(table.items())},
        similarity={
            count: mean_cosine_similarity(states, finals, scored_from) for count, (states, _) in table.items()
        },
        sub_block_calls=calls,
    )
