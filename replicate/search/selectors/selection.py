"""One selector run in one run directory: prepare, build the family of sets, score each like a trial, write
the outputs of a search (`trials.jsonl`, `best_skip.yaml`, `trace.png`, `summary.json`) plus
`selection.json` (the selector's own measurements: similarities, agreements, DP scores, the family).

The same setup, directory rules and evaluators as the Bayesian search (`replicate.search.run`). Rerunning
the same command resumes: the family is computed again (deterministic: greedy, fp32) and sets already in
the log are not scored again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from replicate.core.models import LoadedModel, load_model
from replicate.run.rundir import append_jsonl, write_atomic
from replicate.search.accounting import PassCount, search_cost
from replicate.search.dev_sequences import DevSequence, reference_sequences
from replicate.search.evaluators import build_evaluator, cost_profile
from replicate.search.objective import TrialEvaluator, collect_dev_prompts
from replicate.search.outputs import SNIPPET_FILE, write_outputs
from replicate.search.rundir import LOG_FILE, prepare_run_dir, search_setup, trial_record
from replicate.search.selectors.cosine_similarity import (
    cosine_family,
    ranked_candidates,
    sub_block_similarities,
)
from replicate.search.selectors.dynamic_programming import skip_set_dynamic_programming
from replicate.search.selectors.knapsack import KnapsackBounds, knapsack_family
from replicate.search.selectors.residual_stream import layer_inputs, residual_stream
from replicate.search.space import SearchSpace
from replicate.search.teacher_forced import TeacherForcedEvaluator, teacher_forced_agreement

SELECTION_FILE = "selection.json"
# A selector's answer: its family of sets ({skip: [(kind, layer)...], score}) and what it measured.
Family = tuple[list[dict[str, Any]], dict[str, Any]]


@dataclass
class SelectorInputs:
    """What a selector works from: the search's config, the model, the search space, the dev sequences (the
    full model's continuations), the search's cost profile, and the pass count it charges what it runs to."""

    cfg: DictConfig
    loaded: LoadedModel
    space: SearchSpace
    sequences: list[DevSequence]
    profile: dict[str, Any]
    spent: PassCount


def _label(blocks) -> list[str]:
    return [f"{kind} {layer}" for kind, layer in blocks]


def _streams(loaded: LoadedModel, sequences: list[DevSequence], spent: PassCount):
    """Layer inputs and full-model residual states of every dev sequence (one full pass each)."""
    inputs, streams = [], []
    for sequence in sequences:
        ids = sequence.sequence_ids()
        inputs.append(layer_inputs(loaded.model, ids))
        streams.append(residual_stream(loaded.model, inputs[-1]))
        spent.full_forwards += 1
        spent.tokens += ids.shape[1]
    return inputs, streams


def _knapsack(given: SelectorInputs) -> Family:
    search, space = given.cfg.search, given.space
    agreements = {}
    for block in space.sub_blocks:
        agreements[block], probe = teacher_forced_agreement(
            given.loaded, given.sequences, space.plan_of([block]), search.teacher_forced.context
        )
        given.spent.add(probe)
    bounds = KnapsackBounds(
        list(search.knapsack.acceptance_floors),
        search.min_skipped,
        space.most_skipped,
        search.knapsack.weight_resolution,
        given.cfg.method.max_draft_tokens,
    )
    family = knapsack_family(space.sub_blocks, agreements, given.profile, bounds)
    details = {"single_skip_agreement": {" ".join(map(str, b)): a for b, a in agreements.items()}}
    return [{"skip": entry["skip"], "score": entry["model_speedup"], **entry} for entry in family], details


def _cosine_similarity(given: SelectorInputs) -> Family:
    search, space, sequences = given.cfg.search, given.space, given.sequences
    _, streams = _streams(given.loaded, sequences, given.spent)
    scored_from = [sequence.prompt_length for sequence in sequences]
    similarities = sub_block_similarities(streams, scored_from, given.loaded.model.config.num_hidden_layers)
    ranking = ranked_candidates(similarities, space.sub_blocks, list(search.cosine_similarity.kinds))
    family = [
        {"skip": blocks, "score": min(similarities[block] for block in blocks) if blocks else 1.0}
        for blocks in cosine_family(ranking, search.min_skipped, space.most_skipped)
    ]
    details = {
        "similarity": {" ".join(map(str, block)): value for block, value in similarities.items()},
        "ranking": _label(ranking),
    }
    return family, details


def _dynamic_programming(given: SelectorInputs) -> Family:
    model, sequences, spent = given.loaded.model, given.sequences, given.spent
    inputs, streams = _streams(given.loaded, sequences, spent)
    scored_from = [sequence.prompt_length for sequence in sequences]
    num_layers = model.config.num_hidden_layers
    result = skip_set_dynamic_programming(
        model, inputs, streams, scored_from, given.space.sub_blocks, given.space.most_skipped
    )
    # Each sub-block call runs 1/(2L) of a full pass over one sequence (counted in full-pass equivalents).
    spent.full_forwards += result.sub_block_calls * len(sequences) / (2 * num_layers)
    lengths = sum(sequence.sequence_ids().shape[1] for sequence in sequences)
    spent.tokens += round(result.sub_block_calls * lengths / (2 * num_layers))
    family = [
        {"skip": blocks, "score": result.similarity[count]}
        for count, blocks in result.skipped.items()
        if count >= given.cfg.search.min_skipped
    ]
    return family, {"sub_block_calls_per_sequence": result.sub_block_calls}


# search.strategy -> its selector.
SELECTORS = {
    "knapsack": _knapsack,
    "cosine_similarity": _cosine_similarity,
    "dynamic_programming": _dynamic_programming,
}


def build_family(inputs: SelectorInputs) -> Family:
    """The strategy's family: a list of {skip: [(kind, layer)...], score: selector's own score}, and what
    the selector measured (for `selection.json`); `inputs.spent` is charged with the passes run."""
    strategy = inputs.cfg.search.strategy
    if strategy not in SELECTORS:
        raise ValueError(f"no selector named {strategy!r}")
    return SELECTORS[strategy](inputs)


def _prepare(
    cfg: DictConfig, loaded: LoadedModel, evaluator: TrialEvaluator | TeacherForcedEvaluator, run_dir: Path
) -> tuple[list[DevSequence], PassCount]:
    """The reference continuations (the teacher-forced evaluator's own when it has them) and their cost; the
    evaluator's cost profile set."""
    search, preparation = cfg.search, PassCount()
    if search.acceptance_estimate == "teacher_forced":  # its reference continuations serve the selector too
        sequences = evaluator.sequences
        preparation.add(evaluator.setup_cost)
    else:
        sequences, spent = reference_sequences(
            loaded, evaluator.prompt_ids, search.max_new_tokens, keep_cache=search.strategy == "knapsack"
        )
        preparation.add(spent)
    costs = cost_profile(cfg, loaded, evaluator.prompt_ids, run_dir, required=search.strategy == "knapsack")
    evaluator.costs = costs
    return sequences, preparation


def _score_family(
    search: DictConfig,
    space: SearchSpace,
    family: list[dict[str, Any]],
    evaluator: TrialEvaluator | TeacherForcedEvaluator,
    logged: list[dict[str, Any]],
    run_dir: Path,
) -> list[dict[str, Any]]:
    """Every set of the family scored like a trial and logged, in order; sets already logged stand."""
    trials = []
    for index, entry in enumerate(family):
        plan = space.plan_of(entry["skip"])
        if index < len(logged):
            if (logged[index]["attention"], logged[index]["mlp"]) != (list(plan.attention), list(plan.mlp)):
                raise ValueError(
                    f"{run_dir / LOG_FILE} trial {index} holds another set than {search.strategy} chose now; "
                    "start over with search.resume=false"
                )
            trials.append(logged[index])
            continue
        clock = time.perf_counter()
        measured = evaluator.evaluate(plan)
        record = trial_record(
            index,
            search.strategy,
            plan,
            measured,
            space.point(plan),
            reused_from=None,
            suggest_time_s=0.0,  # the selector's own time is the preparation's
            evaluate_time_s=time.perf_counter() - clock,
            selector_score=entry["score"],
        )
        append_jsonl(run_dir / LOG_FILE, record)
        trials.append(record)
        print(
            f"{search.strategy} set {index + 1}/{len(family)}: {record['num_skipped']} skipped, "
            f"{search.objective} {record['objective']:.4g}",
            flush=True,
        )
    return trials


def run_selection(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume) the selector `search.strategy` names; returns the summary (`summary.json`)."""
    run_dir, search = Path(run_dir), cfg.search
    loaded = load_model(cfg.model)
    space = SearchSpace.from_config(
        loaded.model.config.num_hidden_layers, OmegaConf.to_container(search, resolve=True)
    )
    prompts = collect_dev_prompts(cfg)
    logged = prepare_run_dir(run_dir, search.resume, search_setup(cfg, loaded, prompts, []), loaded)

    started = time.perf_counter()
    evaluator = build_evaluator(cfg, loaded, prompts)
    sequences, preparation = _prepare(cfg, loaded, evaluator, run_dir)
    clock, selecting = time.perf_counter(), PassCount()
    family, details = build_family(SelectorInputs(cfg, loaded, space, sequences, evaluator.costs, selecting))
    selecting.seconds = time.perf_counter() - clock  # the wall time of it all, probes included
    preparation.add(selecting)
    if not family:
        raise ValueError(
            f"{search.strategy} produced no skip set within the bounds; check the search settings"
        )
    selection = {
        "strategy": search.strategy,
        **details,
        "family": [{**entry, "skip": _label(entry["skip"])} for entry in family],
        "preparation": preparation.as_dict(),
    }
    write_atomic(run_dir / SELECTION_FILE, json.dumps(selection, indent=2) + "\n")
    if len(logged) < len(family):
        evaluator.warm_up(search.warmup_decodes)
    trials = _score_family(search, space, family, evaluator, logged, run_dir)
    extra = {
        "run_dir": str(run_dir),
        "strategy": search.strategy,
        "acceptance_estimate": search.acceptance_estimate,
        "family_size": len(family),
        "evaluated_this_session": evaluator.evaluations,
        "session_seconds": time.perf_counter() - started,
        "dev_prompts": [{"task": prompt.task, "sha256": prompt.sha256} for prompt in prompts],
        "search_cost": search_cost(trials, preparation),
    }
    summary = write_outputs(run_dir, trials, loaded.name, search.objective, extra, search.strategy)
    best = summary["best"]
    print(
        f"best: {search.objective} {best['objective']:.4g} ({search.strategy}, set {best['trial'] + 1} of "
        f"{len(family)}): skip attention {best['attention']}, mlp {best['mlp']}; snippet {run_dir / SNIPPET_FILE}",
        flush=True,
    )
    return summary
