"""The method registry: from a `conf/method/*.yaml` config to a typed method config, and from that to a decoder.

`METHODS` maps each method's name (the `name:` of its config file) to its config dataclass; nothing else in
the project compares method names. A method config is a frozen dataclass registered with `@register_method`;
it says what it is through class attributes (`MethodTraits`) and decodes one prompt in `decode(decoder,
prompt_ids, max_new_tokens, generator)`. A `Decoder` decodes one prompt at a time with one method on one
model and owns the state the method carries from prompt to prompt (the adaptive threshold), exposed as
`state_dict()` / `load_state_dict()` for a resumed run.

Adding a method takes one module and one config file: `replicate/methods/<name>.py` (its registered config
dataclass, with its checks and its `decode`; every module of the `replicate.methods` package is imported
when the registry is first used) and `conf/method/<name>.yaml` (every value of that dataclass).
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import re
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

METHODS: dict[str, type] = {}


class MethodTraits:
    """What every method config says about itself (class attributes, read before any model loads).

    drafts: it drafts and verifies (it gets an autoregressive baseline; False only for that baseline).
    adapts_threshold: its draft-exit threshold adapts (the paper's adaptive draft exit).
    needs_skip_set: it drafts with the model's configured skip set (refused on a model without one).
    supports_sampling: it decodes with temperature > 0 (else a sampled run is refused, naming the method).
    supports_static_cache: it runs on `model.kv_cache=static` (else refused, naming the method).
    cost_model_not_applicable: why no single cost profile prices its decodes (None: the cost model applies).
    transformers_generate: it runs inside transformers' `generate` (`replicate.hf`, `custom_generate`).
    """

    drafts: ClassVar[bool] = True
    adapts_threshold: ClassVar[bool] = False
    needs_skip_set: ClassVar[bool] = True
    supports_sampling: ClassVar[bool] = True
    supports_static_cache: ClassVar[bool] = True
    cost_model_not_applicable: ClassVar[str | None] = None
    transformers_generate: ClassVar[bool] = False

    def draft_exit(self) -> DraftExit | None:
        return None

    @property
    def max_verified_drafts(self) -> int:
        """The most drafts one verification pass holds (the range a cost profile must cover)."""
        return self.max_draft_tokens


MethodConfig = MethodTraits  # the type of every registered method config


def register_method(cls: type) -> type:
    """Class decorator: enter a method config dataclass in `METHODS` under its `name` literal."""
    annotation = cls.__annotations__["name"]  # 'Literal["<name>"]' (postponed annotations)
    match = re.fullmatch(r"""Literal\[["'](\w+)["']\]""", str(annotation))
    if match is None:
        raise TypeError(f"{cls.__name__}.name must be annotated Literal['<method name>'], got {annotation}")
    literal = match.group(1)
    if literal in METHODS and METHODS[literal] is not cls:
        raise ValueError(f"method {literal!r} is registered twice ({METHODS[literal]} and {cls})")
    METHODS[literal] = cls
    return cls


@register_method
@dataclass(frozen=True)
class AutoregressiveConfig(MethodTraits):
    """Plain autoregressive decoding with the project's own loop (the baseline of every speedup)."""

    name: Literal["autoregressive"]
    drafts: ClassVar[bool] = False
    needs_skip_set: ClassVar[bool] = False

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        return autoregressive_decode(
            decoder.loaded.model, prompt_ids, decoder.settings(max_new_tokens), generator
        )


def _self_speculative(
    config: SelfSpeculativeConfig | AdaptiveDraftExitConfig,
    decoder: Decoder,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    generator: torch.Generator,
) -> DecodeResult:
    speculation = Speculation(
        decoder.loaded.plan,
        config.max_draft_tokens,
        decoder.draft_exit,
        config.draft_confidence,
        decoder.check_cache,
    )
    settings = decoder.settings(max_new_tokens)
    return self_speculative_decode(decoder.loaded.model, prompt_ids, settings, speculation, generator)


@register_method
@dataclass(frozen=True)
class SelfSpeculativeConfig(MethodTraits):
    """Draft up to `max_draft_tokens` (K) per cycle; a `threshold` in (0, 1] also stops drafting after a
    token whose draft confidence is below it (static draft exit, Table 4); 0 drafts exactly K (Table 3).
    `draft_confidence`: what the threshold is compared with when sampling (`paper`: the drafted token's raw,
    temperature-1 softmax probability, as the authors' code; `processed`: its probability under the sampling
    distribution); greedy decoding is the same under both."""

    name: Literal["self_speculative"]
    max_draft_tokens: int
    threshold: float
    draft_confidence: Literal["paper", "processed"]
    transformers_generate: ClassVar[bool] = True

    def __post_init__(self):
        at_least("max_draft_tokens", self.max_draft_tokens, 1)
        within("threshold", self.threshold, 0.0, 1.0)

    def draft_exit(self) -> StaticThreshold:
        return StaticThreshold(self.threshold)

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        return _self_speculative(self, decoder, prompt_ids, max_new_tokens, generator)


@register_method
@dataclass(frozen=True)
class AdaptiveDraftExitConfig(MethodTraits):
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
    adapts_threshold: ClassVar[bool] = True
    transformers_generate: ClassVar[bool] = True

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

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        return _self_speculative(self, decoder, prompt_ids, max_new_tokens, generator)


AUTOREGRESSIVE = AutoregressiveConfig("autoregressive")
_PLUGINS_LOADED = False


def load_method_modules() -> dict[str, type]:
    """Import every module of `replicate.methods` (each registers its config); returns `METHODS`."""
    global _PLUGINS_LOADED
    if not _PLUGINS_LOADED:
        _PLUGINS_LOADED = True
        import replicate.methods as package

        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return METHODS


def method_config(cfg: Mapping[str, Any] | MethodConfig, path: str = "method") -> MethodConfig:
    """The typed config of the method `cfg["name"]` names; ConfigError for an unknown name or a bad value."""
    registry = load_method_modules()
    if isinstance(cfg, tuple(registry.values())):
        return cfg
    return build_registered(registry, "name", cfg, path, "method", " (conf/method/)")


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
        return self.config.max_verified_drafts if self.config.drafts else None

    def settings(self, max_new_tokens: int) -> DecodeSettings:
        """What every decoding loop takes besides the model, the prompt and the generator."""
        loaded = self.loaded
        return DecodeSettings(max_new_tokens, self.sampling, loaded.eos_token_ids, loaded.kv_cache)

    def __call__(
        self, prompt_ids: torch.Tensor, max_new_tokens: int, generator: torch.Generator
    ) -> DecodeResult:
        """Decode `prompt_ids` (1, seq) on the model's device with the method's own `decode`."""
        return self.config.decode(self, prompt_ids, max_new_tokens, generator)

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


def check_method_settings(config: MethodConfig, sampling: SamplingConfig, kv_cache: str) -> None:
    """Refuse, naming the method, what it does not support (sampling, the static cache); before loading."""
    if not sampling.greedy and not config.supports_sampling:
        raise ValueError(
            f"method {config.name} decodes greedily only, got sampling.temperature={sampling.temperature}; "
            "set sampling.temperature=0.0 or pick a method that samples"
        )
    if kv_cache == "static" and not config.supports_static_cache:
        raise ValueError(
            f"method {config.name} does not run on model.kv_cache=static; set model.kv_cache=dynamic"
        )


def build_decoder(
    cfg: Mapping[str, Any] | MethodConfig,
    loaded: LoadedModel,
    sampling: SamplingConfig,
    check_cache: bool = False,
) -> Decoder:
    """A decoder of the method `cfg` describes; refuses methods that draft with the model's skip set on a
    model with an empty one, and what the method does not support (`check_method_settings`)."""
    config = method_config(cfg)
    check_method_settings(config, sampling, loaded.kv_cache)
    if config.needs_skip_set and loaded.plan.num_skipped == 0:
        raise ValueError(
            f"model {loaded.name} has an empty skip set, so method {config.name} would draft with the full "
            "model and cannot be faster; run the layer search (python -m replicate.search) or set "
            "model.skip.attention=[...] model.skip.mlp=[...]"
        )
    return Decoder(config, loaded, sampling, check_cache)
