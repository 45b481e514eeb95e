"""From prompt text to the token ids a decoding loop takes, cut the way the paper cuts a prompt that does not
fit the model's context beside the new tokens."""

from __future__ import annotations

import torch

from replicate.core.models import LoadedModel
from replicate.schema import ConfigError


def truncate_middle(token_ids: list[int], max_length: int) -> list[int]:
    """Cut a too-long prompt as the paper's `clip_input` does: keep the first 2 and the last 3 tokens and drop
    the excess from the end of the part between them, i.e. keep the first `max_length - 3` and the last 3
    tokens (max_length 5 keeps the first 2 and last 3). For an article prompt that keeps the article's
    beginning and the closing "\nSummary:". Prompts of at most `max_length` tokens are returned unchanged.

    Departures, both at edges only: the paper cuts when prompt + max_new_tokens >= context, and at exact
    equality its `[:-0]` slice empties the middle (5 tokens survive); we keep such a prompt whole. Below
    max_length 5 (the paper would still return 5 tokens) we keep the last min(3, max_length) tokens and
    fill the rest from the start."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if len(token_ids) <= max_length:
        return list(token_ids)
    tail = min(3, max_length)
    head = max_length - tail
    return list(token_ids[:head]) + list(token_ids[len(token_ids) - tail :])


def encode_prompt(loaded: LoadedModel, text: str, max_new_tokens: int) -> tuple[torch.Tensor, bool]:
    """Token ids (1, seq) on the model's device and whether they were cut. A prompt longer than
    `max_context - max_new_tokens` tokens is cut in the middle to exactly that many (`truncate_middle`), so
    prompt and new tokens fit the context: the authors' `clip_input` keeps 3584 = 4096 - 512 tokens."""
    ids = loaded.encode(text)
    if not ids:
        raise ConfigError(f"the prompt {text!r} encodes to no tokens; give a non-empty prompt")
    budget = loaded.max_context - max_new_tokens
    if budget < 5:
        raise ConfigError(
            f"max_new_tokens={max_new_tokens} leaves {budget} prompt tokens in max_context={loaded.max_context}; "
            "at least 5 are needed (the first 2 and last 3 of a cut prompt)"
        )
    truncated = len(ids) > budget
    if truncated:
        ids = truncate_middle(ids, budget)
    return torch.tensor([ids], device=loaded.device), truncated
