"""Markdown tables of the selection experiment (`studies.selection_experiment`'s `results.json`).

python -m studies.selection_report outputs/selection/smollm2_135m/results.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def describe(attention: Sequence[int], mlp: Sequence[int]) -> str:
    parts = [
        f"attention {', '.join(map(str, attention))}" if attention else "",
        f"MLP {', '.join(map(str, mlp))}" if mlp else "",
    ]
    return " + ".join(part for part in parts if part) or "none"


def _interval(value: float, interval: Sequence[float] | None) -> str:
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _passes(count: float) -> str:
    return f"{count:.0f}" if count >= 10 else f"{count:.1f}"


def search_table(searches: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per search: its set, its score on the dev prompts, and what it cost."""
    lines = [
        "| strategy | estimate | set found | skipped | sets scored | dev predicted speedup | dev acceptance "
        "| search wall time (s) | full-model passes | draft passes | load (1-min avg) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, summary in searches.items():
        best, cost, timing = summary["best"], summary["search_cost"], summary["experiment_timing"]
        total = cost["total"]
        load = f"{timing['load_before'][0]:.1f} -> {timing['load_after'][0]:.1f}"
        lines.append(
            f"| {label} | {summary.get('acceptance_estimate', 'decoded')} | "
            f"{describe(best['attention'], best['mlp'])} | {best['num_skipped']} | {cost['trials']['evaluated']} | "
            f"{best['predicted_speedup']:.3f} | {best['acceptance']:.3f} | {timing['wall_s']:.0f} | "
            f"{_passes(total['full_forwards'])} | {_passes(total['draft_forwards'])} | {load} |"
        )
    return "\n".join(lines)


def held_out_table(sets: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per (set, task): acceptance and speedup with 95% intervals, and the predicted speedups."""
    lines = [
        "| set | found by | task | acceptance [95% CI] | speedup [95% CI] | predicted (search profile) "
        "| predicted (run's profile) | identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in sets.values():
        name, found_by = describe(entry["attention"], entry["mlp"]), ", ".join(entry["found_by"])
        for task, numbers in entry["tasks"].items():
            lines.append(
                f"| {name} | {found_by} | {task} | {_interval(numbers['acceptance'], numbers['acceptance_ci'])} | "
                f"{_interval(numbers['speedup'], numbers['speedup_ci'])} | "
                f"{numbers['predicted_speedup_search_profile']:.3f} | "
                f"{numbers['predicted_speedup_run_profile']:.3f} | {numbers['identical_fraction']:.2f} |"
            )
    return "\n".join(lines)


def markdown_tables(results: Mapping[str, Any]) -> str:
    evaluation = results["config"]["evaluation"]
    return (
        f"## Searches ({results['config']['model']}, preset {results['config']['search_preset']})\n\n"
        f"{search_table(results['searches'])}\n\n"
        f"## Held-out decoding ({evaluation['method']}, {evaluation['n_samples']} samples x "
        f"{evaluation['max_new_tokens']} tokens per task)\n\n{held_out_table(results['sets'])}\n"
    )


if __name__ == "__main__":
    print(markdown_tables(json.loads(Path(sys.argv[1]).read_text())))
