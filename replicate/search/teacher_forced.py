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
`python -m studies.estimate_check` measures how well it ranks sets against decoding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from replicate.core.methods import build_draft_exit
from replicate.core.models import LoadedModel
from replicate.core.skipping import SkipPlan
from replicate.search.accounting import PassCount
from replicate.search.dev_sequences import DevSequence, draft_predictions, reference_sequences
from replicate.search.objective import MEASUREMENT_KEYS, TrialSetup, acceptance_summary
from replicate.search.sub_block_costs import trace_predicted_speedup

ACCEPTANCE_ESTIMATES = ("decoded", "teacher_forced")


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


@dataclass(frozen=True)
class TraceLimits:
    """What bounds a replayed decode as it bounds decoding: its new tokens, the drafts per cycle (K) and
    the tokens that end a draft."""

    max_new_tokens: int
    max_draft_tokens: int
    eos_token_ids: frozenset[int]


def simulate_trace(
    draft_tokens: Sequence[int],
    confidences: Sequence[float],
    continuation: Sequence[int],
    limits: TraceLimits,
    draft_exit: Any,
) -> dict[str, Any]:
    """Replay `self_speculative_decode`'s cycles on teacher-forced predictions.

    draft_tokens[j], confidences[j]: the draft's guess for continuation[j + 1] and its top-1 probability.
    Returns one prompt's trace as a trial logs it (`drafted`, `accepted` per cycle, `new_tokens`,
    `full_forwards`, prefill included). `draft_exit` is updated as decoding would update it."""
    max_new_tokens, max_draft_tokens = limits.max_new_tokens, limits.max_draft_tokens
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
            if draft_tokens[row] in limits.eos_token_ids or confidences[row] < threshold:
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

    measurement_keys = (*MEASUREMENT_KEYS, "agreement", "search_cost")

    def __init__(
        self,
        setup: TrialSetup,
        costs: Mapping[str, Any] | None = None,
        sequences: Sequence[DevSequence] | None = None,
    ):
        search_cfg = setup.search_cfg
        if search_cfg["objective"] != "predicted_speedup":
            raise ValueError(
                f"search.acceptance_estimate=teacher_forced decodes nothing, so it cannot measure "
                f"search.objective={search_cfg['objective']}; use search.objective=predicted_speedup"
            )
        if not setup.sampling.greedy:
            raise ValueError("the teacher-forced estimate needs greedy sampling (temperature 0)")
        setup.check_drafts()
        self.loaded, self.method_cfg, self.costs = setup.loaded, setup.method_cfg, costs
        self.max_new_tokens = search_cfg["max_new_tokens"]
        self.context = search_cfg["teacher_forced"]["context"]
        self.prompts = list(setup.prompts)
        self.prompt_ids = setup.prompt_ids()
        self.setup_cost = PassCount()
        if sequences is None:
            sequences, self.setup_cost = reference_sequences(
                self.loaded, self.prompt_ids, self.max_new_tokens, keep_cache=True
            )
        elif any(sequence.cache is None for sequence in sequences):
            raise ValueError("the teacher-forced estimate needs the sequences' caches (keep_cache=True)")
        self.sequences = list(sequences)
        self.evaluations = 0

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
        limits = TraceLimits(
            self.max_new_tokens, self.method_cfg["max_draft_tokens"], self.loaded.eos_token_ids
        )
        for sequence in self.sequences:
            tokens, confidences = draft_predictions(self.loaded, sequence, plan, self.context)
            tokens, confidences = tokens.tolist(), confidences.tolist()
            reference = sequence.continuation[1:]
            matches += sum(a == b for a, b in zip(tokens, reference))
            positions += len(reference)
            cost.draft_forwards += 1
            cost.tokens += len(reference)
            cycles.append(simulate_trace(tokens, confidences, sequence.continuation, limits, draft_exit))
        self.evaluations += 1
        cost.seconds = time.perf_counter() - clock
        drafted = [sum(cycle["drafted"]) for cycle in cycles]
        accepted = [sum(cycle["accepted"]) for cycle in cycles]
        new_tokens = sum(cycle["new_tokens"] for cycle in cycles)
        predicted = trace_predicted_speedup(cycles, self.costs, plan)
        return {
            "objective": predicted,
            "tokens_per_s": None,  # nothing was decoded
            "predicted_speedup": predicted,
            **acceptance_summary(drafted, accepted),
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
