"""What `self_speculative_generate` needs beyond transformers' own arguments: the skip set, the method and its
draft-exit rule, and the sampling law, each from keyword arguments, the project's configs, or the
`GenerationConfig` and logits processors transformers prepared.

The skip set comes, in this order, from `skip_attention` / `skip_mlp`, from `model_name` (a `conf/model/`
config), or from the model itself when it is one this project configures (a hub checkpoint whose
`_name_or_path` is a config's `repo_id`, or SmolLM2 converted from its GGUF under the project's cache);
anything else is refused with a message saying what to pass. There is no default skip set.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from replicate.core.draft_exit import DraftExit
from replicate.core.methods import MethodConfig, load_method_modules, method_config
from replicate.core.model_config import GgufModelConfig, HubModelConfig, ModelConfig, model_config
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.records import DecodeResult
from replicate.schema import ConfigError


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    """The keyword arguments of `generate` that `self_speculative_generate` reads (its docstring says what
    each does). The method settings (`max_draft_tokens` ... `reset_per_sample`) default to None: the value of
    `conf/method/<method>.yaml`."""

    method: str = "adaptive_draft_exit"
    model_name: str | None = None
    skip_attention: Sequence[int] | None = None
    skip_mlp: Sequence[int] | None = None
    max_draft_tokens: int | None = None
    threshold: float | None = None
    initial_threshold: float | None = None
    threshold_step: float | None = None
    acceptance_ema: float | None = None
    threshold_ema: float | None = None
    target_acceptance: float | None = None
    reset_per_sample: bool | None = None
    draft_exit: DraftExit | None = None
    decode_results: list[DecodeResult] | None = None

    def method_overrides(self) -> dict[str, Any]:
        """The method settings given (None: not given), by name."""
        first, last = _FIELDS.index("max_draft_tokens"), _FIELDS.index("reset_per_sample")
        return {name: getattr(self, name) for name in _FIELDS[first : last + 1]}


_FIELDS = tuple(field.name for field in dataclasses.fields(GenerateOptions))


def with_option_parameters(function: Any) -> Any:
    """`function(..., **kwargs)` with a signature that also names every `GenerateOptions` field as a keyword
    parameter. transformers hands a callable `custom_generate` the `generate` arguments its signature names
    and treats any other as a model input, so the options must appear there."""
    signature = inspect.signature(function)
    *leading, model_kwargs = signature.parameters.values()
    options = [
        inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default)
        for field in dataclasses.fields(GenerateOptions)
    ]
    function.__signature__ = signature.replace(parameters=[*leading, *options, model_kwargs])
    return function


def split_options(kwargs: dict[str, Any]) -> tuple[GenerateOptions, dict[str, Any]]:
    """`generate`'s keyword arguments as (the options this project reads, the model inputs)."""
    options = GenerateOptions(**{name: value for name, value in kwargs.items() if name in _FIELDS})
    return options, {name: value for name, value in kwargs.items() if name not in _FIELDS}


@functools.cache
def _configured_model(name: str) -> ModelConfig:
    from replicate.config import compose_config, options
    from replicate.schema import plain

    if name not in options("model"):
        raise ConfigError(
            f"model_name={name!r} is not a model this project configures; known: {', '.join(options('model'))} "
            "(conf/model/); for another model pass skip_attention=[...] and skip_mlp=[...] instead"
        )
    return model_config(plain(compose_config([f"model={name}"]).model))


def _detected_model(model: nn.Module) -> ModelConfig | None:
    """The conf/model config `model` was loaded from, when its `_name_or_path` says so (else None)."""
    from replicate.config import options
    from replicate.core.models import cache_root

    name_or_path = str(getattr(model.config, "_name_or_path", "") or "")
    if not name_or_path:
        return None
    path = Path(name_or_path)
    for name in options("model"):
        config = _configured_model(name)
        if isinstance(config, HubModelConfig) and config.repo_id == name_or_path:
            return config
        converted = cache_root() / "models"
        if (
            isinstance(config, GgufModelConfig)
            and path.parent == converted
            and path.name.startswith(f"{name}-")
        ):
            return config
    return None


