"""The methods beyond the paper: the n-gram matcher and the hybrid choice by hand, prompt lookup against
transformers' own (tokens and full forwards), the sampling law of every method that samples, the registry,
and the runner's records and refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from replicate.config import compose_config
from replicate.core.decoding import DecodeSettings, Speculation
from replicate.core.methods import METHODS, MethodTraits, load_method_modules, method_config, register_method
from replicate.core.ngram import NgramSettings, ngram_draft
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.lossless.matrix import adaptive
from replicate.lossless.reference import TinyModel, reference_tokens, tiny_model
from replicate.methods import prompt_lookup as prompt_lookup_module
from replicate.methods.hybrid import choose_draft, hybrid_decode
from replicate.methods.on_the_fly import OnTheFly, SkipSetSearch, neighbour, on_the_fly_decode, score_plans
from replicate.methods.prompt_lookup import prompt_lookup_decode
from replicate.methods.transformers_prompt_lookup import trace_from_passes
from replicate.paths import CONF_DIR
from replicate.run.runner import run
from replicate.schema import ConfigError
from tests.test_sampling import chi_square_p_value

GREEDY = SamplingConfig()
NO_EOS: frozenset[int] = frozenset()


# ---- the n-gram matcher, by hand ----


@pytest.mark.parametrize(
    "context, ngram, num, eos, expected",
    [
        ([1, 2, 3, 1, 2], 2, 3, (), [3, 1, 2]),  # [1, 2] recurs at 0: its continuation, to the context's end
        ([1, 2, 3, 1, 2], 2, 2, (), [3, 1]),  # at most num tokens
        ([5, 1, 7, 1, 8, 1], 2, 3, (), [7, 1, 8]),  # no bigram match; unigram 1: the leftmost occurrence
        ([7, 2, 5, 1, 2, 9, 1, 2], 2, 3, (), [9, 1, 2]),  # the bigram [1, 2] wins over the unigram [2] (-> 5)
        ([1, 2, 3, 0, 4, 1, 2], 2, 4, (0,), [3]),  # cut before the first EOS
        ([2, 7, 1, 2, 0, 1, 2], 2, 3, (0,), []),  # the bigram decides even when the cut leaves nothing
        ([1, 2, 3], 2, 3, (), []),  # nothing recurs
        ([1, 2], 2, 3, (), []),  # the suffix itself is no match
        ([3, 3], 2, 3, (), [3]),  # n <= len - 1: the unigram [3] at 0
        ([5], 2, 3, (), []),
        ([4, 1, 2, 3, 4, 1, 2], 3, 10, (), [3, 4, 1, 2]),  # trigram [4, 1, 2] at 0
    ],
)
def test_ngram_draft_by_hand(context, ngram, num, eos, expected):
    assert ngram_draft(context, ngram, num, frozenset(eos)) == expected


def test_ngram_draft_equals_transformers_candidate_generator():
    """An independent implementation: transformers' PromptLookupCandidateGenerator on random small-vocab
    contexts (many repeats), n-gram sizes 1-3, draft lengths 1-6, with and without an EOS."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(300):
        length = int(torch.randint(2, 30, (1,), generator=generator))
        context = torch.randint(0, 6, (1, length), generator=generator)
        ngram, num = 1 + trial % 3, 1 + trial % 6
        eos = torch.tensor([trial % 7]) if trial % 2 else None
        library = PromptLookupCandidateGenerator(eos, num, ngram, max_length=length + 100)
        candidates, _ = library.get_candidates(context)
        expected = candidates[0, length:].tolist()
        eos_ids = frozenset() if eos is None else frozenset(eos.tolist())
        assert ngram_draft(context[0].tolist(), ngram, num, eos_ids) == expected, (context, ngram, num, eos)


# ---- the hybrid choice, by hand ----


