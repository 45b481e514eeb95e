"""Paper Tables 1 and 2 in shape on a CPU (`conf/experiment/table1_cpu.yaml`, `table2_cpu.yaml`): one markdown
table from the finished run directories under a sweep directory, beside the paper's numbers the runs recorded
(their config's `paper` block), with what the same acceptance would give on the paper's A100 (LLaMA-2/
CodeLLaMA-13B).

    python -m replicate.report.cpu_tables outputs/experiments/table2_cpu [--output report.md]

The A100 projection: the paper publishes no cost profile, but its Table 3 (LLaMA-2-13B, CNN/DM, greedy, fixed
K = 2, 4, 6, 8: acceptance r and measured speedup S) determines one through the cost model this project uses,
S = (r K + 1) / (K d + v) with d = draft step / full step and v = verify pass / full step: a least-squares
line through K -> (r K + 1) / S gives d (slope) and v (intercept). `implied_paper_profile` computes it from the
numbers in `replicate.bench.gpu.PAPER_FIXED_K` (d = 0.51, v = 1.06: a verify pass over up to 9 tokens costs
about one step on the A100, unlike this CPU; the fit's largest residual is 0.04%, and the constant verify cost
is extrapolated from K <= 8 to K = 12). The projection prices a run's acceptance with that profile at the
run's K: every logged cycle (its drafted count) and full forward of the method and of its baseline is priced
with it (`replicate.cost_model.predicted_speedup`, prefill left out), i.e. with the paper's 13B skip set's
draft cost, not this model's (a smaller set drafts dearer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from replicate.bench.gpu import PAPER_FIXED_K
from replicate.cost_model import Trace, predicted_speedup
from replicate.run.rundir import read_samples


def implied_paper_profile(rows: Sequence[tuple[int, float, float]] = PAPER_FIXED_K) -> dict[str, Any]:
    """(d, v) of the paper's A100 13B profile from Table 3's (K, acceptance, speedup) rows, as a cost profile
    in full-step units (full_step_s = 1), with the fit's largest relative residual."""
    ks = np.array([k for k, _, _ in rows], dtype=float)
    cycle = np.array([(r * k + 1) / s for k, r, s in rows])  # K d + v, in full steps
    slope, intercept = np.polyfit(ks, cycle, 1)
    residual = float(np.max(np.abs(slope * ks + intercept - cycle) / cycle))
    max_k = 12  # Table 3 covers K <= 8; a constant verify cost is extrapolated to the paper's K = 12
    return {
        "full_step_s": 1.0,
        "draft_step_s": float(slope),
        "verify_s": [float(intercept)] * (max_k + 1),
        "source": "implied by paper Table 3 (LLaMA-2-13B, A100): least squares of (rK+1)/S = K d + v",
        "max_relative_residual": residual,
    }


def a100_projection(run_dir: Path, profile: Mapping[str, Any]) -> float:
    """The speedup `profile` predicts for the run's own decodes (each cycle's drafted count, full forwards and
    tokens, method and its autoregressive baseline), prefill left out (it was timed on this machine)."""

    def trace(record) -> Trace:
        return Trace(record.new_tokens, record.full_forwards, record.drafted, 0.0)

    records = read_samples(run_dir)
    return predicted_speedup(
        [trace(r.method) for r in records], [trace(r.baseline) for r in records], profile
    )


def _interval(values: Sequence[float] | None, digits: int = 3) -> str:
    return "n/a" if not values else f"[{values[0]:.{digits}f}, {values[1]:.{digits}f}]"


