"""The GPU section of the benchmark: random-weight models with LLaMA-2-7B and LLaMA-2-13B shapes in bf16.

Random weights have the cost of the real models (same shapes, same kernels) but not their redundancy, so
the acceptance rates of their drafts mean nothing. This section therefore measures the device's cost
profile and asks what the paper's own acceptance rates (LLaMA-2-13B, CNN/DM, Table 3) would give on it,
plus the implementation's efficiency and the peak memory of a decode at full draft length.

Skip sets: LLaMA-2-13B uses the authors' published set (conf/model/llama2_13b.yaml). The paper published
none for LLaMA-2-7B; its shape gets a PLACEHOLDER, the 13B pattern stretched to its depth, which
has the right cost (about the same share of sub-blocks skipped) but was never searched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from replicate.bench.contenders import ForwardClock, memory_table, ours, race
from replicate.config import compose_config
from replicate.core.methods import AUTOREGRESSIVE, Decoder, SelfSpeculativeConfig
from replicate.core.models import DTYPES, LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.cost_model import cost_model_metrics, measure_cost_profile, speedup_for_acceptance

SHAPES: dict[str, dict[str, int]] = {
    "llama2_7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
    "llama2_13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40},
}  # fmt: skip
# Paper Table 3 (LLaMA-2-13B, CNN/DM, greedy, fixed K): (K, acceptance rate, measured speedup on an A100).
PAPER_FIXED_K = ((2, 0.924, 1.37), (4, 0.865, 1.44), (6, 0.807, 1.42), (8, 0.748, 1.36))
REFERENCE_SKIP_MODEL = "llama2_13b"


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError(
            "gpu_shapes=true (--gpu-shapes) builds LLaMA-2-7B/13B-shaped models in bf16 on a CUDA GPU, but "
            "torch.cuda.is_available() is False on this machine. Run it on a GPU machine, or leave "
            "gpu_shapes=false for the CPU sections."
        )
    return torch.device("cuda")


def reference_skip_plan() -> SkipPlan:
    """The published LLaMA-2-13B skip set, from its model config."""
    skip = compose_config([f"model={REFERENCE_SKIP_MODEL}"]).model.skip
    return SkipPlan.from_lists(skip.attention, skip.mlp)


def proportional_skip_plan(num_layers: int) -> SkipPlan:
    """PLACEHOLDER for models without a searched set: the 13B skip pattern stretched to `num_layers` layers.
    Each layer gets the share of the 13B layers at the same relative depths that are skipped (weighted by
    overlap); the highest-scoring layers are skipped, as many as keep the 13B share of skipped sub-blocks."""
    reference = reference_skip_plan()
    reference_layers = SHAPES[REFERENCE_SKIP_MODEL]["num_hidden_layers"]
    scale = reference_layers / num_layers

    def stretched(ids: tuple[int, ...]) -> list[int]:
        def score(layer: int) -> float:
            start, end = layer * scale, (layer + 1) * scale
            return sum(max(0.0, min(end, i + 1) - max(start, i)) for i in ids) / scale

        count = round(len(ids) / scale)
        return sorted(sorted(range(num_layers), key=lambda layer: (-score(layer), layer))[:count])

    return SkipPlan.from_lists(stretched(reference.attention), stretched(reference.mlp))


def shape_skip_plan(shape_name: str, num_layers: int) -> tuple[SkipPlan, str]:
    if shape_name == REFERENCE_SKIP_MODEL:
        return reference_skip_plan(), "paper (llama2_13b, conf/model/llama2_13b.yaml)"
    return proportional_skip_plan(num_layers), (
        "PLACEHOLDER: no published set for this shape; the llama2_13b pattern stretched to this depth"
    )


def build_shape_model(shape: Mapping[str, int], dtype: torch.dtype, device: torch.device, seed: int = 0):
    """A random Llama of the given shape, built on the meta device (no memory) and then materialised
    directly on `device` in `dtype`, so a 13B model never needs 13B parameters of host memory."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    defaults = {"num_key_value_heads": shape["num_attention_heads"], "vocab_size": 32000}
    config = LlamaConfig(
        **{**defaults, **shape},
        max_position_embeddings=4096,
        attn_implementation="eager",  # the paper's setting
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(dtype)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.02, generator=generator)
    # to_empty leaves buffers uninitialised too: rebuild the rotary frequencies from the config.
    model.model.rotary_emb = LlamaRotaryEmbedding(config).to(device)
    return model.eval()