@pytest.mark.parametrize(
    "context, budget, expected",
    [
        ([1, 2, 3, 1, 2], 5, ("ngram", [3, 1, 2])),  # a match: the n-gram draft
        ([1, 2, 3, 1, 2], 2, ("ngram", [3, 1])),  # cut to the budget
        ([1, 2, 3, 4], 5, ("model", [])),  # no match: the layer-skipped model drafts
        ([1, 2, 3, 1, 2], 0, ("none", [])),  # no room for a draft
        ([1, 2, 0, 1, 2], 5, ("model", [])),  # the match's draft starts with EOS: nothing to copy
    ],
)
def test_hybrid_choice_by_hand(context, budget, expected):
    assert choose_draft(context, budget, NgramSettings(4, 2), frozenset({0})) == expected


def test_hybrid_records_its_choice_per_cycle():
    """Every cycle's recorded source is the choice the context before it dictates (recomputed here from the
    committed tokens with transformers' matcher), and only model cycles move the threshold."""
    plan = SkipPlan((1,), (2,))
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa", plan.attention, plan.mlp), seed=3)
    prompt = torch.tensor([[9, 4, 7, 9, 4, 11, 12]])
    speculation = Speculation(plan, 6, adaptive(), check_cache=True)
    result = hybrid_decode(model, prompt, DecodeSettings(40), speculation, NgramSettings(5, 2))
    assert result.tokens == reference_tokens(model, prompt, 40, None)
    assert {"ngram", "model"} <= set(result.draft_sources)
    committed, context = 1, prompt[0].tolist() + result.tokens
    for index, (source, drafted, accepted) in enumerate(
        zip(result.draft_sources, result.drafted, result.accepted)
    ):
        before = torch.tensor([context[: prompt.shape[1] + committed]])
        library = PromptLookupCandidateGenerator(None, 5, 2, max_length=10_000)
        candidates = library.get_candidates(before)[0][0, before.shape[1] :].tolist()
        budget = 40 - committed - 1
        expected = "none" if budget < 1 else ("ngram" if candidates[:budget] else "model")
        assert source == expected, index
        if source == "ngram":
            assert drafted == len(candidates[:budget])
        committed += accepted + 1
    thresholds = result.thresholds
    for index, source in enumerate(result.draft_sources[:-1]):
        if source == "ngram":  # the threshold only moves after cycles the model drafted
            assert thresholds[index + 1] == thresholds[index]


def count_passes(model, skipped_attention_layer: int):
    """Counters of the model's own calls: every forward pass, and the passes that ran the attention of a layer
    the draft skips (full passes; a draft pass swaps that module out, so its hook does not fire)."""
    counts = {"all": 0, "full": 0}
    model.register_forward_pre_hook(lambda *_: counts.__setitem__("all", counts["all"] + 1))
    attention = model.model.layers[skipped_attention_layer].self_attn
    attention.register_forward_pre_hook(lambda *_: counts.__setitem__("full", counts["full"] + 1))
    return counts


@pytest.mark.parametrize("method", ["self_speculative", "hybrid"])
def test_recorded_passes_and_drafts_are_the_model_calls(method):
    """The per-cycle record (`record_cycle`) against the model's own calls: full_forwards = full passes
    (prefill + one verify a cycle), draft_forwards = the draft passes, one entry per cycle in drafted /
    accepted / thresholds, and the committed tokens = the prefill's + accepted drafts + one a cycle."""
    from replicate.core.decoding import self_speculative_decode

    plan = SkipPlan((1,), (2,))
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa", plan.attention, plan.mlp), seed=3)
    prompt = torch.tensor([[9, 4, 7, 9, 4, 11, 12]])
    expected = reference_tokens(model, prompt, 40, None)
    counts = count_passes(model, plan.attention[0])
    speculation = Speculation(plan, 6, adaptive(), check_cache=True)
    if method == "hybrid":
        result = hybrid_decode(model, prompt, DecodeSettings(40), speculation, NgramSettings(5, 2))
    else:
        result = self_speculative_decode(model, prompt, DecodeSettings(40), speculation)
    assert result.tokens == expected
    cycles = len(result.drafted)
    assert cycles > 3 and len(result.accepted) == len(result.thresholds) == cycles
    assert result.full_forwards == counts["full"] == cycles + 1
    assert result.draft_forwards == counts["all"] - counts["full"] > 0
    assert 1 + sum(result.accepted) + cycles == len(result.tokens) == 40
    assert result.cache_lengths_ok


