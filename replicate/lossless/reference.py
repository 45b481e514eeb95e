"""The ground truth of every lossless check and the models it runs on.

`reference_tokens` is `model.generate(do_sample=False)`'s output, the tokens every greedy method must
reproduce; `top_two_margin` is the full model's top-1 minus top-2 logit after a prefix (near 0 at a
divergence: a numerical near-tie; in fp32 a large margin means a bug). `TinyModel` describes a random tiny
Llama and `tiny_model` builds it, with the sub-blocks it skips damped (`replicate.core.models.
damp_sublayer_outputs`) so that a draft built by skipping them is accepted sometimes and rejected sometimes.
`MODELS` is the matrix of tiny models that the tests, the users' gate and gpu-check all run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import torch
from torch import nn

from replicate.core.models import random_model
from replicate.core.skipping import SkipPlan

# The model configs (conf/model/) both checks run: the random tiny Llama and SmolLM2-135M.
CHECK_MODELS = ("tiny_llama", "smollm2_135m")
TINY_SIZES = {"hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 512}


class TinyModel(NamedTuple):
    """A random tiny Llama (or Qwen2): depth, attention heads, key/value heads, vocabulary, attention
    implementation, the decoder layers whose attention / MLP sub-blocks its draft skips, and the architecture
    (`replicate.core.architectures`: llama or qwen2)."""

    layers: int
    heads: int
    kv_heads: int
    vocab: int
    attention: str
    skip_attention: tuple[int, ...] = ()
    skip_mlp: tuple[int, ...] = ()
    architecture: str = "llama"

    @property
    def plan(self) -> SkipPlan:
        return SkipPlan(self.skip_attention, self.skip_mlp)

    @property
    def label(self) -> str:
        prefix = "" if self.architecture == "llama" else f"{self.architecture}-"
        return prefix + (
            f"L{self.layers}-H{self.heads}/{self.kv_heads}-V{self.vocab}-{self.attention}"
            f"-skip{list(self.skip_attention)}/{list(self.skip_mlp)}"
        )


# Depths 2-8, full and grouped-query attention, vocabularies 258-1000, eager and SDPA, skip sets from
# empty to everything.
MODELS = [
    TinyModel(2, 4, 4, 258, "sdpa", (), ()),
    TinyModel(2, 4, 2, 320, "eager", (0,), ()),
    TinyModel(4, 4, 2, 320, "sdpa", (0,), (2,)),
    TinyModel(4, 4, 1, 1000, "eager", (1, 3), (0,)),
    TinyModel(6, 8, 8, 512, "sdpa", (1, 3), (0, 5)),
    TinyModel(6, 4, 2, 320, "eager", (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4)),
    TinyModel(8, 4, 2, 400, "sdpa", (0, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5, 6, 7)),
]
# Tiny random Qwen2s (q/k/v biases drawn at random, as the real Qwen2.5-Coder models carry biases).
QWEN2_MODELS = [
    TinyModel(2, 4, 2, 320, "sdpa", (0,), (1,), "qwen2"),
    TinyModel(4, 4, 1, 400, "eager", (1, 3), (0,), "qwen2"),
    TinyModel(6, 6, 2, 512, "sdpa", (0, 1, 2, 3, 4, 5), (0, 2, 4), "qwen2"),
]


def tiny_model(
    spec: TinyModel,
    seed: int = 0,
    output_scale: float = 0.1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The random Llama or Qwen2 `spec` describes (weights from `seed`), its skipped sub-blocks' output projections
    scaled by `output_scale`; built in fp32 and then cast, so the fp32 and bf16 matrices decode the same
    weights up to rounding. In eval mode."""
    cfg = {
        **TINY_SIZES,
        "vocab_size": spec.vocab,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "attn_implementation": spec.attention,
        "seed": seed,
        "skip_output_scale": output_scale,
        "architecture": spec.architecture,
    }
    model, _ = random_model(cfg, torch.float32, spec.plan)
    return model.to(device=device, dtype=dtype).eval()


def reference_tokens(
    model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int, eos: int | Collection[int] | None = None
) -> list[int]:
    """`model.generate(do_sample=False)`'s new tokens after `prompt_ids` (1, seq), stopping after any of
    `eos` (one id, several, or none): the ground truth."""
    eos_ids = [eos] if isinstance(eos, int) else sorted(eos or ())
    output = model.generate(
        input_ids=prompt_ids,
        attention_mask=torch.ones_like(prompt_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids or None,
        pad_token_id=0,
    )
    return output[0, prompt_ids.shape[1] :].tolist()


@torch.inference_mode()
def top_two_margin(model: nn.Module, prompt_ids: torch.Tensor, prefix: Sequence[int]) -> float:
    """The full model's top-1 minus top-2 logit for the token after prompt (1, seq) + `prefix`."""
    prefix_ids = torch.tensor([list(prefix)], dtype=prompt_ids.dtype, device=prompt_ids.device)
    ids = torch.cat([prompt_ids, prefix_ids], dim=1)
    top_two = torch.topk(model(input_ids=ids).logits[0, -1].float(), 2).values
    return float(top_two[0] - top_two[1])
