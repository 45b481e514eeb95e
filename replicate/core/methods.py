"""The method registry: from a `conf/method/*.yaml` config to a typed method config, and from that to a decoder.

`METHODS` maps each method's name (the `name:` of its config file) to its config dataclass; nothing else in
the project compares method names. A method config knows whether it drafts (`drafts`), whether its
draft-exit threshold adapts (`adapts_threshold`), and builds its draft-exit rule. A `Decoder` decodes one
prompt at a time with one method on one model and owns the state the method carries from prompt to prompt
(the adaptive threshold), exposed as `state_dict()` / `load_state_dict()` for a resumed run.

To add a method: a config dataclass here (with its checks), a `conf/method/<name>.yaml`, and its loop in
`replicate.core.decoding` if it needs one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import AdaptiveThreshold, DraftExit, StaticThreshold
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.records import DecodeResult
from replicate.schema import at_least, build_registered, within


@dataclass(frozen=True)
class AutoregressiveConfig:
    """Plain autoregressive decoding with the project's own loop (the baseline of every speedup)."""

    name: Literal["autoregressive"]
    drafts: ClassVar[bool] = False
    adapts_threshold: ClassVar[bool] = False

    def draft_exit(self) -> None:
        return None


@dataclass(frozen=True)
class SelfSpeculativeConfig:
    """Draft up to `max_draft_tokens` (K) per cycle; a `threshold` in (0, 1] also stops drafting after a
    token whose draft confidence is below it (static draft exit, Table 4); 0 drafts exactly K (Table 3).
    `draft_confidence`: what the threshold is compared with when sampling (`paper`: the drafted token's raw,
    temperature-1 softmax probability, as the authors' code; `processed`: its probability under the sampling
    distribution); greedy decoding is the same under both."""

    name: Literal["self_speculative"]
    max_draft_tokens: int
    threshold: float
    draft_confidence: Literal["paper", "processed"]
    drafts: ClassVar[bool] = True
    adapts_threshold: ClassVar[bool] = False

    def __post_init__(self):
        at_least("max_draft_tokens", self.max_draft_tokens, 1)
        within("threshold", self.threshold, 0.0, 1.0)

    def draft_exit(self) -> StaticThreshold:
        return StaticThreshold(self.threshold)


@dataclass(frozen=True)
class AdaptiveDraftExitConfig:
    """The paper's method: K = `max_draft_tokens`, gamma_0 = `initial_threshold`, eps = `threshold_step`,
    beta1 = `acceptance_ema`, beta2 = `threshold_ema`, alpha = `target_acceptance` (Section 3.3, Table 6);
    `draft_confidence` as for `SelfSpeculativeConfig`."""

    name: Literal["adaptive_draft_exit"]
    max_draft_tokens: int
    initial_threshold: float
    threshold_step: float
    acceptance_ema: float
    threshold_ema: float
    target_acceptance: float
    reset_per_sample: bool
    draft_confidence: Literal["paper", "processed"]
    drafts: ClassVar[bool] = True
    adapts_threshold: ClassVar[bool] = True

    def __post_init__(self):
        at_least("max_draft_tokens", self.max_draft_tokens, 1)
        for name in ("initial_threshold", "target_acceptance", "acceptance_ema", "threshold_ema"):
            within(name, getattr(self, name), 0.0, 1.0)
        within("threshold_step", self.threshold_step, 0.0, 1.0)

    def draft_exit(self) -> AdaptiveThreshold:
        return AdaptiveThreshold(
            initial_threshold=self.initial_threshold,
            target_acceptance=self.target_acceptance,
            threshold_step=self.threshold_step,
            acceptance_ema=self.acceptance_ema,
            threshold_ema=self.threshold_ema,
            reset_per_sample=self.reset_per_sample,
        )


MethodConfig = AutoregressiveConfig | SelfSpeculativeConfig | AdaptiveDraftExitConfig
METHODS: dict[str, type] = {
    "autoregressive": AutoregressiveConfig,
    "self_speculative": SelfSpeculativeConfig,
    "adaptive_draft_exit": AdaptiveDraftExitConfig,
}
AUTOREGRESSIVE = AutoregressiveConfig("autoregressive")


def method_config(cfg: Mapping[str, Any] | MethodConfig, path: str = "method") -> MethodConfig:
    """The typed config of the method `cfg["name"]` names; ConfigError for an unknown name or a bad value."""
    if isinstance(cfg, tuple(METHODS.values())):
        return cfg
    return build_registered(METHODS, "name", cfg, path, "method", " (conf/method/)")


def build_draft_exit(cfg: Mapping[str, Any] | MethodConfig) -> DraftExit | None:
    """A fresh draft-exit rule of a method config (None for a method that does not draft)."""
    return method_config(cfg).draft_exit()


class Decoder:
    """Decodes prompts with one method on one model; `draft_exit` (the carried state) persists across calls."""

    def __init__(
        self, config: MethodConfig, loaded: LoadedModel, sampling: SamplingConfig, check_cache: bool = False
    ):
        self.config, self.loaded, self.sampling, self.check_cache = config, loaded, sampling, check_cache
        self.draft_exit = config.draft_exit()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def max_draft_tokens(self) -> int | None:
        return self.config.max_draft_tokens if self.config.drafts else None

    def __call__(
        self, prompt_ids: torch.Tensor, max_new_tokens: int, generator: torch.Generator
    ) -> DecodeResult:
        """Decode `prompt_ids` (1, seq) on the model's device; see `replicate.core.decoding`."""
        loaded = self.loaded
        settings = DecodeSettings(max_new_tokens, self.sampling, loaded.eos_token_ids, loaded.kv_cache)
        if not self.config.drafts:
            return autoregressive_decode(loaded.model, prompt_ids, settings, generator)
        speculation = Speculation(
            loaded.plan,
            self.config.max_draft_tokens,
            self.draft_exit,
            self.config.draft_confidence,
            self.check_cache,
        )
        return self_speculative_decode(loaded.model, prompt_ids, settings, speculation, generator)

    def state_dict(self) -> dict[str, Any]:
        """The state carried to the next prompt (JSON-ready; empty for methods that carry none)."""
        return {} if self.draft_exit is None else self.draft_exit.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state_dict()` of an earlier decoder of the same method (a resumed run)."""
        if self.draft_exit is None:
            if state:
                raise ValueError(f"method {self.name} carries no state, got {dict(state)}")
            return
        self.draft_exit.load_state_dict(state)

    def detached_copy(self) -> Decoder:
        """A copy whose carried state is independent (for warm-up runs that must not move the threshold)."""
        twin = copy.copy(self)
        twin.draft_exit = copy.deepcopy(self.draft_exit)
        return twin


def build_decoder(
    cfg: Mapping[str, Any] | MethodConfig,
    loaded: LoadedModel,
    sampling: SamplingConfig,
    check_cache: bool = False,
) -> Decoder:
    """A decoder of the method `cfg` describes; refuses drafting methods on a model with an empty skip set."""
    config = method_config(cfg)
    if config.drafts and loaded.plan.num_skipped == 0:
        raise ValueError(
            f"model {loaded.name} has an empty skip set, so method {config.name} would draft with the full "
            "model and cannot be faster; run the layer search (python -m replicate.search) or set "
            "model.skip.attention=[...] model.skip.mlp=[...]"
        )
    return Decoder(config, loaded, sampling, check_cache)
