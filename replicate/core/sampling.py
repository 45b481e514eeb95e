"""The math every decoding method shares: turning logits into a distribution, sampling, and deciding which
drafted tokens the full model accepts.

Greedy decoding is `temperature == 0`: tokens are the argmax of the raw logits, exactly as
`model.generate(do_sample=False)` picks them. Sampling applies temperature, then top-k, then top-p
(nucleus), then draws from the result. Speculative sampling (Leviathan et al. 2023; Chen et al. 2023)
accepts a drafted token x with probability min(1, p(x) / q(x)) and on rejection draws from
normalize(max(0, p - q)), so every committed token is distributed as the full model's p.
"""

from __future__ import annotations

import torch

from replicate.core.sampling_config import SamplingConfig  # typed apart, without torch; used below


def logits_to_probs(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Distribution the method samples from. logits: (..., vocab) -> probs (..., vocab), float32.

    For greedy decoding this is the plain softmax; it is used only for the draft's confidence."""
    logits = logits.float()
    if sampling.greedy:
        return torch.softmax(logits, dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k > 0:
        kth_largest = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, sorted_ids = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the top token always stays.
        mass_above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_above >= sampling.top_p
        drop = drop_sorted.scatter(-1, sorted_ids, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.softmax(logits, dim=-1)


DRAFT_CONFIDENCES = ("paper", "processed")


def drafted_token_confidence(
    logits: torch.Tensor, probs: torch.Tensor, token: int, sampling: SamplingConfig, mode: str
) -> float:
    """The draft confidence a draft-exit threshold is compared with: the probability of the drafted `token`.
    logits: (1, vocab) raw draft logits; probs: (1, vocab) the distribution it was drawn from
    (`logits_to_probs`).

    `paper`: under the raw softmax (temperature 1, no top-k/top-p), as the authors' decoding.py compares it
    with gamma in every mode (greedy: the top-1 probability, since the drafted token is the argmax).
    `processed`: under the sampling distribution (tempered and filtered). Greedy, both are the plain
    softmax's value at the argmax, so greedy drafting is the same in both modes."""
    if mode not in DRAFT_CONFIDENCES:
        raise ValueError(f"draft_confidence={mode!r} is not one of {', '.join(DRAFT_CONFIDENCES)}")
    if mode == "processed" or sampling.greedy:  # greedy `probs` is already the raw softmax
        return float(probs[0, token])
    # p(token) = exp(logit - logsumexp(logits)): no second softmax over the vocabulary.
    raw = logits[0].float()
    return float(torch.exp(raw[token] - torch.logsumexp(raw, dim=-1)))


def choose_tokens(
    logits: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row. logits: (n, vocab) -> (n,) token ids. Greedy takes the argmax of the raw logits;
    sampling draws from `probs` (computed from the logits when not given)."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    if probs is None:
        probs = logits_to_probs(logits, sampling)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def accepted_prefix(draft_tokens: list[int], target_tokens: list[int]) -> int:
    """Length of the longest prefix of the drafts equal to the full model's tokens at the same positions
    (target_tokens[i] is the full model's argmax after draft i - 1; it has at least len(drafts) entries)."""
    num_accepted = 0
    while num_accepted < len(draft_tokens) and draft_tokens[num_accepted] == target_tokens[num_accepted]:
        num_accepted += 1
    return num_accepted


def greedy_acceptance(draft_tokens: list[int], target_logits: torch.Tensor) -> tuple[int, int]:
    """Longest prefix of the drafts that the full model's argmax agrees with, and its own next token.

    draft_tokens: k ids; target_logits: (k + 1, vocab), row i predicts the token after draft i - 1.
    Returns (num_accepted, next_token): next_token is the correction at the first disagreement, or the
    bonus token after the last draft when all k are accepted."""
    target_tokens = target_logits.argmax(dim=-1).tolist()  # one host sync for the whole cycle
    num_accepted = accepted_prefix(draft_tokens, target_tokens)
    return num_accepted, target_tokens[num_accepted]


def speculative_acceptance(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    """Speculative sampling over k drafts.

    draft_tokens: (k,); draft_probs q: (k, vocab); target_probs p: (k + 1, vocab).
    Draft i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection the next token
    is drawn from normalize(max(0, p_i - q_i)); if all k are accepted it is drawn from p_k.
    Returns (num_accepted, next_token)."""
    num_drafts = draft_tokens.shape[0]
    positions = torch.arange(num_drafts, device=draft_tokens.device)
    target_of_drafts = target_probs[positions, draft_tokens]
    draft_of_drafts = draft_probs[positions, draft_tokens]
    uniforms = torch.rand(num_drafts, generator=generator, device=draft_tokens.device)
    # u < p/q written as u * q < p avoids dividing by q.
    rejected = (uniforms * draft_of_drafts >= target_of_drafts).nonzero()
    if rejected.numel() == 0:
        bonus = torch.multinomial(target_probs[num_drafts], 1, generator=generator)
        return num_drafts, int(bonus)
    first_rejected = int(rejected[0, 0])
    residual = (target_probs[first_rejected] - draft_probs[first_rejected]).clamp_min(0)
    total = residual.sum()
    if total <= 0:
        # p == q exactly yet rejected can only happen through rounding; p itself is then the right law.
        residual, total = target_probs[first_rejected], target_probs[first_rejected].sum()
    correction = torch.multinomial(residual / total, 1, generator=generator)
    return first_rejected, int(correction)


def copied_draft_acceptance(
    draft_tokens: list[int],
    target_logits: torch.Tensor,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    """Acceptance of drafts that were copied, not sampled (n-gram drafts): their draft distribution is the
    point mass q_i = one_hot(x_i). draft_tokens: k ids; target_logits: (k + 1, vocab). Greedy: the longest
    prefix the argmax agrees with (`greedy_acceptance`). Sampling: `speculative_acceptance` with those q, i.e.
    x_i is accepted with probability p_i(x_i), and at a rejection the token is drawn from p_i without x_i,
    renormalized: every committed token is distributed as p. Returns (num_accepted, next_token)."""
    if sampling.greedy:
        return greedy_acceptance(draft_tokens, target_logits)
    target_probs = logits_to_probs(target_logits, sampling)
    drafts = torch.tensor(draft_tokens, device=target_logits.device, dtype=torch.long)
    draft_probs = torch.nn.functional.one_hot(drafts, target_probs.shape[-1]).to(target_probs.dtype)
    return speculative_acceptance(drafts, draft_probs, target_probs, generator)
