"""Issue 18: every definition of the paper pinned by a reference whose values do not come from the code under test.

Each expected value here is computed by hand (written out in a comment), by a short independent
implementation in this file, or taken from the paper / the authors' code (`/work/shared/paper/PROTOCOL.md`):

- the adaptive draft-exit threshold (Section 3.3 and the authors' decoding.py): a hand-computed trace over
  several cycles through each branch, the same rule through the decode loop, the strict draft-exit comparison;
- speculative sampling end to end through the decode loop at temperature < 1 with top-k and top-p: the joint
  law of several committed positions against the autoregressive sampler's law enumerated exactly, and the
  draft law used in acceptance being the one the drafts were drawn from;
- the run statistics (acceptance rate, speedup, speedup by total time, tokens per full forward, identity,
  first difference) on fixtures where the candidate definitions give different numbers;
- ROUGE through the task's own config against `rouge_score` called with the paper's settings; pass@k against
  the closed form.

Tests call public entry points only (decode functions, the method registry, metrics, task scoring).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from rouge_score import rouge_scorer

from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import StaticThreshold
from replicate.core.methods import build_draft_exit
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.records import DecodeRecord, DecodeResult
from replicate.run.metrics import decoding_metrics, first_difference
from replicate.statistics import BootstrapConfig
from tasks import Sample, load_task
from tests.helpers import TinyModel, task_config, tiny_model

CONF = Path(__file__).resolve().parent.parent / "conf"


def speculative(model, prompt, max_new_tokens, sampling, plan, max_draft_tokens, draft_exit, seed=None):
    """self_speculative_decode with no EOS, the cache checked after every cycle, a seeded generator if given."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return self_speculative_decode(
        model,
        prompt,
        DecodeSettings(max_new_tokens, sampling),
        Speculation(plan, max_draft_tokens, draft_exit, check_cache=True),
        generator,
    )


# ---------------------------------------------------------------- the adaptive draft-exit threshold


