"""What scores a skip set, and with which costs: the evaluator `search.acceptance_estimate` names (decoded:
`objective.TrialEvaluator`; teacher_forced: `teacher_forced.TeacherForcedEvaluator`), the per-sub-block
cost profile (measured, from the weights, or a shared file), and the checks that refuse a strategy or
estimate that cannot run before anything is loaded or written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.run.rundir import write_atomic
from replicate.search.dev_sequences import DevSequence
from replicate.search.objective import DevPrompt, TrialEvaluator, TrialSetup
from replicate.search.sub_block_costs import COST_SOURCES, measure_sub_block_costs, weight_sub_block_costs
from replicate.search.teacher_forced import TeacherForcedEvaluator

COSTS_FILE = "cost_profile.json"


def cost_profile(
    cfg: DictConfig, loaded: LoadedModel, evaluator_prompts: list, run_dir: Path, required: bool = False
) -> dict | None:
    """The per-sub-block costs (for predicted_speedup, or when `required`): the saved ones when resuming,
    else measured now."""
    search = cfg.search
    if search.objective != "predicted_speedup" and not required:
        return None
    path = run_dir / COSTS_FILE
    if path.exists():
        return json.loads(path.read_text())
    settings = search.cost_profile
    if settings.file is not None:  # one profile shared by several searches (e.g. the selection experiment)
        costs = json.loads(Path(settings.file).read_text())
        if costs["num_layers"] != loaded.model.config.num_hidden_layers:
            raise ValueError(f"search.cost_profile.file={settings.file} is a profile of another model")
        write_atomic(path, json.dumps(costs, indent=2) + "\n")
        return costs
    if settings.source not in COST_SOURCES:
        raise ValueError(
            f"search.cost_profile.source={settings.source!r} is not one of {', '.join(COST_SOURCES)}"
        )
    max_draft_tokens = cfg.method.max_draft_tokens
    if settings.source == "weights":
        costs = weight_sub_block_costs(loaded, max_draft_tokens)
    else:
        # Default: the cache length a search decode sees on average (mean prompt + half the new tokens).
        context = settings.context_length or int(
            np.mean([ids.shape[1] for ids in evaluator_prompts]) + search.max_new_tokens // 2
        )
        context = min(context, loaded.max_context - max_draft_tokens - 1)
        print(f"measuring the cost profile at {context} cached tokens ...", flush=True)
        costs = measure_sub_block_costs(loaded, context, max_draft_tokens, settings.repeats, settings.warmup)
    write_atomic(path, json.dumps(costs, indent=2) + "\n")
    return costs


def build_evaluator(
    cfg: DictConfig,
    loaded: LoadedModel,
    prompts: list[DevPrompt],
    sequences: list[DevSequence] | None = None,
) -> TrialEvaluator | TeacherForcedEvaluator:
    """The evaluator `search.acceptance_estimate` names (teacher_forced may reuse computed `sequences`); `cfg`
    has passed `replicate.search.config.search_run_config` (as `run_search` does first)."""
    search = cfg.search
    setup = TrialSetup(loaded, cfg.method, SamplingConfig(**cfg.sampling), prompts, search)
    if search.acceptance_estimate == "decoded":
        return TrialEvaluator(setup, cfg.seed)
    return TeacherForcedEvaluator(setup, sequences=sequences)
