"""How the choices of several searches of one model compare (e.g. the two objectives, or two devices).

Every trial logs its acceptance trace (`cycles`), and greedy fp32 traces depend on the skip set only, so
any trial can be scored again under one cost profile. This pools the distinct skip sets the searches
decoded and gives each set both scores: tokens/s (the mean of its decodes, wall clock) and the predicted
speedup under one cost profile. It reports each search's choice with its rank under both scores, and the
Spearman rank correlation of the two scores over the pooled sets.

    python -m studies.compare_searches outputs/search/smollm2_135m/smollm2_cpu_bayesian_decoded_tokens_per_s \\
        outputs/search/smollm2_135m/smollm2_cpu_bayesian_decoded_predicted_speedup [--costs <cost_profile.json>]

Writes nothing unless `--output` names a JSON file; prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from replicate.core.skipping import SkipPlan
from replicate.search.evaluators import COSTS_FILE
from replicate.search.outputs import best_trial
from replicate.search.rundir import LOG_FILE, SETUP_FILE, read_trials
from replicate.search.sub_block_costs import trace_predicted_speedup


def _key(trial: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(trial["attention"]), tuple(trial["mlp"])


def _label(key: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    attention, mlp = key
    parts = [
        f"attention {', '.join(map(str, attention))}" if attention else "",
        f"MLP {', '.join(map(str, mlp))}" if mlp else "",
    ]
    return " + ".join(part for part in parts if part) or "none"


def pool_sets(
    searches: Mapping[str, Sequence[Mapping[str, Any]]], costs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The distinct skip sets decoded by `searches` (name -> its trials), each with its mean measured tokens/s,
    its predicted speedup under `costs`, its acceptance, and whether all its decodes gave the same trace."""
    pooled: dict[tuple, dict[str, Any]] = {}
    for name, trials in searches.items():
        for trial in trials:
            if trial["reused_from"] is not None:  # a duplicate: its numbers are another trial's
                continue
            entry = pooled.setdefault(
                _key(trial),
                {"attention": list(trial["attention"]), "mlp": list(trial["mlp"]), "tokens_per_s_all": [],
                 "cycles": trial["cycles"], "acceptance": trial["acceptance"], "decoded_by": [], "same_trace": True},
            )  # fmt: skip
            entry["tokens_per_s_all"].append(trial["tokens_per_s"])
            entry["decoded_by"].append(f"{name}#{trial['trial']}")
            entry["same_trace"] &= trial["cycles"] == entry["cycles"]
    sets = []
    for key, entry in pooled.items():
        plan = SkipPlan.from_lists(*key)
        cycles = entry.pop("cycles")
        sets.append(
            {
                "label": _label(key),
                **entry,
                "num_skipped": plan.num_skipped,
                "tokens_per_s": float(np.mean(entry["tokens_per_s_all"])),
                "predicted_speedup": trace_predicted_speedup(cycles, costs, plan),
            }
        )
    return sets


def _ranks(sets: Sequence[Mapping[str, Any]], score: str) -> dict[str, int]:
    ordered = sorted(sets, key=lambda entry: -entry[score])
    return {entry["label"]: rank for rank, entry in enumerate(ordered, start=1)}


