"""How well the teacher-forced estimate ranks skip sets against decoding, and what it saves.

    python -m studies.estimate_check --num-sets 60 --output outputs/estimate_check/smollm2 \\
        model=smollm2_135m search=smollm2_cpu

Draws `--num-sets` distinct random sets from the search space (`search.candidates`, sizes cycling through
`--sizes`, clipped to `search.min_skipped` .. `search.max_skipped`), and scores each twice on the same dev
prompts under one cost profile: decoded (`TrialEvaluator`, the Bayesian trial) and teacher-forced
(`TeacherForcedEvaluator`, in each `search.teacher_forced.context`). Each set is appended to `sets.jsonl` as soon as both are done (rerunning the
same command resumes). `summary.json` holds the Spearman rank correlations (teacher-forced acceptance,
agreement and predicted speedup against decoded acceptance and predicted speedup; pooled and within each
size), the mean cost of a trial of each kind (seconds, passes, tokens) and the machine's load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from replicate.core.models import load_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.run.rundir import append_jsonl, read_jsonl, write_atomic, write_jsonl
from replicate.search import compose_search_config
from replicate.search.dev_sequences import TEACHER_FORCED_CONTEXTS
from replicate.search.evaluators import cost_profile
from replicate.search.objective import TrialEvaluator, TrialSetup, collect_dev_prompts
from replicate.search.space import SearchSpace
from replicate.search.teacher_forced import TeacherForcedEvaluator

SETS_FILE = "sets.jsonl"
SUMMARY_FILE = "summary.json"
PAIRS = (  # (teacher-forced score, decoded score)
    ("acceptance", "acceptance"),
    ("agreement", "acceptance"),
    ("predicted_speedup", "predicted_speedup"),
)


def random_sets(
    space: SearchSpace, count: int, sizes: Sequence[int], seed: int
) -> list[list[tuple[str, int]]]:
    """`count` distinct sets of the space's sub-blocks, sizes cycling through `sizes` (clipped to the bounds)."""
    sizes = sorted({min(max(size, space.min_skipped), space.most_skipped) for size in sizes})
    rng, chosen, seen = random.Random(seed), [], set()
    for _ in range(count * 100):  # distinct sets; give up if the space is too small
        size = sizes[len(chosen) % len(sizes)]
        blocks = tuple(sorted(rng.sample(space.sub_blocks, size)))
        if blocks not in seen:
            seen.add(blocks)
            chosen.append(list(blocks))
        if len(chosen) == count:
            return chosen
    raise ValueError(
        f"could not draw {count} distinct sets of sizes {sizes} from {space.num_variables} sub-blocks"
    )


def _spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    if len(first) < 3 or len(set(first)) < 2 or len(set(second)) < 2:
        return None
    return float(spearmanr(first, second).statistic)


def summarize(rows: Sequence[dict[str, Any]], context: str) -> dict[str, Any]:
    """Rank correlations and costs of the logged sets for one teacher-forced context (see module docstring)."""
    correlations, by_size = {}, {}
    for estimate, decoded in PAIRS:
        name = f"teacher_forced_{estimate}_vs_decoded_{decoded}"
        correlations[name] = _spearman(
            [r["teacher_forced"][context][estimate] for r in rows], [r["decoded"][decoded] for r in rows]
        )
        per_size = {}
        for size in sorted({r["num_skipped"] for r in rows}):
            group = [r for r in rows if r["num_skipped"] == size]
            per_size[size] = _spearman(
                [r["teacher_forced"][context][estimate] for r in group],
                [r["decoded"][decoded] for r in group],
            )
        by_size[name] = per_size
    runs = {
        "decoded": [r["decoded"] for r in rows],
        "teacher_forced": [r["teacher_forced"][context] for r in rows],
    }
    cost = {
        kind: {
            key: float(np.mean([run["cost"][key] for run in values]))
            for key in ("seconds", "passes", "tokens")
        }
        for kind, values in runs.items()
    }
    error = [r["teacher_forced"][context]["acceptance"] - r["decoded"]["acceptance"] for r in rows]
    return {
        "spearman": correlations,
        "spearman_within_size": by_size,
        "acceptance_error": {"mean": float(np.mean(error)), "mean_absolute": float(np.mean(np.abs(error)))},
        "mean_trial_cost": cost,
        "cost_ratio_seconds": cost["decoded"]["seconds"] / cost["teacher_forced"]["seconds"],
        "cost_ratio_passes": cost["decoded"]["passes"] / cost["teacher_forced"]["passes"],
        "cost_ratio_tokens": cost["decoded"]["tokens"] / cost["teacher_forced"]["tokens"],
    }


