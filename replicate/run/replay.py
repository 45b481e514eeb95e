"""Where a greedy method first differs from its baseline: the baseline's top-two logits there, replayed."""

from __future__ import annotations

import torch

from replicate.core.decoding import forward
from replicate.core.kv_cache import make_cache
from replicate.core.models import LoadedModel


@torch.inference_mode()
def baseline_top_two(
    loaded: LoadedModel, prompt_ids: torch.Tensor, baseline_tokens: list[int], position: int
) -> tuple[float, float]:
    """(margin, top logit): the baseline's gap between its top two logits where the method first differs, and
    its top logit there. The baseline's decode is replayed the way it ran (prefill, then one token at a time),
    so in bf16 the margin is the one the baseline itself saw, not that of another kernel path (a one-pass
    recomputation moved margins by up to 4 ulps on SmolLM2; docs/replication.md). A gap within a few units
    in the last place of the dtype at the top logit is a numerical near-tie (expected in bf16); a large gap
    points at a bug (`replicate.run.metrics.divergence_verdict`). Costs `position` one-token forwards, only
    for samples that differ."""
    model, device = loaded.model, prompt_ids.device
    # The baseline's own cache kind: a static cache runs other attention kernels than a dynamic one.
    cache = make_cache(loaded.kv_cache, model.config, prompt_ids.shape[1] + position + 1)
    logits = forward(model, prompt_ids, cache, 0, last_only=True)[0]
    for step in range(position):
        token_ids = torch.tensor([[baseline_tokens[step]]], device=device)
        logits = forward(model, token_ids, cache, prompt_ids.shape[1] + step, last_only=True)[0]
    top_two = torch.topk(logits.float(), 2).values
    return float(top_two[0] - top_two[1]), float(top_two[0])
