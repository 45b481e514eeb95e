"""The selection experiment (conf/selection_experiment.yaml): every target's searches compose with the search CLI's
config, its evaluation names real tasks and methods, and its results are read back strictly."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from replicate.config import compose_config, options
from replicate.search import compose_search_config
from replicate.search.config import STRATEGIES
from studies.selection_experiment import CONFIG_FILE, evaluate_set, load_target, set_label
from studies.selection_report import describe, search_table


@pytest.mark.parametrize("target", sorted(OmegaConf.load(CONFIG_FILE)))
def test_every_search_of_every_target_composes(target):
    cfg = load_target(target)
    strategies = set()
    for label, overrides in cfg.searches.items():
        search = compose_search_config(
            [f"model={cfg.model}", f"search={cfg.search_preset}", *cfg.search_overrides, *overrides]
        ).search
        assert search.strategy in STRATEGIES, label
        assert search.objective == "predicted_speedup"  # one shared profile scores every strategy
        strategies.add(search.strategy)
    assert strategies == set(STRATEGIES)  # every strategy is compared
    assert set(cfg.evaluation.tasks) <= set(options("task")) and cfg.evaluation.method in options("method")
    for skip in cfg.reference_sets.values():
        compose_config([f"model={cfg.model}", f"model.skip.attention={list(skip.attention)}"])
    assert load_target(target, ["evaluation.n_samples=2"]).evaluation.n_samples == 2


def test_the_cpu_reference_set_is_the_committed_one():
    committed = compose_config(["model=smollm2_135m"]).model.skip
    reference = load_target("cpu").reference_sets.committed
    assert (list(reference.attention), list(reference.mlp)) == (
        list(committed.attention),
        list(committed.mlp),
    )


def test_a_missing_metric_is_an_error(tmp_path):
    cfg = load_target("cpu", ["evaluation.tasks=[humaneval]"])
    run_dir = tmp_path / "eval" / set_label([9], [3]) / "humaneval"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"acceptance_rate": 0.9, "speedup": None}))
    (run_dir / "samples.jsonl").write_text("")
    with pytest.raises(ValueError, match="no acceptance_rate_ci"):
        evaluate_set(cfg, [9], [3], tmp_path, {}, {})


def test_tables_name_sets_and_costs():
    assert describe([9], [3]) == "attention 9 + MLP 3" and describe([], []) == "none"
    assert set_label([3, 9], []) == "a3-9_m"
    summary = {
        "acceptance_estimate": "teacher_forced",
        "best": {"attention": [9], "mlp": [3], "num_skipped": 2, "predicted_speedup": 0.8, "acceptance": 0.9},
        "search_cost": {"trials": {"evaluated": 5}, "total": {"full_forwards": 300, "draft_forwards": 40}},
        "experiment_timing": {"wall_s": 61.2, "load_before": [1.0, 1, 1], "load_after": [2.0, 1, 1]},
    }
    row = search_table({"knapsack": summary}).splitlines()[-1]
    assert row == (
        "| knapsack | teacher_forced | attention 9 + MLP 3 | 2 | 5 | 0.800 | 0.900 | 61 | 300 | 40 | 1.0 -> 2.0 |"
    )
