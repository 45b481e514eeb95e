"""Small builders shared by the tests."""

from __future__ import annotations

from replicate.core.models import _random_model
from replicate.core.skipping import SkipPlan

TINY_SIZES = {"hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 512}


def tiny_model(
    layers: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    attention: str,
    plan: SkipPlan,
    seed: int = 0,
    output_scale: float = 0.1,
):
    """A random fp32 Llama whose skipped sub-blocks are damped (so drafts are accepted sometimes)."""
    cfg = {
        **TINY_SIZES,
        "vocab_size": vocab,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "attn_implementation": attention,
        "seed": seed,
        "skip_output_scale": output_scale,
    }
    import torch

    model, _ = _random_model(cfg, torch.float32, plan)
    return model.eval()