def _decoded(evaluator: TrialEvaluator, plan, prompt_tokens: int) -> dict[str, Any]:
    clock = time.perf_counter()
    measured = evaluator.evaluate(plan)
    cycles = measured["cycles"]
    # Tokens fed: every prompt once (prefill), each drafted token once, each verify pass over drafts + 1.
    tokens = prompt_tokens + sum(sum(c["drafted"]) * 2 + len(c["drafted"]) for c in cycles)
    passes = measured["full_forwards"] + measured["draft_forwards"]
    cost = {"seconds": time.perf_counter() - clock, "passes": passes, "tokens": tokens}
    return {key: measured[key] for key in ("acceptance", "predicted_speedup", "tokens_per_s")} | {
        "cost": cost
    }


def _teacher_forced(evaluator: TeacherForcedEvaluator, plan) -> dict[str, Any]:
    measured = evaluator.evaluate(plan)
    spent = measured["search_cost"]
    cost = {"seconds": spent["seconds"], "passes": spent["draft_forwards"], "tokens": spent["tokens"]}
    return {key: measured[key] for key in ("acceptance", "agreement", "predicted_speedup")} | {"cost": cost}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-sets", type=int, default=60)
    parser.add_argument("--sizes", default="1,2,3,4,5,6,8,10", help="set sizes, cycled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True, help="directory (rerunning resumes)")
    parser.add_argument("overrides", nargs="*", help="search config overrides, e.g. search=smollm2_cpu")
    args = parser.parse_args(argv)
    cfg = compose_search_config(args.overrides)
    if cfg.search.objective != "predicted_speedup":
        raise SystemExit(
            "use search.objective=predicted_speedup: both estimates are scored with one cost profile"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    settings = {
        "overrides": args.overrides,
        "num_sets": args.num_sets,
        "sizes": args.sizes,
        "seed": args.seed,
    }
    settings_path = args.output / "settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
        raise SystemExit(f"{args.output} holds a check with other settings; use another --output")
    write_atomic(settings_path, json.dumps(settings, indent=2) + "\n")

    loaded = load_model(cfg.model)
    search = OmegaConf.to_container(cfg.search, resolve=True)
    space = SearchSpace.from_config(loaded.model.config.num_hidden_layers, search)
    prompts = collect_dev_prompts(cfg)
    setup = TrialSetup(loaded, cfg.method, SamplingConfig(**cfg.sampling), prompts, search)
    decoded = TrialEvaluator(setup, cfg.seed)
    forced = {}
    for context in TEACHER_FORCED_CONTEXTS:  # one set of reference continuations serves both
        settings_of = {**search, "teacher_forced": {"context": context}}
        sequences = next(iter(forced.values())).sequences if forced else None
        forced[context] = TeacherForcedEvaluator(
            dataclasses.replace(setup, search_cfg=settings_of), sequences=sequences
        )
    costs = cost_profile(cfg, loaded, decoded.prompt_ids, args.output)
    decoded.costs = costs
    for evaluator in forced.values():
        evaluator.costs = costs
    decoded.warm_up(cfg.search.warmup_decodes)
    prompt_tokens = sum(ids.shape[1] for ids in decoded.prompt_ids)
    rows = read_jsonl(args.output / SETS_FILE)
    for row in rows:  # a context added after a set was logged is estimated now (its decode stands)
        plan = SkipPlan.from_lists(row["attention"], row["mlp"])
        for context, evaluator in forced.items():
            if context not in row["teacher_forced"]:
                row["teacher_forced"][context] = _teacher_forced(evaluator, plan)
    write_jsonl(args.output / SETS_FILE, rows)
    sets = random_sets(space, args.num_sets, [int(size) for size in args.sizes.split(",")], args.seed)
    for index, blocks in enumerate(sets[len(rows) :], start=len(rows)):
        plan = space.plan_of(blocks)
        row = {
            "index": index,
            "attention": list(plan.attention),
            "mlp": list(plan.mlp),
            "num_skipped": plan.num_skipped,
            "decoded": _decoded(decoded, plan, prompt_tokens),
            "teacher_forced": {
                context: _teacher_forced(evaluator, plan) for context, evaluator in forced.items()
            },
            "load_average": os.getloadavg()[0],
        }
        append_jsonl(args.output / SETS_FILE, row)
        rows.append(row)
        estimates = ", ".join(f"{c} {row['teacher_forced'][c]['acceptance']:.3f}" for c in forced)
        print(
            f"set {index + 1}/{len(sets)} ({plan.num_skipped} skipped): acceptance decoded "
            f"{row['decoded']['acceptance']:.3f}, teacher-forced {estimates}",
            flush=True,
        )
    summary = {
        "settings": settings,
        "num_sets": len(rows),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"first_set": rows[0]["load_average"], "last_set": rows[-1]["load_average"]},
        "reference_continuations": next(iter(forced.values())).setup_cost.as_dict(),
        "contexts": {context: summarize(rows, context) for context in forced},
    }
    write_atomic(args.output / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    for context, numbers in summary["contexts"].items():
        print(
            context, json.dumps({key: numbers[key] for key in ("spearman", "cost_ratio_seconds")}, indent=2)
        )
    return summary


if __name__ == "__main__":
    main()