def adaptive_rule(**overrides):
    """The paper's adaptive draft exit, built through the method registry from conf/method/adaptive_draft_exit.yaml."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "method" / "adaptive_draft_exit.yaml"))
    cfg.update(overrides)
    return build_draft_exit(cfg)


def authors_update(gamma, ema, drafted, accepted, max_draft_tokens, alpha, eps=0.01, beta1=0.5, beta2=0.9):
    """The authors' decoding.py after a verification, as PROTOCOL.md transcribes it (independent of the code):
    ema = b1*ema + (1-b1)*rate; gamma_new = gamma + eps if ema < alpha, else gamma if the cycle drafted the full
    K, else gamma - eps; gamma = b2*gamma + (1-b2)*gamma_new. Returns (gamma, ema)."""
    if drafted == 0:
        return gamma, ema
    ema = beta1 * ema + (1 - beta1) * (accepted / drafted)
    if ema < alpha:
        new_gamma = gamma + eps
    elif drafted == max_draft_tokens:
        new_gamma = gamma
    else:
        new_gamma = gamma - eps
    return beta2 * gamma + (1 - beta2) * new_gamma, ema


# (drafted, accepted) per cycle with K = 4, alpha = 0.5, gamma_0 = 0.6, eps = 0.01, beta1 = 0.5, beta2 = 0.9,
# and gamma after each update, by hand:
HAND_TRACE = [
    # rate 0:   ema = 0.5*0 + 0.5*0 = 0 < 0.5            -> raise: gamma = 0.9*0.6 + 0.1*0.61 = 0.601
    (2, 0, 0.601),
    # rate 1:   ema = 0 + 0.5 = 0.5 >= 0.5, full K drafted -> keep: gamma = 0.601
    (4, 4, 0.601),
    # rate 1:   ema = 0.25 + 0.5 = 0.75 >= 0.5, 2 < K      -> lower: gamma = 0.9*0.601 + 0.1*0.591 = 0.6
    (2, 2, 0.600),
    # no draft: nothing to measure                        -> unchanged (ema stays 0.75)
    (0, 0, 0.600),
    # rate 1/4: ema = 0.375 + 0.125 = 0.5, not < alpha (the comparison is ema < alpha), full K -> keep: 0.6
    (4, 1, 0.600),
    # rate 0:   ema = 0.25 < 0.5, full K                  -> raise (full K keeps only when ema >= alpha): 0.601
    (4, 0, 0.601),
    # rate 2/3: ema = 0.125 + 1/3 = 0.4583 < 0.5          -> raise: 0.9*0.601 + 0.1*0.611 = 0.602
    (3, 2, 0.602),
    # rate 1:   ema = 0.2292 + 0.5 = 0.7292, 1 < K        -> lower: 0.9*0.602 + 0.1*0.592 = 0.601
    (1, 1, 0.601),
]


def test_adaptive_threshold_follows_a_hand_computed_trace_through_every_branch():
    rule = adaptive_rule(max_draft_tokens=4, target_acceptance=0.5)
    assert rule.threshold == 0.6  # gamma_0 of Table 6
    rule.start_sample()
    for cycle, (drafted, accepted, expected) in enumerate(HAND_TRACE):
        rule.update(drafted, accepted, 4)
        assert rule.threshold == pytest.approx(expected, abs=1e-12), (cycle, drafted, accepted)


def test_adaptive_threshold_lowers_when_acceptance_is_high_and_raises_when_low():
    """The direction of the rule (a wrong sign passes any 'it moved' check): a cycle with every draft accepted
    and fewer than K drafted lowers gamma by (1 - beta2) * eps; one with none accepted raises it by as much."""
    high = adaptive_rule(max_draft_tokens=12, target_acceptance=0.4)
    high.start_sample()
    high.update(5, 5, 12)  # ema = 0.5 >= 0.4
    assert high.threshold == pytest.approx(0.6 - 0.1 * 0.01, abs=1e-12)
    low = adaptive_rule(max_draft_tokens=12, target_acceptance=0.4)
    low.start_sample()
    low.update(5, 0, 12)  # ema = 0 < 0.4
    assert low.threshold == pytest.approx(0.6 + 0.1 * 0.01, abs=1e-12)


def test_adaptive_threshold_matches_the_authors_rule_on_random_traces():
    rng = np.random.default_rng(18)
    for alpha in (0.3, 0.5, 0.9):
        rule = adaptive_rule(max_draft_tokens=6, target_acceptance=alpha)
        gamma = 0.6
        for sample in range(4):
            rule.start_sample()
            ema = 0.0  # the acceptance EMA restarts every sample; gamma carries over (reset_per_sample false)
            for _ in range(30):
                drafted = int(rng.integers(0, 7))
                accepted = int(rng.integers(0, drafted + 1))
                rule.update(drafted, accepted, 6)
                gamma, ema = authors_update(gamma, ema, drafted, accepted, 6, alpha)
                assert rule.threshold == pytest.approx(gamma, abs=1e-12), (alpha, sample)


def test_the_acceptance_ema_restarts_each_sample_and_gamma_carries_over_unless_reset():
    carried = adaptive_rule(max_draft_tokens=8, target_acceptance=0.3)
    carried.start_sample()
    carried.update(2, 2, 8)  # ema 0.5 >= 0.3 -> lower: 0.6*0.9 + 0.1*0.59 = 0.599
    assert carried.threshold == pytest.approx(0.599, abs=1e-12)
    carried.start_sample()  # ema back to 0: 0 + 0.5*0 = 0 < 0.3 -> raise (a carried ema 0.25 would lower)
    carried.update(2, 0, 8)
    assert carried.threshold == pytest.approx(0.9 * 0.599 + 0.1 * 0.609, abs=1e-12)
    assert carried.state_dict() == {"threshold": pytest.approx(0.6, abs=1e-12)}
    reset = adaptive_rule(max_draft_tokens=8, target_acceptance=0.3, reset_per_sample=True)
    reset.start_sample()
    reset.update(2, 2, 8)
    reset.start_sample()
    assert reset.threshold == 0.6  # back to gamma_0


def test_the_decode_loop_drafts_under_the_threshold_the_rule_gives_after_each_cycle():
    """Through self_speculative_decode: cycle i drafts under gamma_i, and gamma_(i+1) is the authors' update of
    gamma_i with cycle i's drafted and accepted counts and K (not the cycle's budget-capped draft length)."""
    plan = SkipPlan((1,), (0,))
    model = tiny_model(TinyModel(2, 4, 2, 320, "eager", plan.attention, plan.mlp), seed=5, output_scale=0.3)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # draft confidences spread around the threshold
    rule = adaptive_rule(
        max_draft_tokens=4, target_acceptance=0.7, initial_threshold=0.05, threshold_step=0.05
    )
    prompt = torch.tensor([[256, 7, 8, 9]])
    gamma = 0.05
    for _ in range(2):  # two samples: gamma carries over, ema restarts
        result = speculative(model, prompt, 24, SamplingConfig(), plan, 4, rule)
        ema = 0.0
        for threshold, drafted, accepted in zip(result.thresholds, result.drafted, result.accepted):
            assert threshold == pytest.approx(gamma, abs=1e-12)
            gamma, ema = authors_update(gamma, ema, drafted, accepted, 4, 0.7, eps=0.05)
        assert rule.threshold == pytest.approx(gamma, abs=1e-12)
        steps = np.diff(result.thresholds)
        assert len(set(result.drafted)) > 1 and 0 < sum(result.accepted) < sum(result.drafted)
        assert (steps > 0).any() and (steps < 0).any()  # the threshold rose and fell: both branches taken


def saturated_model(plan: SkipPlan):
    """A tiny model whose output layer is scaled up so far that every softmax saturates: the top probability is
    exactly 1.0 in float32 (top-two margins of about 100 and more), for the full model and for the draft."""
    model = tiny_model(TinyModel(4, 4, 2, 320, "eager", plan.attention, plan.mlp), seed=7)
    with torch.no_grad():
        model.lm_head.weight.mul_(1e5)
    return model


def test_the_draft_exit_comparison_is_strict_below_the_threshold():
    """The authors stop drafting after a token whose confidence is *below* gamma. Here every confidence is
    exactly 1.0: a threshold of 1.0 must not stop drafting (1.0 < 1.0 is false), so each cycle drafts the full
    K as with threshold 0; a `<=` comparison would stop after every single draft."""
    plan = SkipPlan((1,), (2,))
    model, prompt = saturated_model(plan), torch.tensor([[256, 3, 4, 5]])
    with torch.no_grad():
        probs = torch.softmax(model(prompt).logits[0, -1].float(), dim=-1)
    assert float(probs.max()) == 1.0  # the fixture does saturate
    expected = autoregressive_decode(model, prompt, DecodeSettings(21)).tokens
    at_one = speculative(model, prompt, 21, SamplingConfig(), plan, 4, StaticThreshold(1.0))
    # 20 tokens after the prefill: cycles draft min(4, budget - 1): 4, 4, ... until the budget is nearly spent
    assert at_one.tokens == expected
    assert at_one.drafted[0] == 4 and max(at_one.drafted) == 4
    at_zero = speculative(model, prompt, 21, SamplingConfig(), plan, 4, StaticThreshold(0.0))
    assert at_one.drafted == at_zero.drafted and at_one.accepted == at_zero.accepted


# ---------------------------------------------------------------- speculative sampling end to end

TEMPERATURE, TOP_K, TOP_P = 0.7, 4, 0.9
SAMPLING = SamplingConfig(temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K)
SAMPLING_PROMPT = torch.tensor([[1, 5, 9, 12]])


def reference_law(logits: torch.Tensor) -> np.ndarray:
    """An independent sampler's law (numpy, float64): divide by the temperature, keep the top-k logits, then the
    smallest set of the most likely tokens whose mass reaches top_p (the top token always), renormalize."""
    scaled = logits.double().numpy() / TEMPERATURE
    order = np.argsort(-scaled, kind="stable")[:TOP_K]
    kept = np.exp(scaled[order] - scaled[order[0]])
    kept /= kept.sum()
    mass_before = np.cumsum(kept) - kept
    order, kept = order[mass_before < TOP_P], kept[mass_before < TOP_P]
    law = np.zeros(logits.shape[-1])
    law[order] = kept / kept.sum()
    return law


def sequence_law(model, prompt: torch.Tensor, length: int) -> dict[tuple[int, ...], float]:
    """P(first `length` new tokens) under autoregressive sampling, enumerated exactly with full forwards."""
    laws: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(length):
        longer = {}
        for prefix, probability in laws.items():
            with torch.no_grad():
                logits = model(torch.cat([prompt, torch.tensor([prefix], dtype=torch.long)], dim=1)).logits[
                    0, -1
                ]
            law = reference_law(logits)
            for token in np.flatnonzero(law):
                longer[(*prefix, int(token))] = probability * law[token]
        laws = longer
    return laws


def chi_square_p_value(observed: dict, expected_law: dict, trials: int) -> float:
    """Pearson's chi-square test of counts against a law, cells with expected count < 5 pooled into one; the
    upper tail by the Wilson-Hilferty approximation. Observations outside the law's support give 0."""
    if set(observed) - set(expected_law):
        return 0.0
    cells = sorted(expected_law, key=expected_law.get, reverse=True)
    big = [cell for cell in cells if expected_law[cell] * trials >= 5]
    small = [cell for cell in cells if expected_law[cell] * trials < 5]
    counts = [observed.get(cell, 0) for cell in big] + [sum(observed.get(cell, 0) for cell in small)]
    expected = [expected_law[cell] * trials for cell in big] + [sum(expected_law[c] for c in small) * trials]
    pairs = [(o, e) for o, e in zip(counts, expected) if e > 0]
    statistic = sum((o - e) ** 2 / e for o, e in pairs)
    dof = len(pairs) - 1
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.fixture(scope="module")
def sampling_model():
    plan = SkipPlan((1,), (0,))
    model = tiny_model(TinyModel(2, 4, 2, 258, "eager", plan.attention, plan.mlp), seed=3, output_scale=0.5)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # a few likely tokens per position, none certain
    return model, plan


