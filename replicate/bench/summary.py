"""From the outcomes of a benchmark race to the numbers of its JSON: speed, cost model, parity, peers,
targets, and a plain-text summary. Definitions in docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
from typing import Any

from replicate.bench.contenders import Outcome
from replicate.cost_model import cost_model_metrics
from replicate.records import RunMetrics
from replicate.run.metrics import decoding_metrics

AUTOREGRESSIVE, GENERATE = "ours_autoregressive", "hf_generate"
PEERS = ("hf_early_exit", "hf_prompt_lookup")
TARGETS = {  # what a good implementation reaches on a quiet machine (docs/benchmarks.md)
    "efficiency >= 0.95": ("cost_model", "cost_model.efficiency", 0.95, "min"),
    "overhead outside forward passes < 5%": ("forward_clock", "overhead_fraction_measured", 0.05, "max"),
    "our AR loop at least as fast as generate": ("parity", "tokens_per_s_ratio", 1.0, "min"),
    "self-speculative peak memory within 2% of AR": ("memory", "method_peak_ratio", 1.02, "max"),
}


def _overhead(outcomes: list[Outcome]) -> float:
    """Share of the wall clock spent outside calls of the model."""
    return 1 - sum(o.forward_seconds for o in outcomes) / sum(o.seconds for o in outcomes)


def speed_row(
    outcomes: list[Outcome], references: dict[str, list[Outcome]], settings: dict
) -> dict[str, Any]:
    """Throughput of one contender and the share of its decodes whose tokens equal each reference's."""
    seconds = sum(outcome.seconds for outcome in outcomes)
    new_tokens = sum(len(outcome.tokens) for outcome in outcomes)
    row = {
        "new_tokens": new_tokens,
        "seconds": seconds,
        "tokens_per_s": new_tokens / seconds,
        "forward_calls": sum(outcome.forward_calls for outcome in outcomes),
        "forward_fraction": 1 - _overhead(outcomes),
        "overhead_fraction_measured": _overhead(outcomes),
        "settings": settings,
    }
    for name, runs in references.items():
        same = [mine.tokens == theirs.tokens for mine, theirs in zip(outcomes, runs)]
        row[f"identical_to_{name}"] = sum(same) / len(same)
    return row


def speed_table(outcomes: dict[str, list[Outcome]], settings: dict[str, dict]) -> dict[str, Any]:
    references = {name: outcomes[name] for name in (AUTOREGRESSIVE, GENERATE) if name in outcomes}
    return {name: speed_row(runs, references, settings[name]) for name, runs in outcomes.items()}


def cost_model_section(
    outcomes: dict[str, list[Outcome]], method_name: str, profile: dict, run: dict[str, Any]
) -> RunMetrics:
    """The race of the method against our autoregressive loop as a `RunMetrics` (the shape of a run's
    metrics.json: measured speedup, acceptance, identity, and the cost model's prediction and efficiency).
    `run`: the RunMetrics fields a race cannot derive from its outcomes (model, method, skip, ...)."""
    method, baseline = outcomes[method_name], outcomes[AUTOREGRESSIVE]
    methods, baselines = [m.record for m in method], [b.record for b in baseline]
    identical = [m.tokens == b.tokens for m, b in zip(method, baseline)]
    stats = cost_model_metrics(methods, baselines, profile)
    return RunMetrics(
        **run,
        **decoding_metrics(methods, baselines, identical, is_baseline=False),
        cost_model=dataclasses.replace(stats, cost_profile=None),  # the output's `profile` holds it
    )


def forward_clock_section(outcomes: dict[str, list[Outcome]], method_name: str, metrics: RunMetrics) -> dict:
    """The overhead outside forward passes as the forward clock measures it directly, and how well the
    profile's passes price the passes the method actually ran (1.0: exact; away from 1: context length or
    drift; prefill excluded, it is taken from the run itself)."""
    method = outcomes[method_name]
    prefill = sum(m.record.prefill_time for m in method)
    forward_seconds = sum(m.forward_seconds for m in method)
    return {
        "overhead_fraction_measured": _overhead(method),
        "baseline_overhead_fraction_measured": _overhead(outcomes[AUTOREGRESSIVE]),
        "profile_explains_forward": (metrics.cost_model.predicted_time_s - prefill)
        / (forward_seconds - prefill),
    }


def parity_section(speed: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = speed[AUTOREGRESSIVE], speed[GENERATE]
    return {
        "ours_tokens_per_s": ours["tokens_per_s"],
        "generate_tokens_per_s": theirs["tokens_per_s"],
        "tokens_per_s_ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "identical_fraction": ours[f"identical_to_{GENERATE}"],
    }


def peers_section(speed: dict[str, Any], method_name: str) -> dict[str, Any]:
    base = speed[GENERATE]["tokens_per_s"]
    return {
        name: {
            "tokens_per_s": speed[name]["tokens_per_s"],
            "speedup_vs_generate": speed[name]["tokens_per_s"] / base,
            "identical_to_greedy_generate": speed[name][f"identical_to_{GENERATE}"],
            "settings": speed[name]["settings"],
        }
        for name in (method_name, *PEERS)
    }


def check_targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target's value, bound and verdict (None where the section was not run)."""
    checks = {}
    for label, (section, key, bound, kind) in TARGETS.items():
        value = result.get(section, {})
        for part in key.split("."):
            value = (value or {}).get(part)
        passed = None if value is None else (value >= bound if kind == "min" else value < bound)
        checks[label] = {"value": value, "bound": bound, "passed": passed}
    return checks


def summary(result: dict[str, Any]) -> str:
    """A few plain-text lines: speed per contender, the cost model and the targets."""
    lines = [f"model={result['model']} skip={result.get('skip', {}).get('source')}"]
    for name, row in result.get("speed", {}).items():
        identity = ", ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith("identical_to_"))
        lines.append(
            f"  {name:<26} {row['tokens_per_s']:8.2f} tok/s  outside forward "
            f"{row['overhead_fraction_measured']:6.1%}  {identity}"
        )
    race = result.get("cost_model")
    if race:
        cost = race["cost_model"]
        lines.append(
            f"  speedup measured {race['speedup']:.3f}, predicted {cost['predicted_speedup']:.3f}; "
            f"efficiency {cost['efficiency']:.3f} (baseline {cost['baseline_efficiency']:.3f}); "
            f"profile drift {result['profile'].get('drift', 1.0):.3f}"
        )
    for label, check in result["targets"].items():
        value = "-" if check["value"] is None else f"{check['value']:.3f}"
        verdict = "not measured" if check["passed"] is None else ("met" if check["passed"] else "MISSED")
        lines.append(f"  target {label}: {value} ({verdict})")
    return "\n".join(lines)
