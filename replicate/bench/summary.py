"""From the outcomes of a benchmark race to the numbers of its JSON: speed, cost model, parity, peers,
targets, and a plain-text summary. Definitions in docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from replicate.bench.contenders import Outcome
from replicate.cost_model import cost_model_metrics
from replicate.metrics_record import RunMetrics
from replicate.run.metrics import decoding_metrics
from replicate.statistics import BootstrapConfig, ratio_of_means

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
    outcomes: dict[str, list[Outcome]],
    method_name: str,
    profile: dict,
    run: dict[str, Any],
    sample_profiles: list[dict] | None,
    bootstrap: BootstrapConfig,
) -> RunMetrics:
    """The race of the method against our autoregressive loop as a `RunMetrics` (the shape of a run's
    metrics.json: measured speedup, acceptance, identity, and the cost model's prediction and efficiency).
    `run`: the RunMetrics fields a race cannot derive from its outcomes (model, method, skip, ...).
    `sample_profiles`: the profile measured next to each decode round (see `bench.profiles`)."""
    method, baseline = outcomes[method_name], outcomes[AUTOREGRESSIVE]
    methods, baselines = [m.record for m in method], [b.record for b in baseline]
    identical = [m.tokens == b.tokens for m, b in zip(method, baseline)]
    stats = cost_model_metrics(methods, baselines, profile, sample_profiles, bootstrap=bootstrap)
    return RunMetrics(
        **run,
        **decoding_metrics(methods, baselines, identical, False, bootstrap),
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


def other_kv_cache(kind: str) -> str:
    return {"dynamic": "static", "static": "dynamic"}[kind]


def kv_cache_name(contender: str, kind: str) -> str:
    """The race name of one of our loops run with KV cache `kind` (not the model's configured one)."""
    return f"{contender}@{kind}_cache"


def _per_token_speedup(baseline: list[Outcome], method: list[Outcome]) -> float:
    """The paper's speedup of two contenders' decodes of the same prompts (mean seconds per token)."""
    per_token = [(b.seconds / len(b.tokens), m.seconds / len(m.tokens)) for b, m in zip(baseline, method)]
    return float(ratio_of_means(*np.array(per_token).T))


def kv_cache_section(
    outcomes: dict[str, list[Outcome]], method_name: str, configured: str, other: str
) -> dict[str, Any]:
    """Both loops with each KV cache kind, from one race: tokens/s, the method's speedup over
    autoregressive decoding with the same cache, and whether the tokens equal the configured cache's."""
    names = {
        configured: (AUTOREGRESSIVE, method_name),
        other: (kv_cache_name(AUTOREGRESSIVE, other), kv_cache_name(method_name, other)),
    }
    rows = {}
    for kind, (autoregressive, method) in names.items():
        rows[kind] = {
            "autoregressive_tokens_per_s": _tokens_per_s(outcomes[autoregressive]),
            "method_tokens_per_s": _tokens_per_s(outcomes[method]),
            "speedup": _per_token_speedup(outcomes[autoregressive], outcomes[method]),
            "identical_to_configured": all(
                a.tokens == b.tokens for a, b in zip(outcomes[method], outcomes[method_name])
            )
            and all(a.tokens == b.tokens for a, b in zip(outcomes[autoregressive], outcomes[AUTOREGRESSIVE])),
        }
    return {
        "configured": configured,
        "rows": rows,
        "static_over_dynamic_autoregressive": rows["static"]["autoregressive_tokens_per_s"]
        / rows["dynamic"]["autoregressive_tokens_per_s"],
        "static_over_dynamic_method": rows["static"]["method_tokens_per_s"]
        / rows["dynamic"]["method_tokens_per_s"],
    }


def _tokens_per_s(outcomes: list[Outcome]) -> float:
    return sum(len(o.tokens) for o in outcomes) / sum(o.seconds for o in outcomes)


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


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def summary(result: dict[str, Any]) -> str:
    """A few plain-text lines: speed per contender, the cost model and the targets."""
    lines = [f"model={result['model']} skip={result.get('skip', {}).get('source')}"]
    width = max((len(name) for name in result.get("speed", {})), default=0)
    for name, row in result.get("speed", {}).items():
        identity = ", ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith("identical_to_"))
        lines.append(
            f"  {name:<{width}} {row['tokens_per_s']:8.2f} tok/s  outside forward "
            f"{row['overhead_fraction_measured']:6.1%}  {identity}"
        )
    race = result.get("cost_model")
    if race:
        cost = race["cost_model"]
        lines.append(
            f"  speedup measured {race['speedup']:.3f}, predicted {cost['predicted_speedup']:.3f}; "
            f"efficiency {cost['efficiency']:.3f} {_ci(cost.get('efficiency_ci'))} "
            f"(baseline {cost['baseline_efficiency']:.3f}); speedup efficiency "
            f"{cost['speedup_efficiency']:.3f} {_ci(cost.get('speedup_efficiency_ci'))}; "
            f"profile drift {result['profile'].get('drift', 1.0):.3f}"
        )
    if "kv_cache" in result:
        for kind, row in result["kv_cache"]["rows"].items():
            lines.append(
                f"  kv_cache={kind:<8} AR {row['autoregressive_tokens_per_s']:8.2f} tok/s, method "
                f"{row['method_tokens_per_s']:8.2f} tok/s, speedup {row['speedup']:.3f}"
            )
    for name, row in result.get("attention", {}).get("rows", {}).items():
        if row["available"]:
            lines.append(
                f"  attention={name:<18} full step {row['full_step_s'] * 1e3:8.3f} ms, draft/full "
                f"{row['draft_to_full']:.3f}, verify(K)/full {row['verify_to_full'][-1]:.3f}"
            )
        else:
            lines.append(f"  attention={name:<18} not profiled: {row['reason']}")
    for label, check in result["targets"].items():
        value = "-" if check["value"] is None else f"{check['value']:.3f}"
        verdict = "not measured" if check["passed"] is None else ("met" if check["passed"] else "MISSED")
        lines.append(f"  target {label}: {value} ({verdict})")
    return "\n".join(lines)
