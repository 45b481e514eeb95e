"""One PNG of a benchmark result: cost profile, speed of every contender, memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402


def _profile_panel(axis, profile: dict[str, Any]) -> None:
    num_draft_tokens = list(range(len(profile["verify_to_full"])))
    axis.plot(num_draft_tokens, profile["verify_to_full"], "o-", label="verify k drafts (k + 1 tokens)")
    axis.axhline(profile["draft_to_full"], color="tab:orange", label="draft step")
    axis.axhline(1.0, color="grey", linestyle=":", label="full step")
    axis.set_xlabel("k (drafted tokens)")
    axis.set_ylabel("time / full step")
    axis.set_title(f"cost profile at {profile['context_length']} cached tokens")
    axis.legend(fontsize=7)


def _speed_panel(axis, result: dict[str, Any]) -> None:
    rows = result.get("speed", {})
    names = list(rows)
    axis.bar(names, [rows[name]["tokens_per_s"] for name in names], color="tab:blue")
    axis.set_ylabel("tokens / s")
    axis.set_title("greedy decoding speed (same prompts, interleaved)")
    axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    cost = result.get("cost_model")
    if cost:
        axis.text(
            0.02, 0.95,
            f"speedup measured {cost['speedup']:.2f}, predicted {cost['cost_model']['predicted_speedup']:.2f}\n"
            f"efficiency {cost['cost_model']['efficiency']:.2f}, "
            f"overhead {result['forward_clock']['overhead_fraction_measured']:.1%}",
            transform=axis.transAxes, va="top", fontsize=7,
        )  # fmt: skip


def _memory_panel(axis, memory: dict[str, Any]) -> None:
    if not memory or not memory.get("rows"):
        axis.text(0.5, 0.5, "memory not measured", ha="center")
        return
    rows = memory["rows"]
    names = list(rows)
    axis.bar(names, [rows[name]["extra_bytes"] / 2**20 for name in names], color="tab:green")
    axis.set_ylabel("peak above resident (MiB)")
    axis.set_title("peak memory of one decode")
    axis.tick_params(axis="x", labelrotation=30, labelsize=7)


def plot_bench(result: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if "profile" in result:
        _profile_panel(axes[0], result["profile"])
    _speed_panel(axes[1], result)
    _memory_panel(axes[2], result.get("memory", {}))
    figure.suptitle(
        f"{result['model']} on {result['environment']['device']} ({result['environment']['cpu']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