def _row(run_dir: Path, a100: Mapping[str, Any]) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    method = config["method"]
    cost = metrics.get("cost_model") or {}
    scores, baseline = metrics["task_scores"], metrics["baseline_task_scores"]
    return {
        "task": config["task"]["name"],
        "method": method["name"],
        "K": method.get("max_draft_tokens"),
        "n": scores["n_problems"] if "n_problems" in scores else scores["n"],
        "metric": scores["metric"],
        "score": scores["score"],
        "score_ci": [scores["ci_low"], scores["ci_high"]],
        "ar_score": baseline["score"],
        "ar_score_ci": [baseline["ci_low"], baseline["ci_high"]],
        "identical_fraction": metrics["identical_fraction"],
        "acceptance": metrics["acceptance_rate"],
        "acceptance_ci": metrics["acceptance_rate_ci"],
        "tokens_per_full_forward": metrics["mean_accepted_length"],
        "speedup": metrics["speedup"],
        "speedup_ci": metrics["speedup_ci"],
        "predicted_speedup": cost.get("predicted_speedup"),
        "speedup_efficiency_ci": cost.get("speedup_efficiency_ci"),
        "a100_projection": a100_projection(run_dir, a100),
        "paper": config["paper"],
        "environment": metrics["environment"],
        "run_dir": str(run_dir),
    }


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    a100 = implied_paper_profile()
    runs = sorted(path.parent for path in Path(sweep_dir).rglob("metrics.json"))
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json) under {sweep_dir}")
    return [_row(run, a100) for run in runs]


def _paper_lines(paper: Mapping[str, Any]) -> list[str]:
    """The paper's numbers a run recorded (`paper:` of table1_cpu.yaml or table2_cpu.yaml), one line per row."""
    if paper["table"] == 2:
        row = next(row for row in paper["rows"] if row["metric"] == "pass@1")
        return [
            f"Paper Table 2 ({paper['model']}, A100, adaptive draft-exit K = 12, 164 problems): pass@1 AR "
            f"{row['ar']:.3f}, self-speculative {row['ssd']:.3f}, speedup {row['speedup']:.3f}x."
        ]
    return [
        f"Paper Table 1 ({paper['model']}, A100, adaptive draft-exit K = 12, 1000 items, greedy), {row['task']}: "
        f"{paper['metric']} AR {row['ar']:.3f}, self-speculative {row['ssd']:.3f}, speedup {row['speedup']:.3f}x."
        for row in paper["rows"]
    ]


def render(rows: Sequence[Mapping[str, Any]]) -> str:
    a100 = implied_paper_profile()
    lines = [
        "| task | method | K | n | metric | AR [95% CI] | method [95% CI] | identical | acceptance [95% CI] "
        "| tokens / full forward | speedup measured [95% CI] | predicted (cost model) | measured / predicted "
        "[95% CI] | A100 13B projection |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        predicted = row["predicted_speedup"]
        efficiency = None if predicted is None else row["speedup"] / predicted
        projection = row["a100_projection"]
        lines.append(
            f"| {row['task']} | {row['method']} | {row['K']} | {row['n']} | {row['metric']} | "
            f"{row['ar_score']:.3f} {_interval(row['ar_score_ci'])} | {row['score']:.3f} "
            f"{_interval(row['score_ci'])} | "
            f"{row['identical_fraction']:.3f} | {row['acceptance']:.3f} {_interval(row['acceptance_ci'])} | "
            f"{row['tokens_per_full_forward']:.2f} | {row['speedup']:.3f} {_interval(row['speedup_ci'])} | "
            f"{'n/a' if predicted is None else f'{predicted:.3f}'} | "
            f"{'n/a' if efficiency is None else f'{efficiency:.3f}'} {_interval(row['speedup_efficiency_ci'])} | "
            f"{'n/a' if projection is None else f'{projection:.2f}'} |"
        )
    papers = {json.dumps(row["paper"], sort_keys=True): row["paper"] for row in rows}
    lines += ["", *[line for paper in papers.values() for line in _paper_lines(paper)]]
    lines.append(
        f"A100 profile implied by paper Table 3: draft step {a100['draft_step_s']:.3f}, verify pass "
        f"{a100['verify_s'][0]:.3f} full steps (largest relative residual of the fit "
        f"{a100['max_relative_residual']:.3f})."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicate.report.cpu_tables", description=__doc__.split("\n")[0]
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="default: <sweep_dir>/cpu_table.md")
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir)
    text = render(rows)
    output = args.output or args.sweep_dir / "cpu_table.md"
    output.write_text(text)
    (output.with_suffix(".json")).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
