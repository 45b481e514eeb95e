"""Issue 14's comparison: every skip-set strategy on one footing, then each found set decoded on held-out items.

    python -m studies.selection_experiment [--target cpu|gpu] [key=value ...]

Reads `conf/selection_experiment.yaml` (the target's block; dotted overrides apply to it) and, in
`output_dir`:

1. measures one cost profile (`cost_profile.json`, the search preset's settings with `search_overrides`,
   which every search gets too) that every search uses
   (`search.cost_profile.file`), so predicted speedups are comparable across strategies;
2. runs every search of `searches` through the search CLI (`python -m replicate.search`, one subprocess
   each, into `search/<label>`), timing it;
3. decodes every distinct found set, and every `reference_sets` entry, with the runner (`python -m replicate`,
   into `eval/<set>/<task>`) on the held-out items of each task;
4. writes `results.json` and `results.md` (the tables of docs/search.md).

Subprocesses run with `OMP_NUM_THREADS=torch_threads`. Finished searches and runner directories are read
back, not run again, so rerunning resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replicate.config import CONF_DIR
from replicate.core.models import load_model
from replicate.core.skipping import SkipPlan
from replicate.run.rundir import read_jsonl, write_atomic
from replicate.run.runner import encode_prompt
from replicate.search import compose_search_config
from replicate.search.evaluators import COSTS_FILE, cost_profile
from replicate.search.objective import collect_dev_prompts
from replicate.search.sub_block_costs import trace_predicted_speedup
from studies.selection_report import markdown_tables

CONFIG_FILE = CONF_DIR / "selection_experiment.yaml"


def load_target(target: str, overrides: Sequence[str] = (), path: Path = CONFIG_FILE) -> DictConfig:
    """The target's block of `conf/selection_experiment.yaml` with dotted overrides (e.g. evaluation.n_samples=2)."""
    experiment = OmegaConf.load(path)
    if target not in experiment:
        raise SystemExit(f"no target {target!r} in {path}; known: {', '.join(experiment)}")
    return OmegaConf.merge(experiment[target], OmegaConf.from_dotlist(list(overrides)))


def set_label(attention: Sequence[int], mlp: Sequence[int]) -> str:
    """A directory name for a skip set, e.g. `a9_m3` (attention 9, MLP 3)."""
    return "_".join(
        ["a" + "-".join(map(str, attention)) if attention else "a", "m" + "-".join(map(str, mlp))]
    )


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def _environment(cfg: DictConfig) -> dict[str, str]:
    env = {**os.environ, **OFFLINE}
    if cfg.torch_threads is not None:
        env["OMP_NUM_THREADS"] = str(cfg.torch_threads)
    return env


def _run(command: list[str], env: Mapping[str, str], log: Path) -> float:
    """Run a subprocess, its output appended to `log`; returns its wall-clock seconds (error on failure)."""
    print("$ " + " ".join(command), flush=True)
    clock = time.perf_counter()
    with open(log, "a") as handle:
        result = subprocess.run(command, env=dict(env), stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"command failed (exit {result.returncode}); see {log}: {' '.join(command)}")
    return time.perf_counter() - clock


def shared_cost_profile(cfg: DictConfig, output_dir: Path) -> Path:
    """Measure the search preset's cost profile once into `output_dir/cost_profile.json` (kept on rerun)."""
    path = output_dir / COSTS_FILE
    if not path.exists():
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        search_cfg = compose_search_config(
            [f"model={cfg.model}", f"search={cfg.search_preset}", *cfg.search_overrides]
        )
        loaded = load_model(search_cfg.model)
        prompts = collect_dev_prompts(search_cfg)
        ids = [encode_prompt(loaded, p.text, search_cfg.search.max_new_tokens)[0] for p in prompts]
        cost_profile(search_cfg, loaded, ids, output_dir, required=True)
    return path


