"""The dev sequences the selectors and the teacher-forced estimate work on, and the draft's teacher-forced pass.

A dev sequence is a dev prompt (P tokens) followed by the full model's greedy continuation y_0 .. y_{N-1}
(`search.max_new_tokens` tokens, decoded once per search). The "drafting rows" are y_0 .. y_{N-2} at
positions P .. P + N - 2: drafting feeds them, and the draft's output at row j is its guess for y_{j+1}.
The full model's KV cache of prompt and rows is kept, and a draft pass (`draft_predictions`) runs over all
rows at once on top of it, with a 4-D attention mask choosing which keys each row sees
(`search.teacher_forced.context`, see `draft_attention_mask`); the pass's own keys are cut off afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from replicate.core.decoding import DecodeSettings, autoregressive_decode, forward
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipAwareCache, SkipPlan, skip_sublayers, truncate_cache
from replicate.search.accounting import PassCount

TEACHER_FORCED_CONTEXTS = ("full", "draft")


@dataclass
class DevSequence:
    """One dev prompt and the full model's greedy continuation of it.

    prompt_ids: (1, P). continuation: the N new token ids (EOS included when hit). cache: the full model's KV
    of the prompt and y_0 .. y_{N-2} (P + N - 1 positions), cut back to that after every draft pass."""

    prompt_ids: torch.Tensor
    continuation: list[int]
    cache: SkipAwareCache | None = field(default=None, repr=False)

    @property
    def prompt_length(self) -> int:
        return int(self.prompt_ids.shape[1])

    def draft_inputs(self) -> torch.Tensor:
        """The tokens drafting feeds, y_0 .. y_{N-2}: (1, N - 1)."""
        return torch.tensor([self.continuation[:-1]], device=self.prompt_ids.device)

    def sequence_ids(self) -> torch.Tensor:
        """Prompt then y_0 .. y_{N-2}: (1, P + N - 1); rows P .. P + N - 2 are the drafting positions."""
        return torch.cat([self.prompt_ids, self.draft_inputs()], dim=1)


@torch.inference_mode()
def reference_sequences(
    loaded: LoadedModel, prompt_ids: Sequence[torch.Tensor], max_new_tokens: int, keep_cache: bool
) -> tuple[list[DevSequence], PassCount]:
    """The full model's greedy continuation of every prompt (1, P), and, with `keep_cache`, its KV."""
    if max_new_tokens < 2:
        raise ValueError(f"a teacher-forced estimate needs max_new_tokens >= 2, got {max_new_tokens}")
    cost, sequences = PassCount(), []
    clock = time.perf_counter()
    for ids in prompt_ids:
        settings = DecodeSettings(max_new_tokens, SamplingConfig(), loaded.eos_token_ids)
        result = autoregressive_decode(loaded.model, ids, settings)
        cost.full_forwards += result.full_forwards
        cost.tokens += ids.shape[1] + result.num_new_tokens - 1
        sequence = DevSequence(ids, list(result.tokens))
        if keep_cache:
            sequence.cache = SkipAwareCache(config=loaded.model.config)
            full_ids = sequence.sequence_ids()
            forward(loaded.model, full_ids, sequence.cache, 0, last_only=True)
            cost.full_forwards += 1
            cost.tokens += full_ids.shape[1]
        sequences.append(sequence)
    cost.seconds = time.perf_counter() - clock
    return sequences, cost


def draft_attention_mask(
    prompt_length: int, num_drafted: int, context: str, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask (1, 1, n, P + n + n) of the draft pass over n = N - 1 rows on a cache of P + n full-model
    positions, its own n keys appended after them. Row i (position P + i) sees the prompt and:
    `full`: the full model's keys of y_0 .. y_{i-1}, then its own key; `draft`: its own keys of y_0 .. y_i."""
    if context not in TEACHER_FORCED_CONTEXTS:
        raise ValueError(f"search.teacher_forced.context={context!r} is not one of {TEACHER_FORCED_CONTEXTS}")
    cached = prompt_length + num_drafted
    rows = torch.arange(num_drafted).unsqueeze(1)
    columns = torch.arange(cached + num_drafted).unsqueeze(0)
    own = columns - cached  # index among the appended keys (negative: a cached key)
    prompt = columns < prompt_length
    if context == "full":
        earlier = (columns >= prompt_length) & (columns < prompt_length + rows)
        visible = prompt | earlier | (own == rows)
    else:
        visible = prompt | ((own >= 0) & (own <= rows))
    mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
    return mask[None, None]


@torch.inference_mode()
def draft_predictions(
    loaded: LoadedModel, sequence: DevSequence, plan: SkipPlan, context: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The draft's argmax (N - 1,) and top-1 probability (N - 1,) at every drafting position of one
    sequence, in one pass over y_0 .. y_{N-2} on the full model's cache (`draft_attention_mask`)."""
    inputs = sequence.draft_inputs()
    count, start = inputs.shape[1], sequence.prompt_length
    cached = start + count
    dtype = next(loaded.model.parameters()).dtype
    mask = draft_attention_mask(start, count, context, dtype).to(inputs.device)
    positions = torch.arange(start, cached, device=inputs.device).unsqueeze(0)
    with skip_sublayers(loaded.model, plan):
        output = loaded.model(
            input_ids=inputs,
            position_ids=positions,
            attention_mask=mask,
            past_key_values=sequence.cache,
            use_cache=True,
        )
    truncate_cache(sequence.cache, cached)
    logits = output.logits[0]
    probs = torch.softmax(logits.float(), dim=-1)  # as `logits_to_probs` does for greedy decoding
    top_probs, _ = probs.max(dim=-1)
    return logits.argmax(dim=-1), top_probs
