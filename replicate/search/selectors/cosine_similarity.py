"""`search.strategy=cosine_similarity`: skip the sub-blocks that change the hidden state least (no search).

In the style of Draft on the Fly (Metel et al., EMNLP 2024 Findings), which drops the attention sub-layers
whose output is most similar to their input: for every candidate sub-block, the cosine similarity between
its input and output residual state (`residual_stream`), averaged over the drafting positions of the dev
sequences (each dev prompt followed by the full model's greedy continuation; the rows of the continuation
are scored, the prompt is context). A similarity near 1 means the sub-block barely moves the hidden state,
so skipping it should barely change the draft. The sets skipping the k most similar candidates, k from
`search.min_skipped` to `search.max_skipped`, are the family the selection scores with the search's
objective. `search.cosine_similarity.kinds` limits the ranking to attention (as Draft on the Fly) or MLP.

Departures from Draft on the Fly: it ranks per prompt at inference time; here the ranking is computed once
from the dev prompts, like the Bayesian search's set, and MLP sub-blocks can be ranked too.
"""

from __future__ import annotations

from collections.abc import Sequence

from replicate.search.selectors.residual_stream import SubBlock, mean_cosine_similarity, sub_block_order
from replicate.search.space import SUB_BLOCK_KINDS


def sub_block_similarities(
    streams: Sequence[Sequence], scored_from: Sequence[int], num_layers: int
) -> dict[SubBlock, float]:
    """Cosine similarity of every sub-block's input and output state.

    streams[i]: the 2L + 1 residual states of dev sequence i, each (1, T_i, hidden); rows from
    scored_from[i] on are scored."""
    similarities = {}
    for index, block in enumerate(sub_block_order(num_layers)):
        before = [stream[index] for stream in streams]
        after = [stream[index + 1] for stream in streams]
        similarities[block] = mean_cosine_similarity(before, after, scored_from)
    return similarities


def ranked_candidates(
    similarities: dict[SubBlock, float], candidates: Sequence[SubBlock], kinds: Sequence[str]
) -> list[SubBlock]:
    """Candidates of the given kinds, most similar (most redundant) first; ties go to the lower index in
    the space's order (attention before MLP, then by layer)."""
    unknown = sorted(set(kinds) - set(SUB_BLOCK_KINDS))
    if unknown or not kinds:
        raise ValueError(f"search.cosine_similarity.kinds must be a non-empty subset of {SUB_BLOCK_KINDS}")
    eligible = [block for block in candidates if block[0] in kinds]
    order = {block: index for index, block in enumerate(candidates)}
    return sorted(eligible, key=lambda block: (-similarities[block], order[block]))


def cosine_family(ranking: Sequence[SubBlock], min_skipped: int, max_skipped: int) -> list[list[SubBlock]]:
    """The sets skipping the k first-ranked sub-blocks, k = min_skipped .. min(max_skipped, len(ranking))."""
    most = min(max_skipped, len(ranking))
    if min_skipped > most:
        raise ValueError(
            f"search.min_skipped={min_skipped} but only {len(ranking)} sub-blocks are ranked (candidates of "
            "search.cosine_similarity.kinds)"
        )
    return [list(ranking[:count]) for count in range(min_skipped, most + 1)]