def skip_plan(
    model: nn.Module,
    model_name: str | None,
    skip_attention: Sequence[int] | None,
    skip_mlp: Sequence[int] | None,
) -> SkipPlan:
    """The sub-blocks the draft skips, checked against the model's depth."""
    num_layers = model.config.num_hidden_layers
    explicit = skip_attention is not None or skip_mlp is not None
    if explicit and model_name is not None:
        raise ConfigError(
            f"got model_name={model_name!r} and also skip_attention/skip_mlp; pass one: model_name uses that "
            "config's skip set, skip_attention/skip_mlp give it directly"
        )
    if explicit:
        for name, ids in (("skip_attention", skip_attention), ("skip_mlp", skip_mlp)):
            if ids is not None and (
                isinstance(ids, (str, bytes))
                or not isinstance(ids, Sequence)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise ConfigError(f"{name} must be a list of decoder layer ids (integers), got {ids!r}")
        plan = SkipPlan.from_lists(skip_attention or (), skip_mlp or ())
        try:
            plan.validate(num_layers)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if plan.skips_everything(num_layers):  # still lossless (the lossless gate tests it), never faster
            warnings.warn(
                f"skip_attention/skip_mlp {plan.skips_everything_message(num_layers)}", stacklevel=4
            )
        return plan
    config = _configured_model(model_name) if model_name is not None else _detected_model(model)
    if config is None:
        name_or_path = getattr(model.config, "_name_or_path", "") or type(model).__name__
        raise ConfigError(
            f"no skip set for model {name_or_path!r}: it is not a model this project configures. Pass "
            "skip_attention=[...] and skip_mlp=[...] (0-indexed decoder layers whose sub-blocks the draft "
            "skips; `python -m replicate.search` finds a set), or model_name=<a conf/model/ name>"
        )
    if config.num_hidden_layers != num_layers:
        raise ConfigError(
            f"model_name={config.name!r} describes a {config.num_hidden_layers}-layer model but this model has "
            f"{num_layers} layers; pass the right model_name, or skip_attention/skip_mlp for this model"
        )
    return config.skip.plan.validate(num_layers)


@functools.cache
def _configured_method(method: str) -> tuple[tuple[str, Any], ...]:
    from replicate.config import compose_config
    from replicate.schema import plain

    return tuple(plain(compose_config([f"method={method}"]).method).items())


def _method_defaults(method: str) -> dict[str, Any]:
    """`conf/method/<method>.yaml` (composed once per process: composing takes a fraction of a second)."""
    return dict(_configured_method(method))


def method_settings(
    method: str, draft_exit: DraftExit | None, overrides: Mapping[str, Any]
) -> tuple[MethodConfig, DraftExit]:
    """The method config (`conf/method/<method>.yaml` with `overrides`, validated by the registry) and its
    draft-exit rule: `draft_exit` when given (its state carries across calls), else a fresh one."""
    usable = [name for name, cls in load_method_modules().items() if cls.transformers_generate]
    if method not in usable:
        raise ConfigError(
            f"method={method!r} is not a self-speculative method; use one of {', '.join(usable)} "
            "(for plain autoregressive decoding call generate without custom_generate)"
        )
    given = {key: value for key, value in overrides.items() if value is not None}
    config = method_config({**_method_defaults(method), **given})
    if draft_exit is None:
        return config, config.draft_exit()
    rule_settings = sorted(key for key in given if key != "max_draft_tokens")
    if rule_settings:
        raise ConfigError(
            f"got draft_exit=... and also {', '.join(rule_settings)}; the draft_exit object already holds its "
            "threshold settings: pass either the object or the settings"
        )
    return config, draft_exit


def sampling_config(generation_config: Any, logits_processor: Sequence[Any]) -> SamplingConfig:
    """Greedy when `do_sample` is false; otherwise temperature, top-k and top-p read from the warpers
    transformers prepared (in its order: temperature, top-k, top-p). Any other logits processor changes the
    distribution in a way the draft/verify loop does not reproduce, so it is refused by name."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    order = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
    allowed = order if generation_config.do_sample else ()
    unsupported = [type(p).__name__ for p in logits_processor if type(p) not in allowed]
    if unsupported:
        raise ConfigError(
            f"self-speculative generate does not support the logits processors {', '.join(unsupported)} "
            "(from settings such as repetition_penalty, min_new_tokens, bad_words_ids, min_p or a "
            "logits_processor argument): drafts are verified against the model's own distribution. Drop "
            "those settings, or decode with plain generate"
        )
    kinds = [type(p) for p in logits_processor]
    if kinds != sorted(kinds, key=order.index) or len(set(kinds)) != len(kinds):
        raise RuntimeError(
            f"logits warpers in an unexpected order or repeated: {[k.__name__ for k in kinds]}"
        )
    if not generation_config.do_sample:
        return SamplingConfig()
    values: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
    for processor in logits_processor:
        if isinstance(processor, TemperatureLogitsWarper):
            values["temperature"] = float(processor.temperature)
        elif isinstance(processor, TopKLogitsWarper):
            values["top_k"] = int(processor.top_k)
        else:
            values["top_p"] = float(processor.top_p)
        if getattr(processor, "min_tokens_to_keep", 1) != 1:
            raise ConfigError(f"{type(processor).__name__} with min_tokens_to_keep != 1 is not supported")
    return SamplingConfig(**values)