def _shape_section(name: str, cfg: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    shape = SHAPES[name]
    model = build_shape_model(shape, DTYPES[cfg["dtype"]], device, cfg["seed"])
    plan, skip_source = shape_skip_plan(name, shape["num_hidden_layers"])
    loaded = LoadedModel(
        name, model, None, plan, frozenset(), device, 4096, {"source": "random", "shape": shape}
    )
    max_draft_tokens = cfg["max_draft_tokens"]
    profile = measure_cost_profile(
        loaded, cfg["context_length"], max_draft_tokens, cfg["profile_repeats"], cfg["profile_warmup"]
    )
    # Random weights: acceptance is meaningless, but the trace still tells how efficient the loop is.
    # No EOS, fixed K (threshold 0): every decode runs to max_new_tokens at full draft length.
    sampling = SamplingConfig()
    autoregressive = ours("ours_autoregressive", Decoder(AUTOREGRESSIVE, loaded, sampling))
    fixed_k = SelfSpeculativeConfig(
        "self_speculative", max_draft_tokens=max_draft_tokens, threshold=0.0, draft_confidence="paper"
    )
    speculative = ours("ours_self_speculative", Decoder(fixed_k, loaded, sampling))
    generator = torch.Generator().manual_seed(cfg["seed"])
    prompts = [
        torch.randint(32000, (1, cfg["context_length"]), generator=generator).to(device)
        for _ in range(cfg["n_prompts"])
    ]
    clock = ForwardClock(model, device)
    try:
        outcomes = race([autoregressive, speculative], prompts, cfg["max_new_tokens"], 1, 1, 8, clock)
    finally:
        clock.remove()
    methods = [outcome.record for outcome in outcomes["ours_self_speculative"]]
    baselines = [outcome.record for outcome in outcomes["ours_autoregressive"]]
    efficiency = dataclasses.asdict(cost_model_metrics(methods, baselines, profile))
    efficiency.pop("cost_profile")
    memory = memory_table(
        [autoregressive, speculative], prompts[0], cfg["max_new_tokens"], 1, "ours_autoregressive"
    )
    section = {
        "shape": shape,
        "dtype": cfg["dtype"],
        "skip": {"attention": list(plan.attention), "mlp": list(plan.mlp), "source": skip_source},
        "profile": profile,
        "paper_acceptance_predictions": [
            {
                "max_draft_tokens": k,
                "acceptance_rate": rate,
                "predicted_speedup": speedup_for_acceptance(profile, k, rate),
                "paper_measured_speedup_13b": paper_speedup,
            }
            for k, rate, paper_speedup in PAPER_FIXED_K
            if k <= max_draft_tokens
        ],
        "random_weight_efficiency": efficiency,
        "memory": memory,
    }
    del loaded, model, autoregressive, speculative
    torch.cuda.empty_cache()
    return section


def run_gpu_shapes(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The GPU section for every shape in `cfg["shapes"]`; a clear error without CUDA."""
    device = require_cuda()
    unknown = [name for name in cfg["shapes"] if name not in SHAPES]
    if unknown:
        raise ValueError(f"unknown gpu shapes {unknown}; known: {', '.join(SHAPES)}")
    return {
        "device": torch.cuda.get_device_name(device),
        "note": "random weights: only costs, efficiency and memory are meaningful, not acceptance",
        "shapes": {
            name: _shape_section(name, cfg, device) for name in tqdm(cfg["shapes"], desc="gpu shapes")
        },
    }
