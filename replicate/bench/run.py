"""`python -m replicate.bench [model=<m>] [key=value ...] [--gpu-shapes]`: speed you can trust and explain.

Sections (conf/bench.yaml `sections`; definitions in docs/benchmarks.md):
- profile: the device's cost of a full step, a draft step and verify passes over k + 1 tokens.
- cost_model: the self-speculative method against our autoregressive loop; the speedup the cost model
  predicts from the method's own acceptance trace, efficiency, and overhead outside forward passes.
- parity: our autoregressive loop against `model.generate(do_sample=False)` (tokens/s ratio).
- peers: transformers' `assistant_early_exit` and `prompt_lookup_num_tokens` beside ours.
- memory: peak memory of one decode of every contender against our autoregressive loop.
- kv_cache: both of our loops with the other KV cache kind (dynamic / static) in the same race.
- attention: the cost profile under each available attention implementation (eager, SDPA, flash, ...).
- gpu_shapes (`--gpu-shapes` / gpu_shapes=true): LLaMA-2-7B/13B-shaped random models (gpu.device: cuda).
All contenders of one run race over the same prompts in a rotating order (replicate.bench.contenders).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from replicate.bench.config import bench_config
from replicate.bench.contenders import Contender, ForwardClock, Outcome, RaceSettings, race
from replicate.bench.gpu import proportional_skip_plan, require_device, run_gpu_shapes
from replicate.bench.lineup import build_contenders
from replicate.bench.memory import memory_table
from replicate.bench.profiles import (
    InterleavedProfiles,
    ProfilePlan,
    attention_profiles,
    kv_cache_profiles,
)
from replicate.bench.summary import (
    AUTOREGRESSIVE,
    check_targets,
    cost_model_section,
    forward_clock_section,
    kv_cache_section,
    other_kv_cache,
    parity_section,
    peers_section,
    speed_table,
    summary,
)
from replicate.cli import user_errors
from replicate.config import compose_config
from replicate.core.kv_cache import KV_CACHES
from replicate.core.models import LoadedModel, load_model
from replicate.core.prompts import encode_prompt
from replicate.cost_model import break_even_acceptance
from replicate.paths import CONF_DIR
from replicate.run.environment import environment
from replicate.run.rundir import write_atomic
from replicate.schema import ConfigError
from replicate.statistics import BootstrapConfig
from tasks import load_task


def compose_bench_config(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/bench.yaml with command-line style overrides (for tests and the Python API)."""
    return compose_config(overrides, name="bench")


def load_bench_model(cfg: DictConfig) -> tuple[LoadedModel, str]:
    """The model with its configured skip set, or the labelled placeholder when it has none."""
    loaded = load_model(cfg.model)
    source = str(cfg.model.skip.get("source", "model config"))
    if loaded.plan.num_skipped == 0:
        if not cfg.placeholder_skip_when_empty:
            raise ConfigError(
                f"model {loaded.name} has an empty skip set; run the layer search, pass model.skip.attention=[...] "
                "model.skip.mlp=[...], or set placeholder_skip_when_empty=true"
            )
        num_layers = loaded.model.config.num_hidden_layers
        loaded = dataclasses.replace(loaded, plan=proportional_skip_plan(num_layers))
        source = f"PLACEHOLDER: model has no skip set; llama2_13b pattern stretched to {num_layers} layers"
        print(f"warning: {source}", file=sys.stderr)
    return loaded, source


def profile_context_length(setting: int | str, prompts: Sequence[torch.Tensor], max_new_tokens: int) -> int:
    """`auto`: the mean cache length the decodes run at (mean prompt length + half the new tokens), so the
    profile prices the passes at the length the race actually sees."""
    if setting != "auto":
        return int(setting)
    mean_prompt = sum(prompt.shape[1] for prompt in prompts) / len(prompts)
    return round(mean_prompt + max_new_tokens / 2)


