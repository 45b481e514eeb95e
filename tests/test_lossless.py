"""Lossless: in fp32 on CPU every greedy method's tokens equal `model.generate(do_sample=False)`'s, token for
token, across a matrix of tiny configurations and on SmolLM2 with real prompts. `make check-lossless`."""

from __future__ import annotations

import pytest
import torch

from replicate.core.decoding import autoregressive_decode, self_speculative_decode
from replicate.core.draft_exit import AdaptiveThreshold, StaticThreshold
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from tests.helpers import tiny_model

pytestmark = pytest.mark.lossless
GREEDY = SamplingConfig()


def reference_tokens(model, prompt_ids: torch.Tensor, max_new_tokens: int, eos: int | None) -> list[int]:
    """The library's greedy output: the ground truth every method must reproduce."""
    output = model.generate(
        input_ids=prompt_ids,
        attention_mask=torch.ones_like(prompt_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return output[0, prompt_ids.shape[1] :].tolist()


def adaptive(initial: float = 0.6, target: float = 0.8) -> AdaptiveThreshold:
    return AdaptiveThreshold(initial, target, 0.01, 0.5, 0.9, reset_per_sample=False)


# (layers, heads, kv heads, vocab, attention impl, skipped attention, skipped mlp)
MODELS = [
    (2, 4, 4, 258, "sdpa", (), ()),
    (2, 4, 2, 320, "eager", (0,), ()),
    (4, 4, 2, 320, "sdpa", (0,), (2,)),
    (4, 4, 1, 1000, "eager", (1, 3), (0,)),
    (6, 8, 8, 512, "sdpa", (1, 3), (0, 5)),
    (6, 4, 2, 320, "eager", (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4)),
    (8, 4, 2, 400, "sdpa", (0, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5, 6, 7)),
]
DRAFT_SETTINGS = [(1, 0.0), (2, 0.0), (4, 0.3), (6, 0.0), (12, 0.0), (12, 0.5), (8, 1.0)]


@pytest.mark.parametrize("layers,heads,kv_heads,vocab,attention,skip_attention,skip_mlp", MODELS)
def test_every_method_matches_generate(layers, heads, kv_heads, vocab, attention, skip_attention, skip_mlp):
    plan = SkipPlan(skip_attention, skip_mlp)
    model = tiny_model(layers, heads, kv_heads, vocab, attention, plan, seed=layers * 7 + vocab)
    accepted = rejected = 0
    for prompt_seed in range(2):
        generator = torch.Generator().manual_seed(prompt_seed)
        prompt = torch.randint(0, vocab, (1, 5 + 6 * prompt_seed), generator=generator)
        expected = reference_tokens(model, prompt, 40, eos=None)
        assert autoregressive_decode(model, prompt, 40, GREEDY, frozenset()).tokens == expected
        exits = [StaticThreshold(threshold) for _, threshold in DRAFT_SETTINGS] + [
            adaptive(),
            adaptive(0.9, 0.5),
        ]
        draft_lengths = [k for k, _ in DRAFT_SETTINGS] + [12, 5]
        for max_draft_tokens, draft_exit in zip(draft_lengths, exits):
            result = self_speculative_decode(
                model, prompt, 40, GREEDY, frozenset(), plan, max_draft_tokens, draft_exit, check_cache=True
            )
            assert result.tokens == expected, (max_draft_tokens, draft_exit)
            assert result.cache_lengths_ok
            accepted += sum(result.accepted)
            rejected += sum(result.drafted) - sum(result.accepted)
    if plan.num_skipped:  # the matrix must exercise both paths, or it proves little
        assert accepted > 0 and rejected > 0, (accepted, rejected)


@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 7, 13])
def test_max_new_tokens_reached_mid_draft(max_new_tokens):
    plan = SkipPlan((1,), (2,))
    model = tiny_model(4, 4, 2, 320, "sdpa", plan, seed=3)
    prompt = torch.tensor([[256, 10, 20, 30]])
    expected = reference_tokens(model, prompt, max_new_tokens, eos=None)
    for draft_exit in (StaticThreshold(0.0), adaptive()):
        result = self_speculative_decode(
            model, prompt, max_new_tokens, GREEDY, frozenset(), plan, 12, draft_exit
        )
        assert result.tokens == expected
        assert sum(result.drafted) <= max_new_tokens  # never drafts past the budget


@pytest.mark.parametrize("eos_position", [0, 1, 4, 9])
def test_eos_hit_mid_draft(eos_position):
    """Declare the token the model emits at `eos_position` to be EOS: decoding must stop right after it."""
    plan = SkipPlan((1,), (2,))
    model = tiny_model(4, 4, 2, 320, "eager", plan, seed=11)
    prompt = torch.tensor([[256, 65, 66, 67, 68]])
    free_run = reference_tokens(model, prompt, 30, eos=None)
    eos = free_run[eos_position]
    expected = reference_tokens(model, prompt, 30, eos=eos)
    assert expected[-1] == eos and len(expected) <= eos_position + 1
    assert autoregressive_decode(model, prompt, 30, GREEDY, frozenset({eos})).tokens == expected
    for max_draft_tokens in (1, 4, 12):
        result = self_speculative_decode(
            model, prompt, 30, GREEDY, frozenset({eos}), plan, max_draft_tokens, StaticThreshold(0.0)
        )
        assert result.tokens == expected


def test_smollm2_real_prompts(smollm2, humaneval_prompts):
    """The embedded default on real HumanEval prompts: both self-speculative methods equal generate."""
    model, plan = smollm2.model, smollm2.plan
    assert plan.num_skipped > 0
    for text in humaneval_prompts[:3]:
        prompt = torch.tensor([smollm2.encode(text)])
        expected = reference_tokens(model, prompt, 48, eos=sorted(smollm2.eos_token_ids)[0])
        for max_draft_tokens, draft_exit in ((12, adaptive(0.6, 0.9)), (4, StaticThreshold(0.0))):
            result = self_speculative_decode(
                model,
                prompt,
                48,
                GREEDY,
                smollm2.eos_token_ids,
                plan,
                max_draft_tokens,
                draft_exit,
                check_cache=True,
            )
            assert result.tokens == expected
            assert result.cache_lengths_ok
