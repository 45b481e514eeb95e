"""The GPU section of the benchmark: random-weight models with LLaMA-2-7B and LLaMA-2-13B shapes in bf16.

The shapes, dtype and device come from config (`gpu` in conf/bench.yaml; gpu-check's `shapes`), so the very
same code runs at tiny shapes on the CPU (the rehearsal in tests and `gpu_check --rehearse`); only a CUDA
device that is asked for and missing stops it (`require_device`).

Random weights have the cost of the real models (same shapes, same kernels) but not their redundancy, so
the acceptance rates of their drafts mean nothing. This section therefore measures the device's cost
profile and asks what the paper's own acceptance rates (LLaMA-2-13B, CNN/DM, Table 3) would give on it,
plus the implementation's efficiency and the peak memory of a decode at full draft length.

Skip sets: a shape of LLaMA-2-13B's 40 layers uses the authors' published set (conf/model/llama2_13b.yaml).
The paper published none for LLaMA-2-7B (or any other depth); such a shape gets a PLACEHOLDER, the 13B
pattern stretched to its depth, which has the right cost (about the same share of sub-blocks skipped) but
was never searched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from replicate.bench.contenders import Contender, ForwardClock, Outcome, RaceSettings, ours, race
from replicate.bench.gpu_config import GpuShapesConfig, ShapeConfig, gpu_shapes_config, require_device
from replicate.bench.memory import memory_table
from replicate.bench.profiles import (
    InterleavedProfiles,
    ProfilePlan,
    attention_profiles,
    free_device_memory,
    kv_cache_profiles,
)
from replicate.config import compose_config
from replicate.core.methods import AUTOREGRESSIVE, Decoder, SelfSpeculativeConfig
from replicate.core.models import DTYPES, LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.cost_model import cost_model_metrics, speedup_for_acceptance

__all__ = ["GpuShapesConfig", "ShapeConfig", "require_device", "run_gpu_shapes", "shape_section"]

# Paper Table 3 (LLaMA-2-13B, CNN/DM, greedy, fixed K): (K, acceptance rate, measured speedup on an A100);
# and the adaptive draft-exit row (Tables 1 and 3): acceptance 0.919, speedup 1.57 (reference.yaml).
PAPER_FIXED_K = ((2, 0.924, 1.37), (4, 0.865, 1.44), (6, 0.807, 1.42), (8, 0.748, 1.36))
PAPER_ADAPTIVE = {"acceptance_rate": 0.919, "speedup": 1.57, "max_draft_tokens": 12}
REFERENCE_SKIP_MODEL = "llama2_13b"
REFERENCE_LAYERS = 40  # LLaMA-2-13B's depth, the one its published skip set is for


def reference_skip_plan() -> SkipPlan:
    """The published LLaMA-2-13B skip set, from its model config."""
    skip = compose_config([f"model={REFERENCE_SKIP_MODEL}"]).model.skip
    return SkipPlan.from_lists(skip.attention, skip.mlp)


def proportional_skip_plan(num_layers: int) -> SkipPlan:
    """PLACEHOLDER for models without a searched set: the 13B skip pattern stretched to `num_layers` layers.
    Each layer gets the share of the 13B layers at the same relative depths that are skipped (weighted by
    overlap); the highest-scoring layers are skipped, as many as keep the 13B share of skipped sub-blocks."""
    reference = reference_skip_plan()
    scale = REFERENCE_LAYERS / num_layers

    def stretched(ids: tuple[int, ...]) -> list[int]:
        def score(layer: int) -> float:
            start, end = layer * scale, (layer + 1) * scale
            return sum(max(0.0, min(end, i + 1) - max(start, i)) for i in ids) / scale

        count = round(len(ids) / scale)
        return sorted(sorted(range(num_layers), key=lambda layer: (-score(layer), layer))[:count])

    return SkipPlan.from_lists(stretched(reference.attention), stretched(reference.mlp))


def shape_skip_plan(num_layers: int) -> tuple[SkipPlan, str]:
    """The published LLaMA-2-13B set for a shape of its 40 layers, else that pattern stretched (labelled)."""
    if num_layers == REFERENCE_LAYERS:
        return reference_skip_plan(), "paper (llama2_13b, conf/model/llama2_13b.yaml)"
    return proportional_skip_plan(num_layers), (
        f"PLACEHOLDER: no published set for {num_layers} layers; the llama2_13b pattern stretched to this depth"
    )


def build_shape_model(
    shape: Mapping[str, int],
    dtype: torch.dtype,
    device: torch.device,
    seed: int = 0,
    attn_implementation: str = "eager",
):
    """A random Llama of the given shape (hidden_size, intermediate_size, num_hidden_layers,
    num_attention_heads; optional num_key_value_heads, vocab_size), built on the meta device (no memory)
    and then materialised directly on `device` in `dtype`, so a 13B model never needs 13B parameters of
    host memory."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    defaults = {"num_key_value_heads": shape["num_attention_heads"], "vocab_size": 32000}
    config = LlamaConfig(
        **{**defaults, **shape},
        max_position_embeddings=4096,
        attn_implementation=attn_implementation,
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


def paper_predictions(profile: Mapping[str, Any], max_draft_tokens: int) -> dict[str, Any]:
    """What the paper's LLaMA-2-13B acceptance rates would give on this profile (`speedup_for_acceptance`):
    each Table 3 row (fixed K) beside its measured speedup, and the adaptive row's acceptance at every fixed
    K = 1..max_draft_tokens beside its 1.57x. The adaptive method drafts a varying length per cycle, so no
    single K is its equivalent: the best K is an upper bound for its cycles at that acceptance."""
    adaptive = PAPER_ADAPTIVE["acceptance_rate"]
    per_k = [speedup_for_acceptance(profile, k, adaptive) for k in range(1, max_draft_tokens + 1)]
    return {
        "fixed_k": [
            {
                "max_draft_tokens": k,
                "acceptance_rate": rate,
                "predicted_speedup": speedup_for_acceptance(profile, k, rate),
                "paper_measured_speedup_13b": paper_speedup,
            }
            for k, rate, paper_speedup in PAPER_FIXED_K
            if k <= max_draft_tokens
        ],
        "adaptive": {
            "acceptance_rate": adaptive,
            "paper_measured_speedup_13b": PAPER_ADAPTIVE["speedup"],
            "predicted_speedup_per_k": per_k,
            "best_k": 1 + max(range(len(per_k)), key=per_k.__getitem__),
            "best_predicted_speedup": max(per_k),
        },
    }


def _shape_model(
    name: str, shape: ShapeConfig, cfg: GpuShapesConfig, device: torch.device
) -> tuple[LoadedModel, str]:
    """The random model of one shape with its skip plan, and where that plan comes from."""
    sizes = shape.sizes()
    model = build_shape_model(sizes, DTYPES[cfg["dtype"]], device, cfg["seed"], cfg["attn_implementation"])
    plan, skip_source = shape_skip_plan(shape.num_hidden_layers)
    identity = {"source": "random", "shape": sizes}
    return LoadedModel(
        name, model, None, plan, frozenset(), device, 4096, identity, cfg["kv_cache"]
    ), skip_source


def _race_our_loops(
    loaded: LoadedModel, cfg: GpuShapesConfig, profiles: InterleavedProfiles
) -> tuple[list[Contender], list[torch.Tensor], dict[str, list[Outcome]]]:
    """Our two loops raced over random prompts, a cost profile next to every round. Random weights:
    acceptance is meaningless, but the trace still tells how efficient the loop is. No EOS, fixed K
    (threshold 0): every decode runs to max_new_tokens at full draft length."""
    sampling = SamplingConfig()
    autoregressive = ours("ours_autoregressive", Decoder(AUTOREGRESSIVE, loaded, sampling))
    fixed_k = SelfSpeculativeConfig(
        "self_speculative", max_draft_tokens=cfg["max_draft_tokens"], threshold=0.0, draft_confidence="paper"
    )
    speculative = ours("ours_self_speculative", Decoder(fixed_k, loaded, sampling))
    generator = torch.Generator().manual_seed(cfg["seed"])
    vocab_size = loaded.model.config.vocab_size
    prompts = [
        torch.randint(vocab_size, (1, cfg["context_length"]), generator=generator).to(loaded.device)
        for _ in range(cfg["n_prompts"])
    ]
    clock = ForwardClock(loaded.model, loaded.device)
    try:
        settings = RaceSettings(cfg["max_new_tokens"], repeats=1, warmup_runs=1, warmup_tokens=8)
        outcomes = race([autoregressive, speculative], prompts, settings, clock, profiles)
    finally:
        clock.remove()
    return [autoregressive, speculative], prompts, outcomes


def shape_section(name: str, shape: ShapeConfig, cfg: GpuShapesConfig, device: torch.device) -> dict:
    """One shape: its cost profile interleaved with a race of our two loops (efficiency with an interval),
    the profile under each attention implementation and KV cache kind, the paper's acceptance priced on it,
    and peak memory. `cfg`: the bench's `gpu` section (or gpu-check's `shapes` section)."""
    loaded, skip_source = _shape_model(name, shape, cfg, device)
    settings = ProfilePlan(
        cfg["context_length"],
        cfg["max_draft_tokens"],
        cfg["profile_repeats"],
        cfg["profile_warmup"],
        cfg["seed"],
    )
    profiles = InterleavedProfiles(loaded, settings)
    contenders, prompts, outcomes = _race_our_loops(loaded, cfg, profiles)
    methods = [outcome.record for outcome in outcomes["ours_self_speculative"]]
    baselines = [outcome.record for outcome in outcomes["ours_autoregressive"]]
    profile = profiles.pooled()
    efficiency = dataclasses.asdict(
        cost_model_metrics(
            methods, baselines, profile, profiles.per_decode(len(methods)), bootstrap=cfg.bootstrap
        )
    )
    efficiency.pop("cost_profile")
    plan = loaded.plan
    section = {
        "shape": shape.sizes(),
        "dtype": cfg["dtype"],
        "attn_implementation": cfg["attn_implementation"],
        "configured_kv_cache": cfg["kv_cache"],
        "skip": {"attention": list(plan.attention), "mlp": list(plan.mlp), "source": skip_source},
        "profile": profile,
        "paper_acceptance_predictions": paper_predictions(profile, settings.max_draft_tokens),
        "random_weight_efficiency": efficiency,
        "identical": [m.tokens == b.tokens for m, b in zip(methods, baselines)],
        "attention": attention_profiles(
            loaded, cfg["attention"], settings, acceptance=PAPER_ADAPTIVE["acceptance_rate"]
        ),
        "kv_cache_profiles": kv_cache_profiles(loaded, cfg["kv_caches"], settings),
        "memory": memory_table(contenders, prompts[0], cfg["max_new_tokens"], 1, "ours_autoregressive"),
    }
    del loaded, contenders, outcomes, profiles  # every reference to the model, before emptying the cache
    free_device_memory(device)
    return section


def run_gpu_shapes(cfg: Any) -> dict[str, Any]:
    """The GPU section for every shape in `cfg.shapes` (name -> sizes) on `cfg.device`."""
    cfg = gpu_shapes_config(cfg)
    device = require_device(cfg.device)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "note": "random weights: only costs, efficiency and memory are meaningful, not acceptance",
        "shapes": {
            name: shape_section(name, shape, cfg, device)
            for name, shape in tqdm(cfg.shapes.items(), desc="gpu shapes")
        },
    }