# ---- prompt lookup against transformers' ----


def _count_and_generate(model, prompt, max_new_tokens, num_tokens, ngram, eos):
    passes: list[tuple[int, int]] = []

    def hook(module, args, kwargs):
        passes.append((kwargs["past_key_values"].get_seq_length(), kwargs["input_ids"].shape[1]))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        output = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=max_new_tokens,
            prompt_lookup_num_tokens=num_tokens, max_matching_ngram_size=ngram, eos_token_id=eos, pad_token_id=0,
        )  # fmt: skip
        library = (output[0, prompt.shape[1] :].tolist(), list(passes))
        passes.clear()
        settings = DecodeSettings(max_new_tokens, GREEDY, frozenset() if eos is None else frozenset({eos}))
        ours = prompt_lookup_decode(
            model, prompt, settings, NgramSettings(num_tokens, ngram), check_cache=True
        )
        return library, ours, list(passes)
    finally:
        handle.remove()


@pytest.mark.parametrize("num_tokens, ngram", [(10, 2), (3, 1), (5, 3)])
def test_prompt_lookup_commits_the_same_tokens_with_the_same_forwards_as_transformers(num_tokens, ngram):
    model = tiny_model(TinyModel(2, 4, 2, 258, "sdpa"), seed=1)
    generator = torch.Generator().manual_seed(ngram)
    accepted = 0
    for trial in range(4):
        base = torch.randint(0, 20, (1, 6), generator=generator)
        prompt = torch.cat([base, base, base[:, :3]], dim=1)
        free = reference_tokens(model, prompt, 30, None)
        eos = free[7] if trial % 2 else None  # an EOS mid-way in half the trials
        (tokens, library_passes), ours, our_passes = _count_and_generate(
            model, prompt, 30, num_tokens, ngram, eos
        )
        assert ours.tokens == tokens and ours.cache_lengths_ok
        assert ours.full_forwards == len(library_passes) == len(our_passes)
        # the same pass at the same cache position every time; transformers drafts past the token budget in
        # the last pass (and crops after), this loop does not
        assert [start for start, _ in our_passes] == [start for start, _ in library_passes]
        length = prompt.shape[1]
        for index, ((start, fed), (_, theirs)) in enumerate(zip(our_passes, library_passes)):
            budget = 30 - (start - length + 1) - 1 if index else 29  # drafts the budget leaves room for
            assert fed == theirs or (fed < theirs and fed - 1 == budget), (index, fed, theirs, budget)
        accepted += sum(ours.accepted)
    assert accepted > 0  # the prompts repeat: drafts are accepted in some trials


def test_prompt_lookup_equals_transformers_on_smollm2(smollm2, humaneval_prompts):
    for text in humaneval_prompts[:2]:
        prompt = torch.tensor([smollm2.encode(text)])
        eos = sorted(smollm2.eos_token_ids)[0]
        (tokens, passes), ours, _ = _count_and_generate(smollm2.model, prompt, 32, 10, 2, eos)
        assert ours.tokens == tokens and ours.full_forwards == len(passes)


def test_the_peer_trace_is_read_from_the_passes():
    """transformers' passes (start, fed) -> drafted / accepted: prompt of 5, drafts 3 (2 accepted), then a
    plain step, then 2 drafts (both accepted) with 1 more token to end at 7 new tokens."""
    passes = [(0, 8), (7, 1), (8, 3)]
    # pass 0: 3 drafts, cache cropped to 7 = 5 + 2 accepted; pass 1: 0 drafts, next start 8 = 7 + 0 + 1;
    # pass 2: 2 drafts; 7 new tokens in all: 3 before pass 1, 4 before pass 2, so pass 2 committed 3 = 2 + 1.
    assert trace_from_passes(passes, 5, 7) == ([3, 0, 2], [2, 0, 2])


# ---- sampling law ----


