"""Skip-set selectors (search.strategy) and the teacher-forced acceptance estimate, on random tiny Llamas.

Acceptance is controlled as elsewhere in the suite: the sub-blocks of a chosen plan get their output
projections scaled (`skip_output_scale`); at 0.0 they add exactly nothing, so skipping them is exact and
every selector must find them."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch
import yaml
from scipy.stats import spearmanr

from replicate.config import compose_config
from replicate.core.draft_exit import StaticThreshold
from replicate.core.models import load_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan, skip_sublayers
from replicate.search import compose_search_config
from replicate.search.dev_sequences import draft_attention_mask, reference_sequences
from replicate.search.objective import TrialEvaluator, TrialSetup, collect_dev_prompts
from replicate.search.run import run_search
from replicate.search.rundir import read_trials
from replicate.search.selectors.cosine_similarity import (
    cosine_family,
    ranked_candidates,
    sub_block_similarities,
)
from replicate.search.selectors.dynamic_programming import skip_set_dynamic_programming
from replicate.search.selectors.knapsack import solve_knapsack
from replicate.search.selectors.residual_stream import (
    apply_sub_block,
    layer_inputs,
    residual_stream,
    sub_block_order,
)
from replicate.search.space import SearchSpace
from replicate.search.sub_block_costs import weight_sub_block_costs
from replicate.search.teacher_forced import TeacherForcedEvaluator, TraceLimits, simulate_trace

# tiny_llama's plan (attention 1, MLP 2) with those two sub-blocks contributing exactly nothing.
EXACT = ["model=tiny_llama", "model.skip_output_scale=0.0", "model.num_hidden_layers=6"]
SELECTION = [
    *EXACT,
    "search.dev_tasks=[humaneval]",
    "search.prompts_per_task=2",
    "search.max_new_tokens=10",
    "search.objective=predicted_speedup",
    "search.cost_profile.source=weights",
    "search.acceptance_estimate=teacher_forced",
    "search.progress_bar=false",
    "search.warmup_decodes=0",
    "search.acquisition.random_samples=300",
]
EXACT_BLOCKS = [("attention", 1), ("mlp", 2)]


def _loaded(*overrides):
    return load_model(compose_config([*EXACT, *overrides]).model)


def test_residual_stream_is_the_models_own_forward():
    loaded = _loaded("model.skip_output_scale=0.5")
    ids = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119]])
    inputs = layer_inputs(loaded.model, ids)
    states = residual_stream(loaded.model, inputs)
    assert len(states) == 2 * 6 + 1
    with torch.inference_mode():
        expected = loaded.model.model(input_ids=ids, use_cache=False).last_hidden_state
        assert torch.allclose(loaded.model.model.norm(states[-1]), expected, atol=1e-5)
        # A skipped sub-block is the identity: running the others in order is the draft's forward.
        plan = SkipPlan.from_lists([0, 3], [2])
        state = inputs.embeddings
        for kind, layer in sub_block_order(6):
            if layer not in (plan.attention if kind == "attention" else plan.mlp):
                state = apply_sub_block(loaded.model, (kind, layer), state, inputs)
        with skip_sublayers(loaded.model, plan):
            draft = loaded.model.model(input_ids=ids, use_cache=False).last_hidden_state
        assert torch.allclose(loaded.model.model.norm(state), draft, atol=1e-5)


def test_draft_masks_see_the_prompt_and_the_right_keys():
    # Prompt of 2, 3 drafted rows: 5 cached full-model keys (prompt + y_0..y_2), then the draft's 3 keys.
    full = draft_attention_mask(2, 3, "full", torch.float32)[0, 0] == 0
    draft = draft_attention_mask(2, 3, "draft", torch.float32)[0, 0] == 0
    assert full.int().tolist() == [
        [1, 1, 0, 0, 0, 1, 0, 0],
        [1, 1, 1, 0, 0, 0, 1, 0],
        [1, 1, 1, 1, 0, 0, 0, 1],
    ]
    assert draft.int().tolist() == [
        [1, 1, 0, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 0, 1, 1, 1],
    ]
    with pytest.raises(ValueError, match="context"):
        draft_attention_mask(2, 3, "oracle", torch.float32)


def test_simulated_trace_follows_the_decoding_loop():
    continuation = list(range(100, 112))  # 12 tokens; row j guesses continuation[j + 1]
    guesses = list(range(101, 112))
    guesses[3] = 0  # wrong guess for continuation[4]
    trace = simulate_trace(
        guesses, [1.0] * 11, continuation, TraceLimits(12, 4, frozenset()), StaticThreshold(0.0)
    )
    # Cycle 1 from 1 committed: drafts rows 0-3, accepts 3 (rows 0-2), commits 4 -> 5 committed.
    # Cycle 2: rows 4-7 all right, commits 5 -> 10. Cycle 3: 12 - 10 - 1 = 1 draft, right, commits 2.
    assert trace["drafted"] == [4, 4, 1] and trace["accepted"] == [3, 4, 1]
    assert trace["new_tokens"] == 12 and trace["full_forwards"] == 4
    low = [1.0] * 11
    low[1] = 0.1  # draft-exit stops after row 1 (that token is still verified)
    assert (
        simulate_trace(guesses, low, continuation, TraceLimits(12, 4, frozenset()), StaticThreshold(0.5))[
            "drafted"
        ][0]
        == 2
    )


FIXED_LENGTH = ["method=self_speculative", "method.max_draft_tokens=4"]  # threshold 0: always K drafts


@pytest.mark.parametrize(
    "plan,method,context",
    [
        (SkipPlan(), FIXED_LENGTH, "full"),
        (SkipPlan.from_lists([1], [2]), FIXED_LENGTH, "full"),
        (SkipPlan.from_lists([1], [2]), FIXED_LENGTH, "draft"),
        (SkipPlan.from_lists([1], [2]), [], "full"),  # the adaptive draft-exit, its threshold carried over
    ],
    ids=["empty-fixed-full", "silent-fixed-full", "silent-fixed-draft", "silent-adaptive-full"],
)
def test_teacher_forced_equals_decoding_when_the_draft_is_exact(plan, method, context):
    cfg = compose_search_config([*SELECTION, *method, f"search.teacher_forced.context={context}"])
    loaded = load_model(cfg.model)
    prompts = collect_dev_prompts(cfg)
    costs = weight_sub_block_costs(loaded, cfg.method.max_draft_tokens)
    setup = TrialSetup(loaded, cfg.method, SamplingConfig(), prompts, cfg.search)
    decoded, forced = TrialEvaluator(setup, 0, costs), TeacherForcedEvaluator(setup, costs)
    truth, estimate = decoded.evaluate(plan), forced.evaluate(plan)
    assert estimate["cycles"] == truth["cycles"]
    for key in ("acceptance", "predicted_speedup"):
        assert estimate[key] == pytest.approx(truth[key]), key
    assert estimate["agreement"] == 1.0 and estimate["search_cost"]["draft_forwards"] == len(prompts)


def test_teacher_forced_ranks_damped_sets_like_decoding():
    cfg = compose_search_config(
        [*SELECTION, *FIXED_LENGTH, "model.skip_output_scale=0.3", "search.max_new_tokens=24"]
    )
    loaded = load_model(cfg.model)
    prompts = collect_dev_prompts(cfg)
    costs = weight_sub_block_costs(loaded, cfg.method.max_draft_tokens)
    setup = TrialSetup(loaded, cfg.method, SamplingConfig(), prompts, cfg.search)
    decoded, forced = TrialEvaluator(setup, 0, costs), TeacherForcedEvaluator(setup, costs)
    rng = random.Random(0)
    blocks = [(kind, layer) for kind in ("attention", "mlp") for layer in range(6)]
    plans = [SearchSpace.plan_of(rng.sample(blocks, rng.choice([1, 2, 3]))) for _ in range(8)]
    truth = [decoded.evaluate(plan)["acceptance"] for plan in plans]
    estimate = [forced.evaluate(plan)["acceptance"] for plan in plans]
    assert spearmanr(truth, estimate).statistic > 0.8, (truth, estimate)


def test_teacher_forced_refuses_what_it_cannot_estimate(tmp_path):
    cfg = compose_search_config([*SELECTION, "search.objective=tokens_per_s"])
    with pytest.raises(ValueError, match="predicted_speedup"):
        run_search(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="strategy"):
        run_search(compose_search_config([*SELECTION, "search.strategy=greedy"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_cosine_similarity_ranks_the_silent_sub_blocks_first():
    loaded = _loaded()
    sequences, _ = reference_sequences(loaded, [torch.tensor([[256, 100, 101, 102]])], 12, keep_cache=False)
    inputs = layer_inputs(loaded.model, sequences[0].sequence_ids())
    similarities = sub_block_similarities([residual_stream(loaded.model, inputs)], [4], 6)
    assert similarities[("attention", 1)] == pytest.approx(1.0) and similarities[("mlp", 2)] == pytest.approx(
        1.0
    )
    assert all(value < 0.9999 for block, value in similarities.items() if block not in EXACT_BLOCKS)
    candidates = [("attention", 0), ("attention", 1), ("attention", 4), ("mlp", 2), ("mlp", 5)]
    ranking = ranked_candidates(similarities, candidates, ["attention", "mlp"])
    assert set(ranking[:2]) == set(EXACT_BLOCKS) and set(ranking) == set(candidates)
    assert ranked_candidates(similarities, candidates, ["mlp"]) in ([("mlp", 2), ("mlp", 5)],)
    family = cosine_family(ranking, min_skipped=1, max_skipped=3)
    assert [len(blocks) for blocks in family] == [1, 2, 3] and family[1] == ranking[:2]
    with pytest.raises(ValueError, match="min_skipped"):
        cosine_family(ranking[:2], min_skipped=3, max_skipped=4)


def test_dynamic_programming_finds_the_silent_pair():
    loaded = _loaded()
    sequences, _ = reference_sequences(loaded, [torch.tensor([[256, 100, 101, 102]])], 12, keep_cache=False)
    inputs = [layer_inputs(loaded.model, sequences[0].sequence_ids())]
    streams = [residual_stream(loaded.model, inputs[0])]
    candidates = SearchSpace(6).sub_blocks
    result = skip_set_dynamic_programming(loaded.model, inputs, streams, [4], candidates, max_skipped=3)
    assert sorted(result.skipped) == [0, 1, 2, 3]
    assert sorted(result.skipped[2]) == EXACT_BLOCKS and result.similarity[2] == pytest.approx(1.0)
    assert result.similarity[3] < 1.0 - 1e-6 and result.skipped[0] == []
    restricted = skip_set_dynamic_programming(
        loaded.model, inputs, streams, [4], [("attention", 0), ("attention", 1), ("mlp", 4)], max_skipped=2
    )
    assert all(
        set(blocks) <= {("attention", 0), ("attention", 1), ("mlp", 4)}
        for blocks in restricted.skipped.values()
    )


def test_knapsack_is_exact_on_small_instances():
    rng = random.Random(1)
    for _ in range(30):
        count = rng.randint(1, 7)
        weights = [rng.choice([0.0, rng.uniform(0, 0.5)]) for _ in range(count)]
        savings = [rng.choice([1.0, 2.0]) for _ in range(count)]
        budget, low, high = rng.uniform(0, 1), rng.randint(0, 2), rng.randint(1, 5)
        chosen = solve_knapsack(weights, savings, budget, low, high, resolution=1000)
        feasible = [
            subset
            for size in range(low, min(high, count) + 1)
            for subset in itertools.combinations(range(count), size)
            if sum(-(-weights[i] * 1000 // 1) for i in subset) <= budget * 1000 + 1e-9
        ]
        if not feasible:
            assert chosen is None
            continue
        best = max(sum(savings[i] for i in subset) for subset in feasible)
        assert chosen is not None and low <= len(chosen) <= high
        assert sum(savings[i] for i in chosen) == pytest.approx(best)
        assert sum(weights[i] for i in chosen) <= budget + 1e-3


@pytest.mark.parametrize("strategy", ["cosine_similarity", "knapsack", "dynamic_programming", "bayesian"])
def test_every_strategy_runs_within_bounds_and_writes_a_search_output(tmp_path, strategy):
    bounds = ["search.min_skipped=1", "search.max_skipped=3", "search.iterations=3", "search.init_points=1"]
    candidates = "search.candidates={attention: [0, 1, 4], mlp: [2, 5]}"
    cfg = compose_search_config([*SELECTION, *bounds, candidates, f"search.strategy={strategy}"])
    summary = run_search(cfg, tmp_path)
    trials = read_trials(tmp_path)
    allowed = {("attention", 0), ("attention", 1), ("attention", 4), ("mlp", 2), ("mlp", 5)}
    for trial in trials:
        blocks = {("attention", i) for i in trial["attention"]} | {("mlp", i) for i in trial["mlp"]}
        assert 1 <= trial["num_skipped"] <= 3 and blocks <= allowed
    assert summary["best"]["objective"] == max(trial["objective"] for trial in trials)
    assert summary["search_cost"]["total"]["draft_forwards"] > 0 and (tmp_path / "trace.png").stat().st_size
    snippet = yaml.safe_load((tmp_path / "best_skip.yaml").read_text())["skip"]
    assert [snippet["attention"], snippet["mlp"]] == [summary["skip"]["attention"], summary["skip"]["mlp"]]
    if strategy != "bayesian":
        assert f"{strategy} selection" in snippet["source"] and [t["kind"] for t in trials] == [
            strategy
        ] * len(trials)
        assert json.loads((tmp_path / "selection.json").read_text())["strategy"] == strategy
        # The exact pair is among the candidates and changes nothing: every selector's family must hold it.
        assert ([1], [2]) in [(trial["attention"], trial["mlp"]) for trial in trials]
    if strategy == "cosine_similarity":  # rerunning resumes: every set is read back, none scored again
        again = run_search(cfg, tmp_path)
        assert again["evaluated_this_session"] == 0 and again["best"] == summary["best"]


def test_a_search_recorded_before_strategies_existed_still_resumes(tmp_path):
    overrides = [*SELECTION, "search.acceptance_estimate=decoded", "search.init_points=1"]
    run_search(compose_search_config([*overrides, "search.iterations=0"]), tmp_path)
    path = tmp_path / "search_setup.json"
    record = json.loads(path.read_text())
    for key in ("strategy", "acceptance_estimate"):
        del record["setup"]["search"][key]
    del record["setup"]["search"]["cost_profile"]["file"]
    path.write_text(json.dumps(record))
    summary = run_search(compose_search_config([*overrides, "search.iterations=1"]), tmp_path)
    assert summary["trials"] == 2 and summary["evaluated_this_session"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["cosine_similarity", "knapsack", "dynamic_programming"])
def test_selectors_on_smollm2(tmp_path, strategy):
    """The CPU preset's bounds and candidates on SmolLM2, small: about a minute each."""
    overrides = ["model=smollm2_135m", "search=smollm2_cpu", f"search.strategy={strategy}"]
    overrides += ["search.acceptance_estimate=teacher_forced", "search.prompts_per_task=2"]
    overrides += ["search.max_new_tokens=12", "search.cost_profile.repeats=1", "search.max_skipped=3"]
    summary = run_search(compose_search_config(overrides), tmp_path)
    candidates = compose_search_config(overrides).search.candidates
    assert set(summary["skip"]["attention"]) <= set(candidates.attention)
    assert set(summary["skip"]["mlp"]) <= set(candidates.mlp) and 1 <= summary["best"]["num_skipped"] <= 3
    assert 0 < summary["best"]["predicted_speedup"] < 2 and summary["family_size"] == len(
        read_trials(tmp_path)
    )
