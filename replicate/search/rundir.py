"""A search's run directory: what its trials depend on (`search_setup.json`), the trial log (`trials.jsonl`),
and starting over or resuming (`prepare_run_dir`). Shared by the Bayesian search (`replicate.search.run`)
and the selectors (`replicate.search.selectors.selection`)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from replicate.core.models import LoadedModel
from replicate.core.skipping import SkipPlan
from replicate.run.environment import environment
from replicate.run.rundir import read_jsonl, write_atomic, write_jsonl
from replicate.search.evaluators import COSTS_FILE
from replicate.search.objective import DevPrompt
from replicate.search.optimizer import STATE_FILE
from replicate.search.outputs import SUMMARY_FILE

LOG_FILE = "trials.jsonl"
SETUP_FILE = "search_setup.json"
# Settings that may change between sessions of one search: how long to go on and how to show it.
SESSION_KEYS = ("iterations", "time_budget_minutes", "resume", "warmup_decodes", "progress_bar")
# The settings sections of the selectors and of the teacher-forced estimate: part of a search's setup only
# where they are used (so that a search recorded before they existed still resumes).
SELECTOR_SECTIONS = ("cosine_similarity", "knapsack", "dynamic_programming")
# Keys added after searches were first recorded, with the values those searches ran under.
RECORDED_BEFORE = {"strategy": "bayesian", "acceptance_estimate": "decoded"}
COST_PROFILE_RECORDED_BEFORE = {"file": None}


def _in_use(key: str, search: Mapping[str, Any]) -> bool:
    if key in SELECTOR_SECTIONS:
        return key == search["strategy"]
    if key == "teacher_forced":  # the knapsack's single-skip agreements are teacher-forced too
        return search["acceptance_estimate"] == "teacher_forced" or search["strategy"] == "knapsack"
    return True


def search_setup(
    cfg: DictConfig, loaded: LoadedModel, prompts: list[DevPrompt], warm: list[SkipPlan]
) -> dict:
    """What the trials of a search depend on; a resumed search must match it."""
    search = OmegaConf.to_container(cfg.search, resolve=True)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("skip")  # only a warm start uses it, and the resolved warm start is recorded below
    return {
        "model": model,
        "num_layers": loaded.model.config.num_hidden_layers,
        "method": OmegaConf.to_container(cfg.method, resolve=True),
        "sampling": OmegaConf.to_container(cfg.sampling, resolve=True),
        "seed": cfg.seed,
        "dev_prompts": [{"task": prompt.task, "sha256": prompt.sha256} for prompt in prompts],
        "search": {
            key: value for key, value in search.items() if key not in SESSION_KEYS and _in_use(key, search)
        },
        "warm_start_plans": [{"attention": list(p.attention), "mlp": list(p.mlp)} for p in warm],
    }


def _check_setup(run_dir: Path, setup: dict) -> None:
    path = run_dir / SETUP_FILE
    previous = json.loads(path.read_text())["setup"]
    previous["search"] = {**RECORDED_BEFORE, **previous["search"]}
    previous["search"]["cost_profile"] = {
        **COST_PROFILE_RECORDED_BEFORE,
        **previous["search"]["cost_profile"],
    }
    if previous != setup:
        differing = sorted(
            key for key in setup.keys() | previous.keys() if previous.get(key) != setup.get(key)
        )
        raise ValueError(
            f"{run_dir} holds a search with other settings ({', '.join(differing)} differ); only "
            f"{', '.join(SESSION_KEYS)} may change when resuming. Use another directory "
            "(hydra.run.dir=...) or search.resume=false to start this one over."
        )


def read_trials(run_dir: Path) -> list[dict[str, Any]]:
    """The logged trials; a last line torn by a kill is dropped (that trial runs again)."""
    return read_jsonl(run_dir / LOG_FILE)


def prepare_run_dir(run_dir: Path, resume: bool, setup: dict, loaded: LoadedModel) -> list[dict[str, Any]]:
    """Start the directory over (no resume, or no setup recorded) or check it matches; returns the logged
    trials, with the log rewritten without a torn last line so that appending stays line-aligned."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume or not (run_dir / SETUP_FILE).exists():
        for name in (LOG_FILE, STATE_FILE, COSTS_FILE, SETUP_FILE, SUMMARY_FILE):
            (run_dir / name).unlink(missing_ok=True)
        record = {"setup": setup, "environment": environment(loaded.device)}
        write_atomic(run_dir / SETUP_FILE, json.dumps(record, indent=2) + "\n")
        return []
    _check_setup(run_dir, setup)
    trials = read_trials(run_dir)
    write_jsonl(run_dir / LOG_FILE, trials)
    return trials


def trial_record(
    index: int, kind: str, plan: SkipPlan, measured: Mapping[str, Any], point: Any, **logged: Any
) -> dict[str, Any]:
    """One line of the trial log: the set, its measurements (`evaluator.measurement_keys`), what the caller
    logs beside them (`reused_from`, `suggest_time_s`, `evaluate_time_s`, a selector's score), the time and
    the optimizer's point (2L,)."""
    return {
        "trial": index,
        "kind": kind,
        "attention": list(plan.attention),
        "mlp": list(plan.mlp),
        "num_skipped": plan.num_skipped,
        **measured,
        **logged,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "params": point.tolist(),
    }