def _small_model() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=5, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(5)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)  # peaked, uneven distributions: a wrong rule shows
    return model


@torch.inference_mode()
def _exact_pair_law(model, prompt: list[int]) -> np.ndarray:
    """p(t0, t1) of the first two sampled tokens at temperature 1, by enumeration."""
    first = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
    law = np.zeros((5, 5))
    for t0 in range(5):
        second = torch.softmax(model(torch.tensor([[*prompt, t0]])).logits[0, -1].float(), -1)
        law[t0] = (first[t0] * second).numpy()
    return law.ravel()


def _pair_counts(decode, trials: int) -> np.ndarray:
    counts = np.zeros(25)
    for seed in range(trials):
        tokens = decode(torch.Generator().manual_seed(seed)).tokens
        counts[tokens[0] * 5 + tokens[1]] += 1
    return counts


PROMPT = [1, 2, 3, 1, 2, 3, 1]  # n-gram matches at every step: copied drafts are verified every cycle
SAMPLED = SamplingConfig(temperature=1.0)


def _decoders(model):
    prompt = torch.tensor([PROMPT])
    plan = SkipPlan((0,), (1,))
    two, three = DecodeSettings(2, SAMPLED), DecodeSettings(3, SAMPLED)
    return {
        "prompt_lookup": lambda g: prompt_lookup_decode(model, prompt, two, NgramSettings(4, 2), g),
        "hybrid": lambda g: hybrid_decode(
            model, prompt, three, Speculation(plan, 4, adaptive()), NgramSettings(4, 2), g
        ),
        "on_the_fly": lambda g: on_the_fly_decode(
            model, prompt, three, OnTheFly(SkipSetSearch(0.0, 0.5, 4, 1, 4, 0), 4), g
        ),
    }


@pytest.mark.parametrize("method", ["prompt_lookup", "hybrid", "on_the_fly"])
def test_sampled_methods_keep_the_full_models_law(method):
    model = _small_model()
    law = _exact_pair_law(model, PROMPT)
    counts = _pair_counts(_decoders(model)[method], 1500)
    keep = law * counts.sum() >= 5  # Pearson's approximation needs expected counts of 5 or more
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(law[keep], law[~keep].sum())
    assert chi_square_p_value(observed, expected) > 1e-3


def test_the_law_check_catches_a_rule_that_trusts_copied_drafts(monkeypatch):
    """The same check fails a wrong rule: every copied draft accepted (the sampled run then repeats the
    prompt's pattern instead of following the model)."""
    model = _small_model()
    law = _exact_pair_law(model, PROMPT)

    def trusting(drafts, target_logits, sampling, generator):
        probs = torch.softmax(target_logits[len(drafts)].float(), -1)
        return len(drafts), int(torch.multinomial(probs, 1, generator=generator))

    monkeypatch.setattr(prompt_lookup_module, "copied_draft_acceptance", trusting)
    counts = _pair_counts(_decoders(model)["prompt_lookup"], 600)
    keep = law * counts.sum() >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    assert chi_square_p_value(observed, np.append(law[keep], law[~keep].sum())) < 1e-6


# ---- on-the-fly selection ----