def compare_searches(run_dirs: Sequence[Path], costs_path: Path | None = None) -> dict[str, Any]:
    """Pool the searches in `run_dirs` and compare their choices (see the module docstring)."""
    run_dirs = [Path(path) for path in run_dirs]
    if costs_path is None:
        costs_path = next((path / COSTS_FILE for path in run_dirs if (path / COSTS_FILE).exists()), None)
        if costs_path is None:
            raise FileNotFoundError(
                f"none of {[str(path) for path in run_dirs]} holds {COSTS_FILE} (only predicted_speedup searches "
                "measure one); pass --costs <a cost_profile.json measured on the same device>"
            )
    costs = json.loads(Path(costs_path).read_text())
    searches, objectives, decoding = {}, {}, {}
    unique_names = len({path.name for path in run_dirs}) == len(run_dirs)
    for path in run_dirs:
        name = path.name if unique_names else str(path)
        trials = read_trials(path)
        if not trials:
            raise ValueError(f"{path} holds no search trials ({path / LOG_FILE}); check the path")
        searches[name] = trials
        setup = json.loads((path / SETUP_FILE).read_text())["setup"]
        if setup["search"].get("acceptance_estimate", "decoded") != "decoded":
            raise ValueError(
                f"{path} scored its sets with the {setup['search']['acceptance_estimate']} estimate: nothing was "
                "decoded, so it has no tokens/s or decoded trace to pool; compare decoded searches only"
            )
        objectives[name] = setup["search"]["objective"]
        decoding[name] = _trace_settings(setup)
    first = next(iter(decoding))
    for name, settings in decoding.items():
        if settings != decoding[first]:
            differing = sorted(key for key in settings if settings[key] != decoding[first][key])
            raise ValueError(
                f"searches {first} and {name} decoded under other settings ({', '.join(differing)}), so their "
                "traces cannot be pooled; compare searches of one model, method and dev-prompt set"
            )
    sets = pool_sets(searches, costs)
    ranks = {score: _ranks(sets, score) for score in ("tokens_per_s", "predicted_speedup")}
    choices = {}
    for name, trials in searches.items():
        label = _label(_key(best_trial(trials)))
        entry = next(entry for entry in sets if entry["label"] == label)
        choices[name] = {
            "objective": objectives[name],
            "choice": label,
            "tokens_per_s": entry["tokens_per_s"],
            "predicted_speedup": entry["predicted_speedup"],
            "acceptance": entry["acceptance"],
            "rank_tokens_per_s": ranks["tokens_per_s"][label],
            "rank_predicted_speedup": ranks["predicted_speedup"][label],
        }
    correlation = spearmanr(
        [entry["tokens_per_s"] for entry in sets], [entry["predicted_speedup"] for entry in sets]
    )
    return {
        "searches": [str(path) for path in run_dirs],
        "cost_profile": str(costs_path),
        "num_sets": len(sets),
        "spearman_tokens_per_s_vs_predicted": float(correlation.statistic),
        "traces_reproduced": all(entry["same_trace"] for entry in sets),
        "choices": choices,
        "sets": sorted(sets, key=lambda entry: -entry["predicted_speedup"]),
    }


def _trace_settings(setup: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's trace depends on besides its skip set (the model config's own skip set does not count)."""
    model = {key: value for key, value in setup["model"].items() if key != "skip"}
    return {
        "model": model,
        "method": setup["method"],
        "sampling": setup["sampling"],
        "dev_prompts": setup["dev_prompts"],
        "max_new_tokens": setup["search"]["max_new_tokens"],
    }


def markdown(comparison: Mapping[str, Any], top: int) -> str:
    lines = [
        f"{comparison['num_sets']} distinct skip sets; predicted speedups under {comparison['cost_profile']}; "
        f"Spearman rank correlation of tokens/s and predicted speedup: "
        f"{comparison['spearman_tokens_per_s_vs_predicted']:.3f}; every repeated set gave the same trace: "
        f"{comparison['traces_reproduced']}.",
        "",
        "| search | objective | choice | tokens/s (rank) | predicted speedup (rank) | acceptance |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, choice in comparison["choices"].items():
        lines.append(
            f"| {name} | {choice['objective']} | {choice['choice']} | {choice['tokens_per_s']:.2f} "
            f"({choice['rank_tokens_per_s']}) | {choice['predicted_speedup']:.3f} "
            f"({choice['rank_predicted_speedup']}) | {choice['acceptance']:.3f} |"
        )
    lines += [
        "",
        "| skip set | skipped | predicted speedup | tokens/s | acceptance | decoded by |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in comparison["sets"][:top]:
        lines.append(
            f"| {entry['label']} | {entry['num_skipped']} | {entry['predicted_speedup']:.3f} | "
            f"{entry['tokens_per_s']:.2f} | {entry['acceptance']:.3f} | {', '.join(entry['decoded_by'])} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="search run directories of one model")
    parser.add_argument(
        "--costs", type=Path, default=None, help="cost_profile.json (default: the first found)"
    )
    parser.add_argument("--top", type=int, default=10, help="rows of the pooled table to print")
    parser.add_argument("--output", type=Path, default=None, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    comparison = compare_searches(args.run_dirs, args.costs)
    if args.output is not None:
        args.output.write_text(json.dumps(comparison, indent=2) + "\n")
    print(markdown(comparison, args.top))


if __name__ == "__main__":
    main()
