"""Lossless: in fp32 on CPU every greedy method's tokens equal `model.generate(do_sample=False)`'s, token for
token, across a matrix of tiny configurations and on SmolLM2 with real prompts. `make check-lossless`."""

from __future__ import annotations

import pytest
import torch

from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import StaticThreshold
from replicate.core.kv_cache import KV_CACHES
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.lossless.matrix import adaptive, run_matrix
from replicate.lossless.reference import MODELS, reference_tokens
from tests.helpers import TinyModel, tiny_model

pytestmark = pytest.mark.lossless
GREEDY = SamplingConfig()


@pytest.mark.parametrize("kv_cache", KV_CACHES)
@pytest.mark.parametrize(
    "spec", MODELS, ids=lambda spec: f"L{spec[0]}-{spec[4]}-skip{len(spec[5])}+{len(spec[6])}"
)
def test_every_method_matches_generate(spec, kv_cache):
    """The matrix of `replicate.lossless.matrix` (also run on the GPU by gpu-check) on one model, fp32 on CPU:
    autoregressive decoding, every self-speculative setting (fixed K 1-12, static thresholds, adaptive) and
    every setting of the methods beyond the paper (prompt lookup, hybrid, on-the-fly), two prompts each,
    token for token equal to generate; every layer's cache at the committed length."""
    cells = run_matrix(torch.float32, torch.device("cpu"), [kv_cache], models=[spec])
    assert len(cells) == 2 * (10 + 7)
    for cell in cells:
        assert cell["identical"] and cell["cache_lengths_ok"], cell
    accepted = sum(cell["accepted"] for cell in cells)
    rejected = sum(cell["drafted"] - cell["accepted"] for cell in cells)
    if spec[5] or spec[6]:  # the matrix must exercise both paths, or it proves little
        assert accepted > 0 and rejected > 0, (accepted, rejected)
    for name in ("prompt_lookup", "hybrid", "on_the_fly"):
        mine = [cell for cell in cells if cell["method"].startswith(name + ",")]
        assert len(mine) == 2 * {"prompt_lookup": 3, "hybrid": 2, "on_the_fly": 2}[name]
        assert sum(cell["drafted"] for cell in mine) > 0, name  # each method drafted something here
    ngram = [cell for cell in cells if cell["method"].startswith(("prompt_lookup,", "hybrid,"))]
    assert sum(cell["ngram_cycles"] for cell in ngram) > 0  # the n-gram path is exercised


@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 7, 13])
def test_max_new_tokens_reached_mid_draft(max_new_tokens):
    plan = SkipPlan((1,), (2,))
    model = tiny_model(TinyModel(4, 4, 2, 320, "sdpa", plan.attention, plan.mlp), seed=3)
    prompt = torch.tensor([[256, 10, 20, 30]])
    expected = reference_tokens(model, prompt, max_new_tokens, eos=None)
    for kv_cache in KV_CACHES:  # the static cache holds exactly prompt + max_new_tokens positions
        for draft_exit in (StaticThreshold(0.0), adaptive()):
            settings = DecodeSettings(max_new_tokens, GREEDY, frozenset(), kv_cache)
            result = self_speculative_decode(model, prompt, settings, Speculation(plan, 12, draft_exit))
            assert result.tokens == expected
            assert sum(result.drafted) <= max_new_tokens  # never drafts past the budget


@pytest.mark.parametrize("eos_position", [0, 1, 4, 9])
def test_eos_hit_mid_draft(eos_position):
    """Declare the token the model emits at `eos_position` to be EOS: decoding must stop right after it."""
    plan = SkipPlan((1,), (2,))
    model = tiny_model(TinyModel(4, 4, 2, 320, "eager", plan.attention, plan.mlp), seed=11)
    prompt = torch.tensor([[256, 65, 66, 67, 68]])
    free_run = reference_tokens(model, prompt, 30, eos=None)
    eos = free_run[eos_position]
    expected = reference_tokens(model, prompt, 30, eos=eos)
    assert expected[-1] == eos and len(expected) <= eos_position + 1
    assert (
        autoregressive_decode(model, prompt, DecodeSettings(30, GREEDY, frozenset({eos}))).tokens == expected
    )
    for kv_cache in KV_CACHES:
        for max_draft_tokens in (1, 4, 12):
            # Threshold 0 drafts past an EOS on the device and drops the drafts after it once read; 0.5
            # stops drafting at it. Both must stop decoding right after the EOS.
            for threshold in (0.0, 0.5):
                settings = DecodeSettings(30, GREEDY, frozenset({eos}), kv_cache)
                speculation = Speculation(
                    plan, max_draft_tokens, StaticThreshold(threshold), check_cache=True
                )
                result = self_speculative_decode(model, prompt, settings, speculation)
                assert result.tokens == expected, (kv_cache, max_draft_tokens, threshold)
                assert all(drafted <= max_draft_tokens for drafted in result.drafted)


def test_smollm2_real_prompts(smollm2, humaneval_prompts):
    """The embedded default on real HumanEval prompts: both self-speculative methods equal generate."""
    model, plan = smollm2.model, smollm2.plan
    assert plan.num_skipped > 0
    for text in humaneval_prompts[:3]:
        prompt = torch.tensor([smollm2.encode(text)])
        expected = reference_tokens(model, prompt, 48, eos=sorted(smollm2.eos_token_ids)[0])
        cells = [(12, adaptive(0.6, 0.9), "dynamic"), (4, StaticThreshold(0.0), "dynamic")]
        cells.append((4, StaticThreshold(0.0), "static"))
        for max_draft_tokens, draft_exit, kv_cache in cells:
            settings = DecodeSettings(48, GREEDY, smollm2.eos_token_ids, kv_cache)
            speculation = Speculation(plan, max_draft_tokens, draft_exit, check_cache=True)
            result = self_speculative_decode(model, prompt, settings, speculation)
            assert result.tokens == expected, (max_draft_tokens, kv_cache)
            assert result.cache_lengths_ok
