"""Speculative sampling reproduces the target distribution; logits processing does what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replicate.core.draft_exit import StaticThreshold
from replicate.core.sampling import (
    SamplingConfig,
    greedy_acceptance,
    logits_to_probs,
    speculative_acceptance,
)
from replicate.core.skipping import SkipPlan

VOCAB = 5
TARGET = torch.tensor(
    [[0.40, 0.25, 0.20, 0.10, 0.05], [0.05, 0.15, 0.30, 0.30, 0.20], [0.2, 0.2, 0.2, 0.2, 0.2]]
)
DRAFT = torch.tensor([[0.10, 0.50, 0.05, 0.05, 0.30], [0.40, 0.10, 0.10, 0.30, 0.10]])


def chi_square_p_value(counts: np.ndarray, probs: np.ndarray) -> float:
    """Upper tail of Pearson's chi-square statistic (Wilson-Hilferty normal approximation)."""
    expected = probs * counts.sum()
    statistic = float(((counts - expected) ** 2 / expected).sum())
    dof = len(counts) - 1
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def committed_prefixes(acceptance, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a 2-draft cycle `trials` times with drafts drawn from DRAFT; count the first and (when two or
    more tokens were committed) the second committed token."""
    generator = torch.Generator().manual_seed(1234)
    first, second = np.zeros(VOCAB), np.zeros(VOCAB)
    for _ in range(trials):
        drafts = torch.stack([torch.multinomial(DRAFT[i], 1, generator=generator)[0] for i in range(2)])
        num_accepted, next_token = acceptance(drafts, DRAFT, TARGET, generator)
        committed = [*drafts[:num_accepted].tolist(), next_token]
        first[committed[0]] += 1
        if len(committed) > 1:
            second[committed[1]] += 1
    return first, second


def test_speculative_sampling_reproduces_target_distribution():
    first, second = committed_prefixes(speculative_acceptance, 20000)
    assert chi_square_p_value(first, TARGET[0].numpy()) > 1e-3
    # The second token is committed only after the first draft was accepted; positions are independent
    # here, so given that, it must still follow the target's second row.
    assert chi_square_p_value(second, TARGET[1].numpy()) > 1e-3


def accept_every_draft(drafts, draft_probs, target_probs, generator):
    """A wrong rule: trusting the draft yields the draft's distribution."""
    return len(drafts), int(torch.multinomial(target_probs[len(drafts)], 1, generator=generator))


def resample_from_target(drafts, draft_probs, target_probs, generator):
    """A wrong rule: the right acceptance test, but corrections drawn from p instead of max(0, p - q)."""
    uniforms = torch.rand(len(drafts), generator=generator)
    for i, token in enumerate(drafts.tolist()):
        if uniforms[i] * draft_probs[i, token] >= target_probs[i, token]:
            return i, int(torch.multinomial(target_probs[i], 1, generator=generator))
    return len(drafts), int(torch.multinomial(target_probs[len(drafts)], 1, generator=generator))


@pytest.mark.parametrize("wrong_rule", [accept_every_draft, resample_from_target])
def test_the_statistical_test_rejects_wrong_acceptance_rules(wrong_rule):
    first, _ = committed_prefixes(wrong_rule, 20000)
    assert chi_square_p_value(first, TARGET[0].numpy()) < 1e-6


def test_greedy_acceptance_prefix_and_correction():
    logits = torch.full((4, 6), -1.0)
    for row, token in enumerate([2, 3, 5, 1]):
        logits[row, token] = 1.0
    assert greedy_acceptance([2, 3, 5], logits) == (3, 1)  # all accepted + bonus
    assert greedy_acceptance([2, 4, 5], logits) == (1, 3)  # correction at the mismatch
    assert greedy_acceptance([0, 3, 5], logits) == (0, 2)
    assert greedy_acceptance([], logits[:1]) == (0, 2)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_k = logits_to_probs(logits, SamplingConfig(temperature=1.0, top_k=2))
    assert torch.allclose(top_k, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    top_p = logits_to_probs(logits, SamplingConfig(temperature=1.0, top_p=0.8))
    assert torch.allclose(top_p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))  # 0.5 + 0.3 reaches 0.8
    top_p_tiny = logits_to_probs(logits, SamplingConfig(temperature=1.0, top_p=0.01))
    assert torch.equal(top_p_tiny, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # the top token always stays
    hot = logits_to_probs(logits, SamplingConfig(temperature=2.0))
    assert torch.allclose(hot, torch.softmax(logits / 2.0, dim=-1))


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}]
)  # fmt: skip
def test_bad_sampling_settings_are_named(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**kwargs)


def test_sampled_self_speculative_decoding_runs_both_paths_and_is_seeded():
    """End to end with temperature: valid tokens, both accept and reject happen, same seed same output."""
    from replicate.core.decoding import DecodeSettings, Speculation, self_speculative_decode
    from tests.helpers import tiny_model

    plan = SkipPlan((1, 2), (2, 3))
    model = tiny_model(4, 4, 2, 320, "sdpa", plan, seed=5, output_scale=0.5)
    prompt = torch.tensor([[256, 1, 2, 3]])
    sampling = SamplingConfig(temperature=0.05, top_p=0.95)

    def decode(seed):
        generator = torch.Generator().manual_seed(seed)
        speculation = Speculation(plan, 6, StaticThreshold(0.0), check_cache=True)
        return self_speculative_decode(model, prompt, DecodeSettings(40, sampling), speculation, generator)

    first, again = decode(0), decode(0)
    assert first.tokens == again.tokens and len(first.tokens) == 40
    assert all(0 <= token < 320 for token in first.tokens) and first.cache_lengths_ok
    assert 0 < sum(first.accepted) < sum(first.drafted)
