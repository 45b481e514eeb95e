"""What a finished (or stopped) search leaves behind: the best skip set as a model-config snippet, a PNG of the
trace (objective against the number of skipped sub-layers, as in the paper's Figure 4, and against the trial
number) and a JSON summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replicate.run.rundir import write_atomic

SNIPPET_FILE = "best_skip.yaml"
TRACE_FILE = "trace.png"
SUMMARY_FILE = "summary.json"


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The trial with the highest objective (the earliest among equals), as the optimizer's `max` is."""
    if not trials:
        raise ValueError("no trials were run; nothing to report")
    return max(trials, key=lambda trial: (trial["objective"], -trial["trial"]))


def _ids(ids) -> str:
    return ",".join(str(i) for i in ids)  # no spaces: the override needs no shell quoting


def snippet_text(
    best: Mapping[str, Any],
    model_name: str,
    objective: str,
    run_dir: Path,
    num_trials: int,
    strategy: str = "bayesian",
) -> str:
    """A `skip:` block for `conf/model/<model>.yaml`, with where it comes from in its `source`."""
    acceptance = best.get("acceptance")
    acceptance_text = "n/a" if acceptance is None else f"{acceptance:.3f}"
    how = "bayesian search" if strategy == "bayesian" else f"{strategy} selection"
    source = (
        f"{how} (replicate.search), {objective} {best['objective']:.4g} at trial {best['trial']} "
        f"of {num_trials}, {run_dir}"
    )
    return (
        f"# Best skip set of the layer search in {run_dir} for model {model_name}.\n"
        f"# Paste it over `skip:` in conf/model/{model_name}.yaml, or pass it as overrides:\n"
        f"#   model.skip.attention=[{_ids(best['attention'])}] model.skip.mlp=[{_ids(best['mlp'])}]\n"
        f"# {objective} = {best['objective']:.4g}, acceptance {acceptance_text}, "
        f"{best['num_skipped']} sub-blocks skipped.\n"
        "skip:\n"
        f"  attention: {json.dumps(list(best['attention']))}\n"
        f"  mlp: {json.dumps(list(best['mlp']))}\n"
        f"  source: {json.dumps(source)}\n"
    )


def plot_trace(trials: Sequence[Mapping[str, Any]], objective: str, title: str, path: Path) -> None:
    """Left: objective against skipped sub-layers, coloured by trial number; right: objective per trial with
    the running best. The best trial is starred in both."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    numbers = [trial["trial"] for trial in trials]
    values = [trial["objective"] for trial in trials]
    skipped = [trial["num_skipped"] for trial in trials]
    best = best_trial(trials)
    running, best_so_far = [], float("-inf")
    for value in values:
        best_so_far = max(best_so_far, value)
        running.append(best_so_far)

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    points = left.scatter(skipped, values, c=numbers, cmap="viridis", s=14)
    left.scatter([best["num_skipped"]], [best["objective"]], marker="*", s=160, color="red", label="best")
    left.set(xlabel="skipped sub-layers (attention + MLP)", ylabel=objective, title="objective vs skipped")
    left.legend(loc="best")
    figure.colorbar(points, ax=left, label="trial")
    right.plot(numbers, values, ".", markersize=4, color="tab:blue", label="trial")
    right.plot(numbers, running, "-", color="tab:orange", label="best so far")
    right.scatter([best["trial"]], [best["objective"]], marker="*", s=160, color="red")
    right.set(xlabel="trial", ylabel=objective, title="search progress")
    right.legend(loc="best")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(
    run_dir: Path,
    trials: Sequence[Mapping[str, Any]],
    model_name: str,
    objective: str,
    extra: Mapping[str, Any],
    strategy: str = "bayesian",
) -> dict[str, Any]:
    """Write the snippet, the trace and the summary into `run_dir`; returns the summary."""
    best = best_trial(trials)
    snippet = snippet_text(best, model_name, objective, run_dir, len(trials), strategy)
    write_atomic(run_dir / SNIPPET_FILE, snippet)
    title = f"{strategy} ({'layer search' if strategy == 'bayesian' else 'selection'}): {model_name}"
    plot_trace(trials, objective, f"{title}, {len(trials)} trials", run_dir / TRACE_FILE)
    summary = {
        "model": model_name,
        "objective": objective,
        "trials": len(trials),
        "evaluated_trials": sum(trial["reused_from"] is None for trial in trials),
        "best": dict(best),
        "skip": {"attention": list(best["attention"]), "mlp": list(best["mlp"])},
        **extra,
    }
    write_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