def run_bench(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Run the configured sections; write `bench_<model>.json` (and .png) to `output_dir`; return it."""
    config = bench_config(cfg)  # every value checked before any model loads
    sections, bootstrap = set(config.sections), config.bootstrap
    if cfg.gpu_shapes:
        require_device(cfg.gpu.device)  # fail before spending minutes on the CPU sections
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"model": cfg.model.name, "settings": OmegaConf.to_container(cfg, resolve=True)}
    if sections:
        result.update(_model_sections(cfg, sections, bootstrap))
    if cfg.gpu_shapes:
        result["gpu_shapes"] = run_gpu_shapes(OmegaConf.to_container(cfg.gpu, resolve=True))
    result.setdefault("environment", environment(torch.device(cfg.gpu.device if cfg.gpu_shapes else "cpu")))
    result["targets"] = check_targets(result)
    path = output_dir / (f"bench_{cfg.model.name}.json" if sections else "bench_gpu_shapes.json")
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    if cfg.plot and sections:
        from replicate.bench.plot import plot_bench  # matplotlib only when a figure is wanted

        plot_bench(result, path.with_suffix(".png"))
    print(summary(result))
    print(f"results: {path}")
    return result


@dataclass
class _Race:
    """The race of one bench run: who ran, over which prompts, what came out; `method_name`: the
    self-speculative contender's name."""

    contenders: list[Contender]
    prompts: list[torch.Tensor]
    outcomes: dict[str, list[Outcome]]
    method_name: str


def _model_sections(cfg: DictConfig, sections: set[str], bootstrap: BootstrapConfig) -> dict[str, Any]:
    loaded, skip_source = load_bench_model(cfg)
    samples = load_task(cfg.task).samples(cfg.n_prompts)
    encoded = [encode_prompt(loaded, sample.prompt, cfg.max_new_tokens) for sample in samples]
    prompts = [ids for ids, _ in encoded]
    plan = loaded.plan
    result: dict[str, Any] = {
        "environment": environment(loaded.device),
        "model_identity": loaded.identity,
        "skip": {"attention": list(plan.attention), "mlp": list(plan.mlp), "source": skip_source},
        "prompts": {
            "task": cfg.task.name,
            "ids": [s.id for s in samples],
            "tokens": [p.shape[1] for p in prompts],
        },
    }
    profile_cfg = cfg.profile
    settings = ProfilePlan(
        profile_context_length(profile_cfg.context_length, prompts, cfg.max_new_tokens),
        profile_cfg.max_draft_tokens,
        profile_cfg.repeats,
        profile_cfg.warmup,
        cfg.seed,
    )
    # Profiled before every round of the race and after the last; each round is priced by its neighbours.
    profiles = InterleavedProfiles(loaded, settings) if sections & {"profile", "cost_model"} else None
    contenders, method_name = build_contenders(cfg, loaded, sections)
    clock = ForwardClock(loaded.model, loaded.device)
    try:
        race_settings = RaceSettings(
            cfg.max_new_tokens, cfg.repeats, cfg.warmup.runs, cfg.warmup.max_new_tokens
        )
        outcomes = race(contenders, prompts, race_settings, clock, between=profiles)
    finally:
        clock.remove()  # memory is measured without the clock's hooks
    raced = _Race(contenders, prompts, outcomes, method_name)
    result["speed"] = speed_table(outcomes, {c.name: c.settings for c in contenders})
    if profiles is not None:
        profile = profiles.pooled()
        ks = range(1, profile_cfg.max_draft_tokens + 1)
        result["profile"] = {
            **profile,
            "break_even_acceptance": [break_even_acceptance(profile, k) for k in ks],
        }
    if "cost_model" in sections:
        run = _cost_model_run(cfg, loaded, result, sum(truncated for _, truncated in encoded))
        run["decoder_state"] = {c.name: c.state for c in contenders}[method_name]()
        sample_profiles = profiles.per_decode(len(outcomes[method_name]))
        race_metrics = cost_model_section(outcomes, method_name, profile, run, sample_profiles, bootstrap)
        result["cost_model"] = race_metrics.to_dict()
        result["forward_clock"] = forward_clock_section(outcomes, method_name, race_metrics)
    result.update(_other_sections(cfg, sections, loaded, settings, raced, result["speed"]))
    return result


def _cost_model_run(
    cfg: DictConfig, loaded: LoadedModel, result: dict[str, Any], truncated: int
) -> dict[str, Any]:
    """What the cost-model section records of the race's settings, as a run records them."""
    return {
        "model": loaded.name,
        "task": cfg.task.name,
        "method": cfg.method.name,
        "sampling": {"temperature": 0.0, "top_p": 1.0, "top_k": 0},
        "max_new_tokens": cfg.max_new_tokens,
        "identity_expected": True,
        "prompts_truncated": truncated,
        "skip": result["skip"],
        "environment": result["environment"],
        "model_identity": loaded.identity,
    }


def _other_sections(
    cfg: DictConfig,
    sections: set[str],
    loaded: LoadedModel,
    settings: ProfilePlan,
    raced: _Race,
    speed: dict[str, Any],
) -> dict[str, Any]:
    """The parity, peers, kv_cache, attention and memory sections: from the race and its speed table, and
    further profiles of the same model."""
    found: dict[str, Any] = {}
    outcomes, method_name = raced.outcomes, raced.method_name
    if "parity" in sections:
        found["parity"] = parity_section(speed)
    if "peers" in sections:
        found["peers"] = peers_section(speed, method_name)
    if "kv_cache" in sections:
        found["kv_cache"] = kv_cache_section(
            outcomes, method_name, loaded.kv_cache, other_kv_cache(loaded.kv_cache)
        )
        found["kv_cache"]["profiles"] = kv_cache_profiles(loaded, KV_CACHES, settings)
    if "attention" in sections:
        method_records = [outcome.record for outcome in outcomes[method_name]]
        baseline_records = [outcome.record for outcome in outcomes[AUTOREGRESSIVE]]
        found["attention"] = attention_profiles(
            loaded, list(cfg.attention.implementations), settings, (method_records, baseline_records)
        )
    if "memory" in sections:
        memory = memory_table(
            raced.contenders, raced.prompts[0], cfg.memory.max_new_tokens, cfg.memory.repeats, AUTOREGRESSIVE
        )
        if memory.get("rows"):
            memory["method_peak_ratio"] = memory["rows"][method_name]["peak_ratio_to_reference"]
        found["memory"] = memory
    return found


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench")
@user_errors
def _hydra_main(cfg: DictConfig) -> None:
    run_bench(cfg, Path(cfg.output_dir))


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    from replicate.overrides import run_checked

    argv = list(sys.argv[1:] if argv is None else argv)
    # `--gpu-shapes` reads better on a command line than the Hydra override it stands for.
    argv = ["gpu_shapes=true" if argument == "--gpu-shapes" else argument for argument in argv]
    return run_checked(argv, "bench", bench_config, _hydra_main)