def test_the_reference_sampler_is_a_real_filter():
    """The fixture's positions keep 2-4 tokens under T=0.7, top-k 4, top-p 0.9 (both filters act)."""
    logits = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]))
    # T = 0.7: p ~ x^(1/0.7) -> top-4 -> top-p 0.9 keeps tokens whose preceding mass < 0.9
    powered = np.array([0.5, 0.3, 0.1, 0.06]) ** (1 / 0.7)
    law = powered / powered.sum()
    keep = (np.cumsum(law) - law) < 0.9
    expected = np.where(keep, law, 0.0)
    np.testing.assert_allclose(reference_law(logits)[:4], expected / expected.sum(), rtol=1e-6)
    assert reference_law(logits)[4] == 0.0


def test_speculative_sampling_commits_the_autoregressive_sampler_law_over_four_positions(sampling_model):
    """Through the decode loop (K = 2, 4 new tokens: the prefill's token, then cycles of up to 2 drafts): the
    joint law of the four committed tokens equals the autoregressive sampler's (T=0.7, top-k 4, top-p 0.9),
    enumerated exactly above. Every path is taken: corrections from the residual at each draft position and
    bonus tokens after all drafts were accepted."""
    model, plan = sampling_model
    length, trials = 4, 400
    law = sequence_law(model, SAMPLING_PROMPT, length)
    assert 8 < len(law) <= TOP_K**length
    counts: dict[tuple[int, ...], int] = {}
    accepted_all = rejected = 0
    for seed in range(trials):
        result = speculative(model, SAMPLING_PROMPT, length, SAMPLING, plan, 2, StaticThreshold(0.0), seed)
        key = tuple(result.tokens)
        counts[key] = counts.get(key, 0) + 1
        accepted_all += result.accepted[0] == result.drafted[0] == 2
        rejected += result.accepted[0] < result.drafted[0]
    assert accepted_all > trials / 10 and rejected > trials / 10  # both the bonus and the residual paths
    assert chi_square_p_value(counts, law, trials) > 1e-4


