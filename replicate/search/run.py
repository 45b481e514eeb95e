"""One layer search in one run directory: set up, resume, run trials, write the outputs.

Files in the run directory (Hydra's output directory):
- `search_setup.json`: what the trials depend on (model, method, dev prompts' hashes, search settings) and
  the environment. A directory whose setup differs from the config is never resumed (nor mixed).
- `trials.jsonl`: one line per trial, appended and flushed (fsync) as soon as it is scored, so a kill loses
  at most the trial in progress; a line torn by the kill is dropped on resume.
- `optimizer_state.json`: the optimizer's state after the last trial (see `replicate.search.optimizer`).
- `cost_profile.json`: the per-sub-block costs (objective `predicted_speedup`), measured once and reused on
  resume so that the objective of every trial comes from the same profile.
- `best_skip.yaml`, `trace.png`, `summary.json`: written at the end (also after a time-budget stop).

`search.strategy` picks how sets are chosen: `bayesian` (the paper's search, this module) or one of the
selectors in `replicate.search.selectors` (cosine_similarity, knapsack, dynamic_programming), which share
this module's setup, run directory, evaluators and outputs. `search.acceptance_estimate` picks how a set is
scored: `decoded` (`objective.TrialEvaluator`) or `teacher_forced` (`teacher_forced.TeacherForcedEvaluator`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from replicate.core.models import load_model
from replicate.core.skipping import SkipPlan
from replicate.run.rundir import append_jsonl
from replicate.search.accounting import search_cost
from replicate.search.config import search_run_config
from replicate.search.evaluators import (
    build_evaluator,
    cost_profile,
)
from replicate.search.objective import TrialEvaluator, collect_dev_prompts
from replicate.search.optimizer import LayerOptimizer
from replicate.search.outputs import SNIPPET_FILE, write_outputs
from replicate.search.rundir import LOG_FILE, prepare_run_dir, search_setup, trial_record
from replicate.search.selectors.selection import run_selection
from replicate.search.space import SearchSpace
from replicate.search.teacher_forced import TeacherForcedEvaluator


def warm_start_plans(warm_start: Any, model_plan: SkipPlan, num_layers: int) -> list[SkipPlan]:
    """`search.warm_start`: null (none, the default), "model" (the model config's skip set), one set
    {attention: [...], mlp: [...]}, or a list of these. The original notebook always probed the published
    13B answer, which biases the search towards it."""
    if warm_start is None:
        return []
    entries = warm_start if isinstance(warm_start, (list, tuple)) else [warm_start]
    plans = []
    for entry in entries:
        if entry == "model":
            plans.append(model_plan)
        elif isinstance(entry, Mapping):
            plans.append(SkipPlan.from_lists(entry.get("attention", []), entry.get("mlp", [])))
        else:
            raise ValueError(
                f"search.warm_start entry {entry!r} is not 'model' or {{attention: [...], mlp: [...]}}"
            )
    return [plan.validate(num_layers) for plan in plans]


def _next_trial(
    layers: LayerOptimizer,
    evaluator: TrialEvaluator | TeacherForcedEvaluator,
    trials: list[dict[str, Any]],
    first_of_plan: dict[tuple, int],
    reuse_duplicate_plans: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Produce the next point and score it; returns the point (2L,) and its log record."""
    clock = time.perf_counter()
    kind, point = layers.next_point()
    suggest_seconds, clock = time.perf_counter() - clock, time.perf_counter()
    plan = layers.space.plan(point)
    key = (plan.attention, plan.mlp)
    earlier = first_of_plan.get(key) if reuse_duplicate_plans else None
    if earlier is None:
        measured = evaluator.evaluate(plan)
        first_of_plan[key] = len(trials)
    else:  # the same skip set was decoded before: its measurement stands (the log says so)
        measured = {name: trials[earlier][name] for name in evaluator.measurement_keys}
    if not np.isfinite(measured["objective"]):
        raise ValueError(f"trial {len(trials)} ({plan}) gave a non-finite objective {measured['objective']}")
    record = trial_record(
        len(trials),
        kind,
        plan,
        measured,
        point,
        reused_from=earlier,
        suggest_time_s=suggest_seconds,
        evaluate_time_s=time.perf_counter() - clock,
    )
    return point, record


@dataclass
class _Session:
    """One session of a Bayesian search: its directory, what proposes and what scores the sets, the trials
    (the logged ones first) and how many the search plans in all."""

    run_dir: Path
    layers: LayerOptimizer
    evaluator: TrialEvaluator | TeacherForcedEvaluator
    trials: list[dict[str, Any]]
    planned: int
    started: float = field(default_factory=time.perf_counter)


def _run_trials(session: _Session, search: DictConfig, name: str) -> bool:
    """Trials until the planned number or the time budget (then True); each is registered, logged and the
    optimizer state saved before the next one."""
    trials, layers = session.trials, session.layers
    first_of_plan = {
        (tuple(t["attention"]), tuple(t["mlp"])): t["trial"] for t in trials if t["reused_from"] is None
    }
    budget = search.time_budget_minutes
    if len(trials) < session.planned:
        session.evaluator.warm_up(search.warmup_decodes)
    progress = tqdm(
        total=session.planned,
        initial=len(trials),
        desc=f"search {name}",
        unit="trial",
        disable=not search.progress_bar,
    )
    stopped_by_budget = False
    while len(trials) < session.planned:
        if budget is not None and time.perf_counter() - session.started > budget * 60:
            stopped_by_budget = True
            break
        point, record = _next_trial(
            layers, session.evaluator, trials, first_of_plan, search.reuse_duplicate_plans
        )
        # Register, log, then save the state: a kill between the last two is repaired by a replay on resume.
        layers.register(point, record["objective"])
        append_jsonl(session.run_dir / LOG_FILE, record)
        layers.save(session.run_dir)
        trials.append(record)
        best = max(trial["objective"] for trial in trials)
        progress.set_postfix(
            best=f"{best:.4g}", last=f"{record['objective']:.4g}", skipped=record["num_skipped"]
        )
        progress.update(1)
    progress.close()
    return stopped_by_budget


def run_search(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume) the search `cfg` describes in `run_dir`; returns the summary (`summary.json`)."""
    search_run_config(cfg)  # every key typed and checked before anything loads (replicate.search.config)
    run_dir, search = Path(run_dir), cfg.search
    if search.strategy != "bayesian":
        return run_selection(cfg, run_dir)
    loaded = load_model(cfg.model)
    num_layers = loaded.model.config.num_hidden_layers
    space = SearchSpace.from_config(num_layers, OmegaConf.to_container(search, resolve=True))
    prompts = collect_dev_prompts(cfg)
    warm_start = search.warm_start
    if OmegaConf.is_config(warm_start):
        warm_start = OmegaConf.to_container(warm_start, resolve=True)
    warm = warm_start_plans(warm_start, loaded.plan, num_layers)
    trials = prepare_run_dir(run_dir, search.resume, search_setup(cfg, loaded, prompts, warm), loaded)

    evaluator = build_evaluator(cfg, loaded, prompts)
    evaluator.costs = cost_profile(cfg, loaded, evaluator.prompt_ids, run_dir)
    layers = LayerOptimizer(space, search, [space.point(plan) for plan in warm])
    replayed, exact = layers.resume(run_dir, trials) if trials else (0, True)
    planned = layers.initial_queue_length + search.iterations
    if trials:
        message = f"resuming {run_dir}: {len(trials)} logged trials registered, not decoded again"
        print(f"{message} ({replayed} replayed from the log)", flush=True)
    session = _Session(run_dir, layers, evaluator, trials, planned)
    stopped_by_budget = _run_trials(session, search, loaded.name)
    if not trials:
        raise ValueError("the search ran no trial (search.iterations=0 and nothing queued?)")
    extra = {
        "run_dir": str(run_dir),
        "planned_trials": planned,
        "stopped_by_time_budget": stopped_by_budget,
        "evaluated_this_session": evaluator.evaluations,
        "replayed_on_resume": replayed,
        "resume_exact": exact,
        "session_seconds": time.perf_counter() - session.started,
        "dev_prompts": [{"task": prompt.task, "sha256": prompt.sha256} for prompt in prompts],
        "strategy": "bayesian",
        "acceptance_estimate": search.acceptance_estimate,
        # Teacher-forced trials need the reference continuations first (decoded ones need nothing).
        "search_cost": search_cost(trials, getattr(evaluator, "setup_cost", None)),
    }
    summary = write_outputs(run_dir, trials, loaded.name, search.objective, extra)
    best = summary["best"]
    print(
        f"best: {search.objective} {best['objective']:.4g} at trial {best['trial']}: skip attention {best['attention']}, "
        f"mlp {best['mlp']}; snippet {run_dir / SNIPPET_FILE}",
        flush=True,
    )
    if stopped_by_budget:
        print(
            f"search.time_budget_minutes reached after {len(trials)}/{planned} trials; rerun the same command "
            f"(hydra.run.dir={run_dir}) to go on",
            flush=True,
        )
    return summary
