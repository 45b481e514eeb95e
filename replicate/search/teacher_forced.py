"""A cheap acceptance estimate for a skip set: teacher-forced agreement of the draft with the full model.

A decoded trial (`replicate.search.objective.TrialEvaluator`) runs self-speculative decoding of every dev
prompt: a few hundred one-token forward passes. This estimate runs, per dev prompt, one draft pass over
the full model's own greedy continuation instead:

1. once per search, the full model decodes each dev prompt greedily (`search.max_new_tokens` tokens:
   the reference continuation y_0 .. y_{N-1}) and keeps the KV cache of its prompt (P tokens);
2. per skip set, the draft (`skip_sublayers` active) runs once over y_0 .. y_{N-2} at positions
   P .. P + N - 2 on top of the full model's prompt cache, as drafting does; its argmax at row j is its
   guess for y_{j+1} and its top-1 probability the draft-exit confidence;
3. the decoding loop is then replayed on these predictions (`simulate_trace`): the same draft-exit rule
   (`method`, the adaptive threshold by default, carried from prompt to prompt as in a trial), the same
   K, a cycle accepts the leading drafts that equal the reference and commits one more token. The replay
   gives the trace (per cycle drafted / accepted) that `predicted_speedup` scores with the cost profile.

Where it is approximate (and why it can rank sets differently from decoding): in a real cycle the
committed tokens' KV comes from the full model and the drafts after a rejected one follow the draft's own
tokens; here the continuation's KV comes from the draft and every position is scored on the reference
path. Greedy decoding only (the reference continuation is the full model's argmax path).
`python -m replicate.search.estimate_check` measures how well it ranks sets against decoding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from replicate.core.decoding import autoregressive_decode, forward
from replicate.core.methods import build_draft_exit
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipAwareCache, SkipPlan, skip_sublayers, truncate_cache
from replicate.run.runner import encode_prompt
from replicate.search.accounting import PassCount
from replicate.search.sub_block_costs import trace_predicted_speedup

ACCEPTANCE_ESTIMATES = ("decoded", "teacher_forced")
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
        result = autoregressive_decode(
            loaded.model, ids, max_new_tokens, SamplingConfig(), loaded.eos_token_ids
        )
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


def teacher_forced_agreement(
    loaded: LoadedModel, sequences: Sequence[DevSequence], plan: SkipPlan, context: str
) -> tuple[float, PassCount]:
    """Top-1 agreement of the draft with the reference continuation over all drafting positions of
    `sequences` (one draft pass each), and what it ran."""
    clock, matches, positions = time.perf_counter(), 0, 0
    cost = PassCount()
    for sequence in sequences:
        tokens, _ = draft_predictions(loaded, sequence, plan, context)
        reference = torch.tensor(sequence.continuation[1:], device=tokens.device)
        matches += int((tokens == reference).sum())
        positions += len(reference)
        cost.draft_forwards += 1
        cost.tokens += len(reference)
    cost.seconds = time.perf_counter() - clock
    return matches / positions, cost


def simulate_trace(
    draft_tokens: Sequence[int],
    confidences: Sequence[float],
    continuation: Sequence[int],
    max_new_tokens: int,
    max_draft_tokens: int,
    draft_exit: Any,
    eos_token_ids: frozenset[int],
) -> dict[str, Any]:
    """Replay `self_speculative_decode`'s cycles on teacher-forced predictions.

    draft_tokens[j], confidences[j]: the draft's guess for continuation[j + 1] and its top-1 probability.
    Returns one prompt's trace as a trial logs it (`drafted`, `accepted` per cycle, `new_tokens`,
    `full_forwards`, prefill included). `draft_exit` is updated as decoding would update it."""
    total = len(continuation)
    committed, drafted_per_cycle, accepted_per_cycle = 1, [], []  # the prefill commits y_0
    draft_exit.start_sample()
    while committed < total:
        num_to_draft = min(max_draft_tokens, max_new_tokens - committed - 1)
        threshold = draft_exit.threshold
        drafted = 0
        while drafted < num_to_draft and committed - 1 + drafted < len(draft_tokens):
            row = committed - 1 + drafted
            drafted += 1
            if draft_tokens[row] in eos_token_ids or confidences[row] < threshold:
                break
        accepted = 0
        while (
            accepted < drafted
            and draft_tokens[committed - 1 + accepted] == continuation[committed + accepted]
        ):
            accepted += 1
        committed = min(total, committed + accepted + 1)
        drafted_per_cycle.append(drafted)
        accepted_per_cycle.append(accepted)
        draft_exit.update(drafted, accepted, max_draft_tokens)
    return {
        "new_tokens": total,
        "full_forwards": 1 + len(drafted_per_cycle),
        "drafted": drafted_per_cycle,
        "accepted": accepted_per_cycle,
    }


class TeacherForcedEvaluator:
    """Scores a skip plan from teacher-forced draft passes; the interface of `TrialEvaluator`.

    sequences: reference continuations already computed (e.g. by a selector), else computed here (their
    cost is `setup_cost`). costs: the cost profile (`predicted_speedup` is the only objective)."""

    def __init__(
        self,
        loaded: LoadedModel,
        method_cfg: Mapping[str, Any],
        sampling: SamplingConfig,
        prompts: Sequence[Any],
        search_cfg: Mapping[str, Any],
        costs: Mapping[str, Any] | None = None,
        sequences: Sequence[DevSequence] | None = None,
    ):
        if search_cfg["objective"] != "predicted_speedup":
            raise ValueError(
                f"search.acceptance_estimate=teacher_forced decodes nothing, so it cannot measure "
                f"search.objective={search_cfg['objective']}; use search.objective=predicted_speedup"
            )
        if not sampling.greedy:
            raise ValueError("the teacher-forced estimate needs greedy sampling (temperature 0)")
        if build_draft_exit(method_cfg) is None:
            raise ValueError(
                f"method={method_cfg['name']} does not draft; the search needs a drafting method"
            )
        self.loaded, self.method_cfg, self.costs = loaded, method_cfg, costs
        self.max_new_tokens = search_cfg["max_new_tokens"]
        self.context = search_cfg["teacher_forced"]["context"]
        self.prompts = list(prompts)
        self.prompt_ids = [encode_prompt(loaded, p.text, self.max_new_tokens)[0] for p in self.prompts]
        self.setup_cost = PassCount()
        if sequences is None:
            sequences, self.setup_cost = reference_sequences(
                loaded, self.prompt_ids, self.max_new_tokens, keep_cache=True
            )
        elif any(sequence.cache is None for sequence in sequences):
            raise ValueError("the teacher-forced estimate needs the sequences' caches (keep_cache=True)")
        self.sequences = list(sequences)
        self.evaluations = 0

    measurement_keys = (
        "objective",
        "tokens_per_s",
        "predicted_speedup",
        "acceptance",
        "acceptance_pooled",
        "agreement",
        "mean_accepted_length",
        "new_tokens",
        "draft_forwards",
        "full_forwards",
        "decode_time_s",
        "prefill_time_s",
        "cycles",
        "search_cost",
    )

    def warm_up(self, runs: int) -> None:
        """Nothing is timed, so nothing needs warming up."""

    def agreement(self, plan: SkipPlan) -> tuple[float, PassCount]:
        return teacher_forced_agreement(self.loaded, self.sequences, plan, self.context)

    def evaluate(self, plan: SkipPlan) -> dict[str, Any]:
        """The estimated trial: the replayed traces scored with the cost profile."""
        if self.costs is None:
            raise ValueError(
                "the predicted_speedup objective needs a cost profile (TeacherForcedEvaluator.costs)"
            )
        clock, cost = time.perf_counter(), PassCount()
        draft_exit = build_draft_exit(self.method_cfg)  # fresh per trial, carried across its prompts
        cycles, matches, positions = [], 0, 0
        for sequence in self.sequences:
            tokens, confidences = draft_predictions(self.loaded, sequence, plan, self.context)
            tokens, confidences = tokens.tolist(), confidences.tolist()
            reference = sequence.continuation[1:]
            matches += sum(a == b for a, b in zip(tokens, reference))
            positions += len(reference)
            cost.draft_forwards += 1
            cost.tokens += len(reference)
            cycles.append(
                simulate_trace(
                    tokens,
                    confidences,
                    sequence.continuation,
                    self.max_new_tokens,
                    self.method_cfg["max_draft_tokens"],
                    draft_exit,
                    self.loaded.eos_token_ids,
                )
            )
        self.evaluations += 1
        cost.seconds = time.perf_counter() - clock
        drafted = [sum(cycle["drafted"]) for cycle in cycles]
        accepted = [sum(cycle["accepted"]) for cycle in cycles]
        rates = [a / d for a, d in zip(accepted, drafted) if d > 0]
        new_tokens = sum(cycle["new_tokens"] for cycle in cycles)
        predicted = trace_predicted_speedup(cycles, self.costs, plan)
        return {
            "objective": predicted,
            "tokens_per_s": None,  # nothing was decoded
            "predicted_speedup": predicted,
            "acceptance": float(np.mean(rates)) if rates else None,
            "acceptance_pooled": sum(accepted) / sum(drafted) if sum(drafted) else None,
            "agreement": matches / positions,
            "mean_accepted_length": new_tokens / sum(cycle["full_forwards"] for cycle in cycles),
            "new_tokens": new_tokens,
            "draft_forwards": sum(drafted),
            "full_forwards": sum(cycle["full_forwards"] for cycle in cycles),
            "decode_time_s": None,
            "prefill_time_s": None,
            "cycles": cycles,
            "search_cost": cost.as_dict(),
        }
