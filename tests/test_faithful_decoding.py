"""Issue 12, decoding side: the authors' draft confidence when sampling, greedy unchanged by it, ties broken
as `generate` breaks them, tokens after EOS counted, and bf16 differences judged (near-tie or unexplained)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from replicate.config import compose_config, run_config
from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import StaticThreshold
from replicate.core.sampling import (
    SamplingConfig,
    choose_tokens,
    drafted_token_confidence,
    greedy_acceptance,
    logits_to_probs,
)
from replicate.core.skipping import SkipPlan
from replicate.lossless import fails_lossless
from replicate.records import DecodeRecord, DecodeResult, SampleRecord
from replicate.run.metrics import divergence_counts, divergence_verdict, post_eos_tokens, unit_in_last_place
from replicate.schema import ConfigError
from tests.helpers import TinyModel, tiny_model
from tests.test_lossless import reference_tokens

TEXT_SAMPLING = SamplingConfig(temperature=0.2, top_p=0.85)  # the paper's sampled text rows
PLAN = SkipPlan((1,), (2,))


def peaked_tiny_model():
    """A tiny model whose logits are spread enough that T=0.2 makes the draft's choice near certain while the
    raw softmax stays unsure: where the two confidences part."""
    model = tiny_model(TinyModel(4, 4, 2, 300, "eager", PLAN.attention, PLAN.mlp))
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return model


# ---------------------------------------------------------------- item 1: draft confidence


def test_paper_confidence_is_the_raw_softmax_probability_of_the_drafted_token():
    logits = torch.zeros(1, 50)
    logits[0, :3] = torch.tensor([2.0, 1.5, 1.0])
    probs = logits_to_probs(logits, TEXT_SAMPLING)
    raw = torch.softmax(
        logits, dim=-1
    )  # the authors: draft_output['logits'].softmax(-1), gathered at the token
    paper = drafted_token_confidence(logits, probs, 0, TEXT_SAMPLING, "paper")
    processed = drafted_token_confidence(logits, probs, 0, TEXT_SAMPLING, "processed")
    assert paper == pytest.approx(float(raw[0, 0]), rel=1e-6) and paper < 0.2
    assert processed == pytest.approx(float(probs[0, 0])) and processed > 0.9
    # Greedy: both are the top-1 probability of the plain softmax (the authors' torch.max(all_probs)).
    greedy = logits_to_probs(logits, SamplingConfig())
    for mode in ("paper", "processed"):
        assert drafted_token_confidence(logits, greedy, 0, SamplingConfig(), mode) == float(raw.max())
    with pytest.raises(ValueError, match="'tempered' is not one of paper, processed"):
        drafted_token_confidence(logits, probs, 0, TEXT_SAMPLING, "tempered")


def test_at_temperature_0_2_the_two_confidences_give_different_draft_lengths():
    model, prompt = peaked_tiny_model(), torch.tensor([[1, 5, 9, 12, 40]])
    drafted = {}
    for mode in ("paper", "processed"):
        result = self_speculative_decode(
            model, prompt, DecodeSettings(24, TEXT_SAMPLING), Speculation(PLAN, 8, StaticThreshold(0.5), mode),
            torch.Generator().manual_seed(0),
        )  # fmt: skip
        drafted[mode] = result.drafted
    mean = {mode: sum(lengths) / len(lengths) for mode, lengths in drafted.items()}
    # The raw probability is the lower one, so the paper's rule exits earlier: shorter drafts.
    assert drafted["paper"] != drafted["processed"] and mean["paper"] < mean["processed"], drafted


def test_greedy_drafting_is_the_same_under_both_confidences_and_equals_generate():
    model, prompt = peaked_tiny_model(), torch.tensor([[1, 5, 9, 12, 40]])
    expected = reference_tokens(model, prompt, 24, eos=None)
    results = [
        self_speculative_decode(
            model, prompt, DecodeSettings(24), Speculation(PLAN, 8, StaticThreshold(threshold), mode)
        )
        for threshold in (0.3, 0.7)
        for mode in ("paper", "processed")
    ]
    for result in results:
        assert result.tokens == expected
    assert results[0].drafted == results[1].drafted and results[2].drafted == results[3].drafted
    assert results[0].drafted != results[2].drafted  # the threshold does act here


def test_draft_confidence_is_a_validated_method_setting():
    config = run_config(compose_config(["model=tiny_llama", "method=self_speculative"]))
    assert config.method.draft_confidence == "paper"
    with pytest.raises(
        ConfigError, match="method.draft_confidence='top1' is not one of 'paper', 'processed'"
    ):
        run_config(compose_config(["model=tiny_llama", "method.draft_confidence=top1"]))


# ---------------------------------------------------------------- item 8: ties broken as generate breaks them


def test_exact_ties_pick_the_first_index_like_generate():
    logits = torch.tensor([[0.5, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    # transformers' greedy search: torch.argmax(next_token_scores) on float32 scores -> the first maximum
    assert choose_tokens(logits, SamplingConfig(), None).tolist() == [1, 0]
    assert choose_tokens(logits.bfloat16(), SamplingConfig(), None).tolist() == [1, 0]
    assert greedy_acceptance([3], logits) == (
        0,
        1,
    )  # the verifier's own token at a tie is the first index too


def test_a_model_full_of_exact_ties_decodes_like_generate():
    """lm_head rows paired (row 2i+1 = row 2i): every step is an exact tie between two tokens."""
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa", PLAN.attention, PLAN.mlp), seed=5)
    with torch.no_grad():
        model.lm_head.weight[1::2] = model.lm_head.weight[0::2]
    prompt = torch.tensor([[256, 10, 20, 30]])
    with torch.no_grad():
        logits = model(prompt).logits[0, -1]
    top = int(logits.argmax())
    assert top % 2 == 0 and logits[top] == logits[top + 1]  # the tie is exact
    expected = reference_tokens(model, prompt, 16, eos=None)
    assert all(token % 2 == 0 for token in expected)
    assert autoregressive_decode(model, prompt, DecodeSettings(16)).tokens == expected
    for threshold in (0.0, 0.5):
        result = self_speculative_decode(
            model, prompt, DecodeSettings(16), Speculation(PLAN, 6, StaticThreshold(threshold))
        )
        assert result.tokens == expected


# ---------------------------------------------------------------- item 4: tokens after EOS


def test_post_eos_tokens_counts_what_the_authors_block_would_have_kept():
    eos = 9
    # prefill 1, then a cycle of 3 drafts ending in an accepted EOS: its bonus token was dropped here
    assert post_eos_tokens([1, 2, 3, eos], accepted=[3]) == 1
    # EOS as the verifier's own correction: nothing after it in the block
    assert post_eos_tokens([1, 2, eos], accepted=[1]) == 0
    assert post_eos_tokens([1, 2, 3, 4, 5, 6], accepted=[1, 2]) == 0  # no EOS, blocks committed whole
    assert post_eos_tokens([1, 2, 3], accepted=[]) == 0  # autoregressive: the authors stop at EOS too
    # prompt lookup (prefill_cycle): the first pass verifies the first cycle, so no prefill token. Blocks of
    # 3, 1 and 4 tokens (accepted 2, 0, 3) = 8; EOS committed as the 6th: 2 dropped (3 with a prefill token)
    assert post_eos_tokens([1, 2, 3, 4, 5, eos], accepted=[2, 0, 3], prefill_cycle=True) == 2
    assert post_eos_tokens([1, 2, 3, 4, 5, eos], accepted=[2, 0, 3]) == 3


def test_post_eos_tokens_on_a_real_decode_with_a_drafted_eos():
    model, prompt = (
        tiny_model(TinyModel(4, 4, 2, 320, "eager", PLAN.attention, PLAN.mlp), seed=11),
        torch.tensor([[256, 65, 66, 67, 68]]),
    )
    free_run = reference_tokens(model, prompt, 12, eos=None)
    counts = []
    for position in range(1, 8):
        eos = free_run[position]
        settings = DecodeSettings(12, SamplingConfig(), frozenset({eos}))
        result = self_speculative_decode(model, prompt, settings, Speculation(PLAN, 12, StaticThreshold(0.0)))
        cycles_committed = 1 + sum(a + 1 for a in result.accepted)
        drafted_eos_accepted = result.drafted[-1] == result.accepted[-1] and result.tokens[-1] == eos
        counts.append(post_eos_tokens(result.tokens, result.accepted))
        assert counts[-1] == cycles_committed - len(result.tokens) == int(drafted_eos_accepted)
    assert 1 in counts  # the EOS was drafted and accepted at least once


# ---------------------------------------------------------------- item 8: divergence verdicts


def test_the_resolution_of_each_dtype():
    assert unit_in_last_place(20.0, "bfloat16") == 2.0**-3  # 16 <= 20 < 32: 2^(4 - 7)
    assert unit_in_last_place(-20.0, "float16") == 2.0**-6
    assert unit_in_last_place(1.0, "float32") == 2.0**-23
    with pytest.raises(ValueError, match="zero or not finite"):
        unit_in_last_place(0.0, "bfloat16")


def differing(margin: float | None, top: float | None) -> SampleRecord:
    decode = DecodeRecord.from_result(DecodeResult([5, 6], 0.1, 1.0, 2))
    return SampleRecord(
        index=0, id="s", seed=0, prompt_tokens=3, prompt_truncated=False, method=decode, baseline=decode,
        identical=False, first_difference=1, baseline_margin=margin, decoder_state={}, baseline_top_logit=top,
    )  # fmt: skip


def test_divergence_verdicts_and_counts():
    same = dataclasses.replace(differing(None, None), identical=True, first_difference=None)
    ulp = 2.0**-3  # bf16 at |logit| 20
    assert divergence_verdict(same, "bfloat16", 4) == "identical"
    assert divergence_verdict(differing(0.0, 20.0), "bfloat16", 4) == "near_tie"
    assert divergence_verdict(differing(4 * ulp, 20.0), "bfloat16", 4) == "near_tie"
    assert divergence_verdict(differing(5 * ulp, 20.0), "bfloat16", 4) == "unexplained"
    assert divergence_verdict(differing(4 * ulp, 20.0), "float32", 4) == "unexplained"
    assert divergence_verdict(differing(None, None), "bfloat16", 4) == "unexplained"  # e.g. lengths differ
    records = [same, differing(0.0, 20.0), differing(1.0, 20.0)]
    counts = divergence_counts(records, "bfloat16", 4)
    assert (counts["identical"], counts["near_tie"], counts["unexplained"]) == (1, 1, 1)
    assert counts["margin_threshold"]["ulps"] == 4 and counts["margin_threshold"]["dtype"] == "bfloat16"
    no_baseline = dataclasses.replace(same, baseline=None, identical=None)
    assert divergence_counts([no_baseline], "bfloat16", 4) is None


def test_the_lossless_check_fails_on_any_fp32_difference_and_on_unexplained_bf16_ones():
    near_tie, unexplained = differing(0.0, 20.0), differing(1.0, 20.0)
    same = dataclasses.replace(near_tie, identical=True, first_difference=None)
    assert not fails_lossless("float32", 4)(same)
    assert fails_lossless("float32", 4)(near_tie) and fails_lossless("float32", 4)(unexplained)
    assert not fails_lossless("bfloat16", 4)(near_tie) and fails_lossless("bfloat16", 4)(unexplained)


def test_the_margin_replays_the_baseline_at_the_right_position():
    from replicate.core.models import load_model
    from replicate.numerics import logit_shifts
    from replicate.run.replay import baseline_top_two

    loaded = load_model(compose_config(["model=tiny_llama"]).model)
    prompt = torch.tensor([loaded.encode("def f(x):")])
    tokens = autoregressive_decode(loaded.model, prompt, DecodeSettings(6)).tokens
    with torch.no_grad():  # one pass over everything: fp32 agrees with the replay to rounding
        logits = loaded.model(torch.cat([prompt, torch.tensor([tokens])], dim=1)).logits[0].float()
    for position in (0, 3, 5):
        margin, top = baseline_top_two(loaded, prompt, tokens, position)
        expected = torch.topk(logits[prompt.shape[1] - 1 + position], 2).values
        assert top == pytest.approx(float(expected[0]), abs=1e-4)
        assert margin == pytest.approx(float(expected[0] - expected[1]), abs=1e-4)
    shifts = logit_shifts(loaded, ["def f(x):"], 6, 3, "float32")
    assert shifts["positions"] == 5 and shifts["argmax_flips"] == 0
    assert shifts["margin_shift_ulps"]["max"] < 1e3  # fp32: a few ulps of 2^-23 relative