def test_scoring_leaves_the_cache_bit_for_bit_and_prefers_the_damped_sub_blocks():
    """Scores equal a fresh computation (a new cache holding the full model's KV of the positions before the
    window, then the window with the set skipped); the cache is restored bit for bit; and the tiny model's
    damped set (drafting without it nearly agrees with the full model) beats a heavy other set."""
    from replicate.core.kv_cache import make_cache
    from replicate.core.passes import forward
    from replicate.core.skipping import skip_sublayers

    plan, heavy = SkipPlan((1,), (2,)), SkipPlan((0, 3), (0, 3))
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa", plan.attention, plan.mlp), seed=3)
    prompt = torch.tensor([[5, 6, 7, 8, 9]])
    context = prompt[0].tolist() + reference_tokens(model, prompt, 24, None)
    start, end = len(context) - 1 - 16, len(context) - 1
    expected = []
    with torch.inference_mode():
        for candidate in (plan, heavy):
            fresh = make_cache("dynamic", model.config, len(context))
            forward(model, torch.tensor([context[:start]]), fresh, 0, last_only=True)
            with skip_sublayers(model, candidate):
                logits = forward(model, torch.tensor([context[start:end]]), fresh, start, last_only=False)
            expected.append(
                sum(int(a == b) for a, b in zip(logits.argmax(-1).tolist(), context[start + 1 :])) / 16
            )
    for kind in ("dynamic", "static"):
        cache = make_cache(kind, model.config, len(context) + 4)
        with torch.inference_mode():
            forward(model, torch.tensor([context[:-1]]), cache, 0, last_only=True)
            before = [
                (layer.keys[:, :, :end].clone(), layer.values[:, :, :end].clone()) for layer in cache.layers
            ]
            scores = score_plans(model, cache, context, 16, [plan, heavy])
        after = [(layer.keys[:, :, :end], layer.values[:, :, :end]) for layer in cache.layers]
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(before, after))
        assert cache.layer_lengths() == [end] * 4
        assert scores == expected and scores[1] < scores[0]


def test_neighbour_swaps_one_sub_block():
    import random

    plan = SkipPlan((1, 3), (0,))
    moved = neighbour(plan, 4, random.Random(0))
    before = {("attention", i) for i in plan.attention} | {("mlp", i) for i in plan.mlp}
    after = {("attention", i) for i in moved.attention} | {("mlp", i) for i in moved.mlp}
    assert len(after) == 3 and len(before - after) == 1 and len(after - before) == 1


# ---- the registry and the runner ----


def test_every_method_config_file_is_registered_and_builds():
    load_method_modules()
    files = sorted(path.stem for path in (CONF_DIR / "method").glob("*.yaml"))
    assert files == sorted(METHODS)
    for name in files:
        config = method_config(compose_config([f"method={name}"]).method)
        assert config.name == name


def test_a_new_method_needs_only_its_registered_config(monkeypatch):
    monkeypatch.setattr("replicate.core.methods.METHODS", dict(METHODS))
    import replicate.core.methods as methods

    @register_method
    @dataclass(frozen=True)
    class EchoConfig(MethodTraits):
        name: Literal["echo_test"]
        max_draft_tokens: int

    assert methods.METHODS["echo_test"] is EchoConfig
    assert method_config({"name": "echo_test", "max_draft_tokens": 2}) == EchoConfig("echo_test", 2)


def _tiny(*overrides):
    base = ["model=tiny_llama", "task=humaneval", "n_samples=2", "max_new_tokens=16", "verify_cache=true"]
    return compose_config([*base, *overrides])


@pytest.mark.parametrize("method", ["prompt_lookup", "hybrid", "on_the_fly", "transformers_prompt_lookup"])
def test_the_runner_runs_every_new_method(tmp_path, method):
    metrics = run(_tiny(f"method={method}", "cost_model.enabled=true", "cost_model.repeats=1"), tmp_path)
    assert metrics.identical_fraction == 1.0 and metrics.speedup is not None and metrics.speedup_ci
    assert metrics.mean_accepted_length >= 1.0 and metrics.draft_sources
    if method == "on_the_fly":
        assert metrics.cost_model is None and "no single cost profile" in metrics.cost_model_not_applicable
    else:
        assert metrics.cost_model is not None and metrics.cost_model_not_applicable is None


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["method=transformers_prompt_lookup", "sampling.temperature=0.7"], "greedily only"),
        (["method=transformers_prompt_lookup", "model.kv_cache=static"], "kv_cache=static"),
        (["method=prompt_lookup", "method.max_matching_ngram_size=0"], "max_matching_ngram_size"),
        (["method=on_the_fly", "method.skip_fraction=1.5"], "skip_fraction"),
    ],
)
def test_bad_settings_are_refused_by_name_before_loading(tmp_path, overrides, words):
    from replicate.config import run_config

    with pytest.raises(ConfigError, match=words):
        run_config(_tiny(*overrides))
