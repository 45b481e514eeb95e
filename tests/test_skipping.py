"""The skip mechanism: validated plans, exact identity on the residual, no KV writes, always restored."""

from __future__ import annotations

import pytest
import torch

from replicate.core.skipping import SkipAwareCache, SkipPlan, decoder_layers, skip_sublayers, truncate_cache
from tests.helpers import TinyModel, tiny_model


@pytest.mark.parametrize(
    "plan,message",
    [
        (SkipPlan((4,), ()), r"attention ids \[4\] are out of range .* 4 layers"),
        (SkipPlan((), (-1,)), r"mlp ids \[-1\] are out of range"),
        (SkipPlan((1, 1), ()), r"attention ids \[1\] appear more than once"),
    ],
)
def test_bad_plans_are_clear_errors(plan, message):
    with pytest.raises(ValueError, match=message):
        plan.validate(4)


def test_modules_are_restored_even_on_error():
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa"))
    before = [dict(layer._modules) for layer in decoder_layers(model)]
    with pytest.raises(RuntimeError, match="boom"), skip_sublayers(model, SkipPlan((0, 2), (1, 3))):
        assert decoder_layers(model)[0].self_attn is not before[0]["self_attn"]
        raise RuntimeError("boom")
    assert [dict(layer._modules) for layer in decoder_layers(model)] == before


def test_skipping_everything_leaves_only_embedding_norm_and_head():
    model = tiny_model(TinyModel(3, 4, 2, 320, "eager"))
    ids = torch.tensor([[256, 5, 6, 7]])
    with torch.inference_mode(), skip_sublayers(model, SkipPlan((0, 1, 2), (0, 1, 2))):
        logits = model(ids).logits
        direct = model.lm_head(model.model.norm(model.model.embed_tokens(ids)))
    assert torch.equal(logits, direct)


def test_skipped_attention_writes_no_kv_and_truncation_restores_lengths():
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa"))
    cache = SkipAwareCache(config=model.config)
    with torch.inference_mode():
        model(torch.tensor([[256, 1, 2]]), past_key_values=cache, use_cache=True)
        with skip_sublayers(model, SkipPlan((0, 3), ())):
            for position in (3, 4):
                model(
                    torch.tensor([[9]]),
                    position_ids=torch.tensor([[position]]),
                    past_key_values=cache,
                    use_cache=True,
                )
    assert cache.layer_lengths() == [3, 5, 5, 3]
    assert cache.get_seq_length() == 5  # mask sizing follows the layers that attend
    truncate_cache(cache, 3)
    assert cache.layer_lengths() == [3, 3, 3, 3]
