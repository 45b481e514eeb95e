"""Drafts copied from the context by n-gram match: the candidate rule of prompt lookup decoding (Saxena 2023),
exactly as transformers' `PromptLookupCandidateGenerator.get_candidates` (v5) applies it.

For n from min(max_matching_ngram_size, len(context) - 1) down to 1: take the context's last n tokens and
scan the context left to right for their first occurrence at i whose continuation
context[i + n : min(i + n + num_draft_tokens, len(context))] is non-empty (the suffix itself never
qualifies: its continuation is empty). The first n that finds one decides: the continuation, cut before
its first EOS token, is the draft (possibly empty after the cut; shorter n-grams are not tried then).
No match for any n: no draft. transformers also drops candidates its logits processors forbid; greedy
decoding without processors forbids none, and this project applies none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def ngram_draft(
    context: Sequence[int], max_matching_ngram_size: int, num_draft_tokens: int, eos_token_ids: frozenset[int]
) -> list[int]:
    """The draft tokens for `context` (prompt + committed tokens, as ints); [] when nothing matches."""
    if max_matching_ngram_size < 1 or num_draft_tokens < 1:
        raise ValueError(
            f"max_matching_ngram_size and num_draft_tokens must be >= 1, got {max_matching_ngram_size} and "
            f"{num_draft_tokens}"
        )
    length = len(context)
    for ngram_size in range(min(max_matching_ngram_size, length - 1), 0, -1):
        suffix = list(context[length - ngram_size :])
        first = suffix[0]
        for start in range(length - ngram_size):  # start + ngram_size < length: a non-empty continuation
            if context[start] != first or list(context[start : start + ngram_size]) != suffix:
                continue
            begin = start + ngram_size
            draft = list(context[begin : min(begin + num_draft_tokens, length)])
            for index, token in enumerate(draft):
                if token in eos_token_ids:
                    return draft[:index]
            return draft
    return []


@dataclass(frozen=True)
class NgramSettings:
    """How n-gram drafts are taken: up to `max_draft_tokens` tokens (transformers' prompt_lookup_num_tokens)
    after a match of up to `max_matching_ngram_size` tokens."""

    max_draft_tokens: int
    max_matching_ngram_size: int

    def draft(self, context: Sequence[int], eos_token_ids: frozenset[int]) -> list[int]:
        return ngram_draft(context, self.max_matching_ngram_size, self.max_draft_tokens, eos_token_ids)
