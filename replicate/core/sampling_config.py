"""The typed sampling settings (`sampling` in conf/config.yaml): temperature, top-p, top-k. Apart from
`replicate.core.sampling`, whose math needs torch, so that configs are typed without loading it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from replicate.schema import FieldError, at_least


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 means greedy; top_p 1.0 and top_k 0 switch those filters off."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FieldError(name, value, "must be a finite number")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int):
            raise FieldError("top_k", self.top_k, "must be an integer (0 = off)")
        at_least("temperature", self.temperature, 0.0)
        if not 0.0 < self.top_p <= 1.0:
            raise FieldError("top_p", self.top_p, "must be in (0, 1] (1.0 = off)")
        at_least("top_k", self.top_k, 0)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def ignored(self) -> list[str]:
        """The filters set here that cannot act: greedy decoding takes the argmax, so top_p and top_k
        do nothing at temperature 0 (e.g. ["top_p=0.5"])."""
        if not self.greedy:
            return []
        return [
            f"{name}={getattr(self, name)}"
            for name, off in (("top_p", 1.0), ("top_k", 0))
            if getattr(self, name) != off
        ]