def test_the_bonus_token_comes_from_the_row_after_the_last_draft(sampling_model):
    """With nothing skipped the draft is the full model, so every draft is accepted and the last token of each
    cycle is the bonus token. Its law, given the committed prefix, is p(. | prefix + all drafts); the law of the
    row before it (p(. | prefix + all drafts but the last)) is the wrong one."""
    model, _ = sampling_model
    nothing = SkipPlan((), ())
    length, trials = 3, 200  # prefill token, one draft, the bonus token
    law = sequence_law(model, SAMPLING_PROMPT, length)
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(trials):
        result = speculative(
            model, SAMPLING_PROMPT, length, SAMPLING, nothing, 1, StaticThreshold(0.0), 10_000 + seed
        )
        assert result.drafted == result.accepted == [1]
        counts[tuple(result.tokens)] = counts.get(tuple(result.tokens), 0) + 1
    assert chi_square_p_value(counts, law, trials) > 1e-4


def test_the_draft_law_in_acceptance_is_the_law_the_drafts_were_drawn_from(sampling_model):
    """With nothing skipped, q = p at every draft position (same model, same tempered and filtered law), so
    min(1, p(x)/q(x)) = 1: every draft is accepted. A q recorded under another law (e.g. temperature 1, or
    unfiltered) rejects some drafts: at T = 0.5 a token below the top has a lower tempered probability than its
    raw one."""
    model, _ = sampling_model
    nothing = SkipPlan((), ())
    for sampling in (SAMPLING, SamplingConfig(temperature=0.5)):
        for seed in range(2):
            result = speculative(model, SAMPLING_PROMPT, 60, sampling, nothing, 4, StaticThreshold(0.0), seed)
            assert sum(result.drafted) >= 44 and result.accepted == result.drafted, (sampling, seed)


