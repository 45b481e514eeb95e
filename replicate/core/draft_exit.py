"""When to stop drafting: a fixed draft length, a static confidence threshold, or the paper's adaptive one.

Drafting stops after a drafted token whose draft confidence is below the threshold gamma (that token is
still verified), or after `max_draft_tokens` tokens. The confidence is the drafted token's probability
(`replicate.core.sampling.drafted_token_confidence`): greedy, the draft's top-1 probability; sampling, by
default under the raw temperature-1 softmax, as the authors' code compares it (`method.draft_confidence`).
A threshold of 0 never stops early: that is the fixed-length drafting of the paper's Table 3.

Adaptive draft-exit (paper Section 3.3, Table 6; `reference.yaml` `decoding`): after each verification,
with rate = accepted / drafted of that cycle,

    ema       = beta1 * ema + (1 - beta1) * rate
    gamma_new = gamma + eps  if ema < alpha  else  gamma - eps
    gamma     = beta2 * gamma + (1 - beta2) * gamma_new

except that, as in the authors' code, gamma is kept when the cycle drafted the full K and ema >= alpha.
`ema` restarts at 0 for every sample; gamma carries over from one sample to the next unless
`reset_per_sample` is set, as in the authors' evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


def _check_probability(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


@dataclass
class StaticThreshold:
    """A fixed threshold; 0.0 drafts the full `max_draft_tokens` every cycle."""

    threshold: float = 0.0

    def __post_init__(self):
        _check_probability("threshold", self.threshold)

    def start_sample(self) -> None:
        pass

    def update(self, num_drafted: int, num_accepted: int, max_draft_tokens: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        if state:
            raise ValueError(f"a static threshold carries no state, got {dict(state)}")


@dataclass
class AdaptiveThreshold:
    """The paper's adaptive draft-exit threshold."""

    initial_threshold: float
    target_acceptance: float
    threshold_step: float
    acceptance_ema: float
    threshold_ema: float
    reset_per_sample: bool
    threshold: float = field(init=False)
    ema: float = field(init=False, default=0.0)

    def __post_init__(self):
        for name in ("initial_threshold", "target_acceptance", "acceptance_ema", "threshold_ema"):
            _check_probability(name, getattr(self, name))
        if not (math.isfinite(self.threshold_step) and self.threshold_step >= 0):
            raise ValueError(f"threshold_step must be a finite number >= 0, got {self.threshold_step}")
        self.threshold = self.initial_threshold

    def start_sample(self) -> None:
        self.ema = 0.0
        if self.reset_per_sample:
            self.threshold = self.initial_threshold

    def update(self, num_drafted: int, num_accepted: int, max_draft_tokens: int) -> None:
        if num_drafted == 0:
            return
        rate = num_accepted / num_drafted
        self.ema = self.acceptance_ema * self.ema + (1 - self.acceptance_ema) * rate
        if num_drafted == max_draft_tokens and self.ema >= self.target_acceptance:
            new_threshold = self.threshold
        elif self.ema < self.target_acceptance:
            new_threshold = self.threshold + self.threshold_step
        else:
            new_threshold = self.threshold - self.threshold_step
        self.threshold = self.threshold_ema * self.threshold + (1 - self.threshold_ema) * new_threshold

    def state_dict(self) -> dict[str, float]:
        """What carries over to the next sample: gamma (the acceptance EMA restarts every sample)."""
        return {"threshold": self.threshold}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        if set(state) != {"threshold"}:
            raise ValueError(f"an adaptive threshold's state is {{'threshold': gamma}}, got {dict(state)}")
        self.threshold = _check_probability("threshold", state["threshold"])


DraftExit = StaticThreshold | AdaptiveThreshold