def run_searches(cfg: DictConfig, output_dir: Path, costs: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Every search of `cfg.searches`; returns label -> summary (with the measured wall time, load)."""
    results = {}
    for label, overrides in cfg.searches.items():
        run_dir = output_dir / "search" / label
        timing_path = run_dir / "experiment_timing.json"
        if not timing_path.exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            load_before = os.getloadavg()
            command = [sys.executable, "-m", "replicate.search", f"model={cfg.model}"]
            command += [f"search={cfg.search_preset}", *cfg.search_overrides, *overrides]
            command += [f"search.cost_profile.file={costs.resolve()}", "search.progress_bar=false"]
            seconds = _run([*command, f"hydra.run.dir={run_dir}"], env, output_dir / "searches.log")
            timing = {"wall_s": seconds, "load_before": load_before, "load_after": os.getloadavg()}
            write_atomic(timing_path, json.dumps(timing, indent=2) + "\n")
        summary = json.loads((run_dir / "summary.json").read_text())
        results[label] = {**summary, "experiment_timing": json.loads(timing_path.read_text())}
    return results


def _metric(metrics: Mapping[str, Any], key: str, where: Path) -> Any:
    if metrics.get(key) is None:
        raise ValueError(f"{where} has no {key}: a missing metric is an error, not 0")
    return metrics[key]


def evaluate_set(
    cfg: DictConfig,
    attention: list[int],
    mlp: list[int],
    output_dir: Path,
    costs: Mapping,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """Decode one set on every task with the runner; returns task -> its numbers."""
    evaluation, label = cfg.evaluation, set_label(attention, mlp)
    plan = SkipPlan.from_lists(attention, mlp)
    results = {}
    for task in evaluation.tasks:
        run_dir = output_dir / "eval" / label / task
        if not (run_dir / "metrics.json").exists():
            command = [sys.executable, "-m", "replicate", f"model={cfg.model}", f"task={task}"]
            command += [
                f"method={evaluation.method}",
                f"model.skip.attention=[{','.join(map(str, attention))}]",
            ]
            command += [f"model.skip.mlp=[{','.join(map(str, mlp))}]", f"n_samples={evaluation.n_samples}"]
            command += [f"max_new_tokens={evaluation.max_new_tokens}", *evaluation.overrides]
            load_before = os.getloadavg()
            _run([*command, f"hydra.run.dir={run_dir}"], env, output_dir / "evaluations.log")
            timing = {"load_before": load_before, "load_after": os.getloadavg()}
            write_atomic(run_dir / "experiment_timing.json", json.dumps(timing, indent=2) + "\n")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        where = run_dir / "metrics.json"
        records = read_jsonl(run_dir / "samples.jsonl")
        # The same trace scored with the searches' shared profile (prefill left out, as in the search).
        cycles = [
            {"drafted": r["method"]["drafted"], "full_forwards": r["method"]["full_forwards"],
             "new_tokens": r["method"]["new_tokens"]}
            for r in records
        ]  # fmt: skip
        results[task] = {
            "acceptance": _metric(metrics, "acceptance_rate", where),
            "acceptance_ci": _metric(metrics, "acceptance_rate_ci", where),
            "speedup": _metric(metrics, "speedup", where),
            "speedup_ci": _metric(metrics, "speedup_ci", where),
            "predicted_speedup_run_profile": _metric(metrics, "predicted_speedup", where),
            "predicted_speedup_search_profile": trace_predicted_speedup(cycles, costs, plan),
            "identical_fraction": _metric(metrics, "identical_fraction", where),
            "n_samples": _metric(metrics, "n_samples", where),
            "timing": json.loads((run_dir / "experiment_timing.json").read_text())
            if (run_dir / "experiment_timing.json").exists()
            else None,
        }
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="cpu", help="a block of conf/selection_experiment.yaml")
    parser.add_argument("--config", type=Path, default=CONFIG_FILE, help="another experiment file (tests)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides of the target, e.g. evaluation.n_samples=2"
    )
    args = parser.parse_args(argv)
    cfg = load_target(args.target, args.overrides, args.config)
    for key, value in OFFLINE.items():  # this process reads dev prompts too (the shared cost profile)
        os.environ.setdefault(key, value)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "experiment_config.yaml", OmegaConf.to_yaml(cfg))
    env = _environment(cfg)
    costs_path = shared_cost_profile(cfg, output_dir)
    costs = json.loads(costs_path.read_text())
    searches = run_searches(cfg, output_dir, costs_path, env)
    sets: dict[str, dict[str, Any]] = {}  # set label -> {attention, mlp, found_by}
    for label, summary in searches.items():
        skip = summary["skip"]
        entry = sets.setdefault(set_label(skip["attention"], skip["mlp"]), {**skip, "found_by": []})
        entry["found_by"].append(label)
    for label, skip in OmegaConf.to_container(cfg.reference_sets).items():
        entry = sets.setdefault(set_label(skip["attention"], skip["mlp"]), {**skip, "found_by": []})
        entry["found_by"].append(label)
    for entry in sets.values():
        entry["tasks"] = evaluate_set(cfg, entry["attention"], entry["mlp"], output_dir, costs, env)
    results = {
        "config": OmegaConf.to_container(cfg),
        "cost_profile": costs,
        "searches": searches,
        "sets": sets,
    }
    write_atomic(output_dir / "results.json", json.dumps(results, indent=2) + "\n")
    tables = markdown_tables(results)
    write_atomic(output_dir / "results.md", tables)
    print(tables)
    return results


if __name__ == "__main__":
    main()