# ---------------------------------------------------------------- run statistics

BOOTSTRAP = BootstrapConfig(resamples=200, confidence=0.9, seed=0)


def decode(new_tokens, total_time, full_forwards, drafted=(), accepted=()):
    tokens = list(range(new_tokens))
    result = DecodeResult(tokens, 0.01, total_time, full_forwards, 0, list(drafted), list(accepted))
    return DecodeRecord.from_result(result)


# Two samples where every candidate definition gives a different number (hand-computed below).
METHOD = [
    decode(4, 1.0, 2, drafted=[4], accepted=[2]),  # 1 + (2 + 1) = 4 tokens; rate 2/4; 0.25 s/token
    decode(11, 2.2, 3, drafted=[6, 6], accepted=[6, 2]),  # 1 + 7 + 3 = 11 tokens; rate 8/12; 0.2 s/token
]
BASELINE = [decode(4, 1.2, 4), decode(11, 3.3, 11)]  # 0.3 s/token each


def test_acceptance_rate_is_the_per_sample_mean_not_the_pooled_rate():
    metrics = decoding_metrics(METHOD, BASELINE, [True, False], False, BOOTSTRAP)
    assert metrics["acceptance_rate"] == pytest.approx((2 / 4 + 8 / 12) / 2)  # 0.5833, the paper's
    assert metrics["acceptance_rate_pooled"] == pytest.approx(10 / 16)  # 0.625
    assert metrics["samples_without_drafts"] == 0


def test_speedup_is_the_ratio_of_mean_times_per_token_not_the_mean_of_ratios():
    metrics = decoding_metrics(METHOD, BASELINE, [True, False], False, BOOTSTRAP)
    # mean(0.3, 0.3) / mean(0.25, 0.2) = 0.3 / 0.225 = 4/3; the mean of ratios would be (1.2 + 1.5)/2 = 1.35
    assert metrics["speedup"] == pytest.approx(4 / 3)
    # total time: (1.2 + 3.3) / (1.0 + 2.2) = 4.5 / 3.2 = 1.40625
    assert metrics["speedup_total_time"] == pytest.approx(1.40625)
    # tokens per full forward: 15 tokens / 5 passes = 3.0 (the mean of per-sample ratios would be 2.833)
    assert metrics["mean_accepted_length"] == pytest.approx(3.0)
    assert metrics["tokens_per_s"] == pytest.approx(15 / 3.2)
    assert metrics["baseline_tokens_per_s"] == pytest.approx(15 / 4.5)
    assert metrics["identical_fraction"] == 0.5
    assert (metrics["n_samples"], metrics["new_tokens"], metrics["mean_new_tokens"]) == (2, 15, 7.5)
    low, high = metrics["speedup_ci"]
    assert 1.2 <= low <= 4 / 3 <= high <= 1.5  # resampling pairs: the ratios of each pair's own means


def test_the_baseline_is_its_own_reference():
    metrics = decoding_metrics(BASELINE, None, None, True, BOOTSTRAP)
    assert (metrics["speedup"], metrics["speedup_total_time"], metrics["identical_fraction"]) == (
        1.0,
        1.0,
        1.0,
    )
    assert metrics["acceptance_rate"] is None and metrics["mean_accepted_length"] == pytest.approx(15 / 15)


