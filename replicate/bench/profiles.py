"""Cost profiles in the bench: interleaved with the race, per attention implementation, per KV cache kind.

Interleaving: a profile taken once before a race and once after it prices the decodes at the machine's
speed of two other moments; on a shared or thermally throttled machine that moves efficiency by more than the
implementation's own overhead. `InterleavedProfiles` is the race's `between` hook: it measures a short
profile before every round (one prompt, every contender) and once after the last, and round j is priced
with the pool of the two profiles that bracket it, so each decode is paired with the speed of its moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from replicate.core.attention import attention_implementation, installed
from replicate.core.models import LoadedModel
from replicate.cost_model import (
    break_even_acceptance,
    measure_cost_profile,
    pool_profiles,
    predicted_speedup,
    speedup_for_acceptance,
)
from replicate.records import DecodeRecord


@dataclass(frozen=True)
class ProfilePlan:
    """How the bench measures one cost profile (`measure_cost_profile`'s arguments but the model)."""

    context_length: int
    max_draft_tokens: int
    repeats: int
    warmup: int
    seed: int

    def measure(self, loaded: LoadedModel) -> dict[str, Any]:
        """The cost profile of `loaded` (`measure_cost_profile`)."""
        return measure_cost_profile(
            loaded, self.context_length, self.max_draft_tokens, self.repeats, self.warmup, self.seed
        )


class InterleavedProfiles:
    """Profiles of `loaded` measured between the rounds of a race (call it with the round index)."""

    def __init__(self, loaded: LoadedModel, settings: ProfilePlan):
        self.loaded, self.settings = loaded, settings
        self.profiles: list[dict[str, Any]] = []

    def __call__(self, round_index: int) -> None:
        if round_index != len(self.profiles):
            raise RuntimeError(
                f"profile for round {round_index} requested after {len(self.profiles)} profiles"
            )
        # The model is warm after the first profile; each round draws its own token ids and pass order.
        plan = dataclasses.replace(
            self.settings,
            warmup=self.settings.warmup if not self.profiles else 0,
            seed=self.settings.seed + round_index,
        )
        self.profiles.append(plan.measure(self.loaded))

    def for_round(self, round_index: int) -> dict[str, Any]:
        """The profile of round j: the pool of the profiles measured just before and just after it."""
        return pool_profiles(self.profiles[round_index], self.profiles[round_index + 1])

    def per_decode(self, num_rounds: int) -> list[dict[str, Any]]:
        return [self.for_round(index) for index in range(num_rounds)]

    def pooled(self) -> dict[str, Any]:
        """All profiles pooled (medians over every round), with each one's full step to show the drift."""
        return {
            **pool_profiles(*self.profiles),
            "interleaved_full_step_s": [profile["full_step_s"] for profile in self.profiles],
        }


def profile_summary(profile: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a profile (no raw samples)."""
    ks = range(1, profile["max_draft_tokens"] + 1)
    return {
        "full_step_s": profile["full_step_s"],
        "draft_step_s": profile["draft_step_s"],
        "draft_to_full": profile["draft_to_full"],
        "verify_to_full": profile["verify_to_full"],
        "break_even_acceptance": [break_even_acceptance(profile, k) for k in ks],
    }


def attention_profiles(
    loaded: LoadedModel,
    implementations: Sequence[str],
    settings: ProfilePlan,
    race: tuple[Sequence[DecodeRecord], Sequence[DecodeRecord]] | None = None,
    acceptance: float | None = None,
) -> dict[str, Any]:
    """The cost profile under each attention implementation in `implementations` that this machine has
    (the others are listed with the reason), the same weights switched in place. With the race's decodes
    (`race`: the method's and the baseline's records), also the speedup their acceptance trace would reach
    under each one; with an `acceptance` rate, the fixed-K speedup at that rate for K = 1..max_draft_tokens."""
    rows: dict[str, Any] = {}
    for name in implementations:
        available, reason = installed(name, loaded.device)
        row: dict[str, Any] = {"available": available, "reason": reason}
        if available:
            try:
                with attention_implementation(loaded.model, name):
                    profile = settings.measure(loaded)
            except Exception as error:  # reported per implementation, never replaced by another one
                row.update(available=False, reason=f"failed on this device: {type(error).__name__}: {error}")
            else:
                row.update(_priced(profile, settings.max_draft_tokens, race, acceptance))
        rows[name] = row
    return {
        "context_length": settings.context_length,
        "configured": loaded.model.config._attn_implementation,
        "rows": rows,
    }


def _priced(
    profile: dict[str, Any],
    max_draft_tokens: int,
    race: tuple[Sequence[DecodeRecord], Sequence[DecodeRecord]] | None,
    acceptance: float | None,
) -> dict[str, Any]:
    """A profile's headline numbers, and what the race's trace or an acceptance rate would give on it."""
    row = profile_summary(profile)
    if race and race[0]:
        row["predicted_speedup_of_race_trace"] = predicted_speedup(race[0], race[1], profile)
    if acceptance is not None:
        row["fixed_k_speedup_at_acceptance"] = [
            speedup_for_acceptance(profile, k, acceptance) for k in range(1, max_draft_tokens + 1)
        ]
    return row


def kv_cache_profiles(loaded: LoadedModel, kinds: Sequence[str], settings: ProfilePlan) -> dict[str, Any]:
    """The cost profile with each KV cache kind (`model.kv_cache`), same weights."""
    return {
        kind: profile_summary(settings.measure(dataclasses.replace(loaded, kv_cache=kind))) for kind in kinds
    }


def free_device_memory(device: torch.device) -> None:
    """Hand cached blocks back to the driver between large models (nothing to do off CUDA)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
