"""The comparison of methods (`conf/experiment/methods.yaml`): one row per task and method, and per task the
best of the project's methods against transformers' prompt lookup (the peer), each as a ratio to the
autoregressive baseline decoded in the same run (interleaved per sample) with its bootstrap interval.

Which methods are the project's and which is the peer is read from the registry: the peer is the method
whose config says `peer` (`TransformersPromptLookupConfig`); autoregressive decoding is the reference.
Nothing is measured here; a run without metrics is listed as missing, never as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from replicate.core.methods import method_config  # noqa: E402
from replicate.report.markdown import fmt, markdown_table, relative  # noqa: E402
from replicate.report.tables import RunResult  # noqa: E402

EXPERIMENT = "methods"
HEADERS = [
    "task", "method", "speedup [95% CI]", "tokens / full forward", "acceptance", "identical", "score",
    "baseline score", "draft sources (cycles)", "cost model: predicted speedup", "run",
]  # fmt: skip


def _interval(value, interval) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f}"


def _cost_model(run: RunResult) -> str:
    metrics = run.metrics
    if metrics.cost_model is not None:
        return fmt(metrics.cost_model.predicted_speedup)
    if metrics.cost_model_not_applicable:
        return f"n/a: {metrics.cost_model_not_applicable}"
    return "- (not measured)"


def _is_peer(run: RunResult) -> bool:
    return bool(getattr(method_config(run.config["method"]), "peer", False))


def _row(run: RunResult, root: Path) -> list[str]:
    config, metrics = run.config, run.metrics
    task, method = config["task"]["name"], config["method"]["name"]
    if metrics is None:
        return [task, method, run.status, *["-"] * (len(HEADERS) - 4), relative(run.path, root)]
    sources = ", ".join(f"{key} {value}" for key, value in sorted((metrics.draft_sources or {}).items()))
    return [
        task, method, _interval(metrics.speedup, metrics.speedup_ci), fmt(metrics.mean_accepted_length),
        fmt(metrics.acceptance_rate), fmt(metrics.identical_fraction), f"{fmt(metrics.score)} ({metrics.metric})",
        fmt(metrics.baseline_score), sources or "-", _cost_model(run), relative(run.path, root),
    ]  # fmt: skip


def verdicts(runs: Sequence[RunResult]) -> list[str]:
    """Per task: the best of the project's drafting methods (highest speedup) against the peer."""
    lines = []
    for task in sorted({run.config["task"]["name"] for run in runs}):
        finished = [run for run in runs if run.config["task"]["name"] == task and run.metrics is not None]
        peers = [run for run in finished if _is_peer(run)]
        ours = [run for run in finished if not _is_peer(run) and method_config(run.config["method"]).drafts]
        if not peers or not ours:
            lines.append(f"- {task}: the peer or the project's methods have no finished run: no verdict")
            continue
        peer, best = peers[0].metrics, max(ours, key=lambda run: run.metrics.speedup).metrics
        low, high = best.speedup_ci or (best.speedup, best.speedup)
        peer_low, peer_high = peer.speedup_ci or (peer.speedup, peer.speedup)
        if best.speedup >= peer.speedup:
            verdict = "at least matches"
        elif high >= peer_low:
            verdict = "below, intervals overlap"
        else:
            verdict = "behind (intervals disjoint)"
        lines.append(
            f"- {task}: best of ours {best.method} {_interval(best.speedup, best.speedup_ci)} vs "
            f"{peer.method} {_interval(peer.speedup, peer.speedup_ci)}: {verdict} "
            f"(ours/peer = {best.speedup / peer.speedup:.3f}; intervals [{low:.3f}, {high:.3f}] and "
            f"[{peer_low:.3f}, {peer_high:.3f}])"
        )
    return lines


def comparison_figure(runs: Sequence[RunResult], path: Path) -> Path:
    """Speedup (error bar: bootstrap interval) of every method, grouped by task; missing runs get no bar."""
    tasks = sorted({run.config["task"]["name"] for run in runs})
    methods = list(dict.fromkeys(run.config["method"]["name"] for run in runs))
    figure, axes = plt.subplots(figsize=(max(7.0, 1.2 * len(tasks) * len(methods) / 3 + 3), 4.5))
    width = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        for position, task in enumerate(tasks):
            found = [
                r for r in runs if r.config["task"]["name"] == task and r.config["method"]["name"] == method
            ]
            metrics = found[0].metrics if found else None
            if metrics is None or metrics.speedup is None:
                continue
            interval = metrics.speedup_ci
            error = None
            if interval:
                error = [[max(0.0, metrics.speedup - interval[0])], [max(0.0, interval[1] - metrics.speedup)]]
            axes.bar(
                position + (index - (len(methods) - 1) / 2) * width, metrics.speedup, width, yerr=error,
                capsize=2, label=method if position == 0 or not axes.get_legend_handles_labels()[1].count(method)
                else None, color=f"C{index}",
            )  # fmt: skip
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(tasks)), tasks)
    axes.set_ylabel("speedup over autoregressive (same run)")
    axes.set_title("Methods compared")
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes.legend(unique.values(), unique.keys(), fontsize=7, ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def comparison_section(runs: Sequence[RunResult], root: Path, out: Path) -> list[str]:
    """The section of report.md for the runs of the comparison experiment."""
    ordered = sorted(runs, key=lambda run: (run.config["task"]["name"], str(run.path)))
    lines = [
        "## Methods compared",
        "",
        "Each method against the autoregressive baseline decoded in its own run, interleaved per sample "
        "(speedup: the paper's ratio of mean time per token; 95% bootstrap interval). tokens / full forward: "
        "new tokens per full-model pass, prefill included. Draft sources: cycles drafted by the layer-skipped "
        "model (`model`), copied by n-gram match (`ngram`) or not drafted (`none`).",
        "",
    ]
    lines += markdown_table(HEADERS, [_row(run, root) for run in ordered]) + [""]
    lines += ["Best of the project's methods against transformers' prompt lookup, per task:", ""]
    lines += verdicts(ordered) + [""]
    path = comparison_figure(ordered, out / "figures" / "methods_speedup.png")
    lines += [f"![speedup per method and task]({path.relative_to(out)})", ""]
    return lines