def test_a_sample_without_drafts_is_left_out_of_the_acceptance_mean_and_counted():
    metrics = decoding_metrics([*METHOD, decode(1, 0.1, 1)], None, None, False, BOOTSTRAP)
    assert metrics["acceptance_rate"] == pytest.approx((2 / 4 + 8 / 12) / 2)
    assert metrics["samples_without_drafts"] == 1 and metrics["speedup"] is None


def test_identity_and_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 2, 4]) == 2
    assert first_difference([5, 2, 3], [1, 2, 3]) == 0
    assert first_difference([1, 2], [1, 2, 3]) == 2  # a prefix differs where the shorter one ends
    assert first_difference([1, 2, 3, 4], [1, 2]) == 2
    assert first_difference([], [7]) == 0 and first_difference([], []) is None


# ---------------------------------------------------------------- scoring

STEM_REFERENCE, STEM_PREDICTION = "Dogs running fast today", "The dog runs fast today"


@pytest.mark.parametrize("name", ["cnndm", "xsum"])
def test_rouge_through_the_task_config_is_the_papers_stemmed_rouge(name, monkeypatch):
    """The paper: RougeScorer(['rouge2'], use_stemmer=True).score(...).fmeasure. By hand, stemmed:
    reference [dog run fast today], prediction [the dog run fast today]: bigrams 3 of 3 and 3 of 4 match, so
    F1 = 2 * (3/4 * 3/3) / (3/4 + 1) = 6/7. Unstemmed only "fast today" matches: F1 = 2 * (1/4 * 1/3) / (7/12) = 2/7."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = load_task(task_config(name))
    scores = task.score_sample(Sample(id="s", prompt="", reference=STEM_REFERENCE), STEM_PREDICTION)
    paper = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True).score(STEM_REFERENCE, STEM_PREDICTION)
    assert scores["rouge2"] == pytest.approx(6 / 7) == pytest.approx(paper["rouge2"].fmeasure)
    unstemmed = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=False).score(STEM_REFERENCE, STEM_PREDICTION)
    assert unstemmed["rouge2"].fmeasure == pytest.approx(2 / 7)  # the pair does tell the two apart
    # ROUGE-1 by hand, stemmed: 4 of 4 reference and 4 of 5 predicted unigrams: F1 = 2*(4/5)/(9/5) = 8/9
    assert scores["rouge1"] == pytest.approx(8 / 9)


def test_pass_at_k_is_the_closed_form(monkeypatch):
    """pass@k per problem = 1 - C(n - c, k) / C(n, k), averaged over problems (Chen et al. 2021)."""
    task = load_task(task_config("humaneval", samples_per_problem=12, k=[1, 10], metric="pass@10"))
    correct = {"A": 0, "B": 1, "C": 3, "D": 12}
    samples, scores = [], []
    for task_id, c in correct.items():
        for draw in range(12):
            samples.append(Sample(id=f"{task_id}#{draw}", prompt="", seed=draw, meta={"task_id": task_id}))
            scores.append({"passed": float(draw < c)})
    result = task.aggregate(samples, scores)

    def closed_form(n, c, k):
        return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))

    # by hand: pass@1 = c/n -> (0 + 1/12 + 3/12 + 1)/4 = 1/3; pass@10: 0, 1 - 11/66 = 5/6, 1, 1 -> 17/24
    assert result["pass@k"]["pass@1"] == pytest.approx(1 / 3)
    assert result["pass@k"]["pass@10"] == pytest.approx(17 / 24)
    for k in (1, 10):
        expected = sum(closed_form(12, c, k) for c in correct.values()) / len(correct)
        assert result["pass@k"][f"pass@{k}"] == pytest.approx(float(expected))
    assert (
        result["score"] == pytest.approx(17 / 24) and result["n_problems"] == 4 and result["n_samples"] == 48
    )


def test_the_chi_square_helper_rejects_a_wrong_law():
    law = {(0,): 0.5, (1,): 0.5}
    assert chi_square_p_value({(0,): 500, (1,): 500}, law, 1000) > 0.5
    assert chi_square_p_value({(0,): 600, (1,): 400}, law, 1000) < 1e-6
    assert chi_square_p_value({(2,): 1, (0,): 999}, law, 1000) == 0.0
    assert list(itertools.islice(law, 1)) == [(0,)]
