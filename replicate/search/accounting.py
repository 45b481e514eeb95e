"""What a search cost: forward passes and wall-clock time, per trial and for a selector's preparation.

Trials log what they ran. A decoded trial (`TrialEvaluator`) logs its decoding's `full_forwards` (prefill
included) and `draft_forwards`, one token each but the prefill and the verify passes; a teacher-forced
trial logs `search_cost` (draft passes over whole continuations; its `full_forwards` are those of the
replayed decoding, not run). Preparation is what a strategy runs once before its trials: the reference
continuations, the residual stream, the DP, the single-skip agreements. The cost profile is left out: it is
measured once per model and device and shared by every strategy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class PassCount:
    """Full-model and draft forward passes (any number of tokens each), the tokens fed through them where
    known (None: not counted), and wall-clock seconds."""

    full_forwards: float = 0
    draft_forwards: float = 0
    tokens: int | None = 0
    seconds: float = 0.0

    def add(self, other: PassCount | Mapping[str, Any]) -> None:
        other = other if isinstance(other, PassCount) else PassCount(**other)
        self.full_forwards += other.full_forwards
        self.draft_forwards += other.draft_forwards
        self.tokens = None if self.tokens is None or other.tokens is None else self.tokens + other.tokens
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "full_forwards": self.full_forwards,
            "draft_forwards": self.draft_forwards,
            "tokens": self.tokens,
            "seconds": self.seconds,
        }


def trial_cost(trial: Mapping[str, Any]) -> PassCount:
    """What one logged trial ran (nothing but its suggestion when its set was met before)."""
    if trial["reused_from"] is not None:
        return PassCount(seconds=trial["suggest_time_s"])
    if trial.get("search_cost") is not None:
        cost = PassCount(**trial["search_cost"])
        cost.seconds = trial["suggest_time_s"] + trial["evaluate_time_s"]
        return cost
    return PassCount(
        full_forwards=trial["full_forwards"],
        draft_forwards=trial["draft_forwards"],
        tokens=None,  # decoding logs no token count per pass
        seconds=trial["suggest_time_s"] + trial["evaluate_time_s"],
    )


def search_cost(trials: Sequence[Mapping[str, Any]], preparation: PassCount | None) -> dict[str, Any]:
    """The summary's `search_cost`: preparation, trials, and both together."""
    spent = PassCount()
    for trial in trials:
        spent.add(trial_cost(trial))
    total = PassCount()
    total.add(spent)
    if preparation is not None:
        total.add(preparation)
    return {
        "preparation": None if preparation is None else preparation.as_dict(),
        "trials": {**spent.as_dict(), "evaluated": sum(t["reused_from"] is None for t in trials)},
        "total": total.as_dict(),
    }
