"""From a `conf/method/*.yaml` config to a decoder: a callable that decodes one prompt.

The group directory `conf/method/` is the registry; this module maps each method name to its loop.
A `Decoder` keeps the state a method carries across samples (the adaptive threshold).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from replicate.core.decoding import DecodeResult, autoregressive_decode, self_speculative_decode
from replicate.core.draft_exit import AdaptiveThreshold, DraftExit, StaticThreshold
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig

METHODS = ("autoregressive", "self_speculative", "adaptive_draft_exit")


def build_draft_exit(method_cfg: Mapping[str, Any]) -> DraftExit | None:
    """The draft-exit rule a method config describes (None for autoregressive decoding)."""
    name = method_cfg["name"]
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)} (conf/method/)")
    if name == "autoregressive":
        return None
    if method_cfg["max_draft_tokens"] < 1:
        raise ValueError(f"method.max_draft_tokens must be >= 1, got {method_cfg['max_draft_tokens']}")
    if name == "self_speculative":
        return StaticThreshold(method_cfg["threshold"])
    return AdaptiveThreshold(
        initial_threshold=method_cfg["initial_threshold"],
        target_acceptance=method_cfg["target_acceptance"],
        threshold_step=method_cfg["threshold_step"],
        acceptance_ema=method_cfg["acceptance_ema"],
        threshold_ema=method_cfg["threshold_ema"],
        reset_per_sample=method_cfg["reset_per_sample"],
    )


@dataclass
class Decoder:
    """Decodes prompts with one method on one model; `draft_exit` persists across calls."""

    name: str
    loaded: LoadedModel
    sampling: SamplingConfig
    max_draft_tokens: int | None
    draft_exit: DraftExit | None
    check_cache: bool = False

    def __call__(
        self, prompt_ids: torch.Tensor, max_new_tokens: int, generator: torch.Generator
    ) -> DecodeResult:
        common = dict(
            model=self.loaded.model,
            prompt_ids=prompt_ids,
            max_new_tokens=max_new_tokens,
            sampling=self.sampling,
            eos_token_ids=self.loaded.eos_token_ids,
            generator=generator,
        )
        if self.draft_exit is None:
            return autoregressive_decode(**common)
        return self_speculative_decode(
            **common,
            plan=self.loaded.plan,
            max_draft_tokens=self.max_draft_tokens,
            draft_exit=self.draft_exit,
            check_cache=self.check_cache,
        )

    def detached_copy(self) -> Decoder:
        """A copy whose carried state is independent (for warm-up runs that must not move the threshold)."""
        return Decoder(
            self.name,
            self.loaded,
            self.sampling,
            self.max_draft_tokens,
            copy.deepcopy(self.draft_exit),
            self.check_cache,
        )


def build_decoder(
    method_cfg: Mapping[str, Any], loaded: LoadedModel, sampling: SamplingConfig, check_cache: bool = False
) -> Decoder:
    draft_exit = build_draft_exit(method_cfg)
    if draft_exit is not None and loaded.plan.num_skipped == 0:
        raise ValueError(
            f"model {loaded.name} has an empty skip set, so method {method_cfg['name']} would draft with the full "
            "model and cannot be faster; run the layer search (python -m replicate.search) or set "
            "model.skip.attention=[...] model.skip.mlp=[...]"
        )
    max_draft_tokens = None if draft_exit is None else method_cfg["max_draft_tokens"]
    return Decoder(method_cfg["name"], loaded, sampling, max_draft_tokens, draft_exit, check_cache)
