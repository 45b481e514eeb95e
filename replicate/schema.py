"""Typed, validated configs: a config mapping becomes a frozen dataclass, or a `ConfigError` that names the key,
the bad value and what is allowed.

The dataclasses of each group live beside the code that uses them (`replicate.core.models.ModelConfig`, the
method registry in `replicate.core.methods`, `tasks.config`, `replicate.run.settings.RunSettings`, ...); this
module holds the one converter they share. Hydra composes the YAML files as before (so `-m` sweeps, experiment
files and interpolations keep working); the composed, resolved mapping then goes through `build(cls, mapping)`
once, before any model loads. Why not Hydra's ConfigStore schemas: the paper-table experiments swap a whole
`method` node for another method's shape through an interpolation (`method: ${experiment.rows.<row>}`), which a
per-group structured schema cannot type; converting after composition types every node whatever produced it,
and lets every value be range-checked (NaN, inf, negative counts) with a message Hydra cannot give.

Rules: unknown keys are errors (with the closest known key suggested), so are missing ones; `int` accepts only
integers (2.5 and True are refused), `float` only finite numbers, `bool` only booleans; `X | None` accepts null.
Range checks live in each dataclass's `__post_init__`, raising `FieldError(field, value, allowed)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from replicate.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config value that cannot be used; the message names the key, the value and what is allowed."""


class FieldError(ValueError):
    """Raised by a dataclass's `__post_init__`: `field` of the dataclass holds `value`, which is not `allowed`."""

    def __init__(self, field: str, value: Any, allowed: str):
        super().__init__(f"{field}={value!r}: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert_union(options: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{path} is null but must be set")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(option, value, path)
        except ConfigError as error:
            errors.append(str(error))
    raise ConfigError(
        errors[0] if len(errors) == 1 else f"{path}={value!r} fits none of: {'; '.join(errors)}"
    )


def _convert_container(annotation: Any, origin: Any, value: Any, path: str) -> Any:
    arguments = typing.get_args(annotation)
    if (origin or annotation) is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {_describe(value)}")
        value_type = arguments[1] if arguments else Any
        return {key: _convert(value_type, item, _join(path, str(key))) for key, item in value.items()}
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"{path} must be a list, got {_describe(value)}")
    item_type = arguments[0] if arguments else Any
    items = [_convert(item_type, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return tuple(items) if (origin or annotation) is tuple else items


def _convert_scalar(annotation: Any, value: Any, path: str) -> Any:
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {_describe(value)}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {_describe(value)}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path} must be a finite number, got {value!r}")
        return float(value)
    elif annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {_describe(value)}")
    else:
        raise TypeError(f"{path}: the schema uses a type the converter does not know: {annotation!r}")
    return value


def _convert(annotation: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(annotation), value, path)
    if value is None:
        raise ConfigError(f"{path} is null but must be set")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ConfigError(f"{path}={value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, path)
    if origin in (tuple, list, dict) or annotation in (tuple, list, dict):
        return _convert_container(annotation, origin, value, path)
    return _convert_scalar(annotation, value, path)


def plain(cfg: Any) -> Any:
    """A composed config (OmegaConf DictConfig / ListConfig) as resolved plain data; anything else unchanged."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    if not OmegaConf.is_config(cfg):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as error:
        where = f" (in {error.full_key})" if getattr(error, "full_key", None) else ""
        raise ConfigError(f"{error.msg}{where}") from None


def build(cls: type[T], mapping: Any, path: str = "") -> T:
    """`cls` (a dataclass) from a mapping, every field converted and checked; raises ConfigError."""
    if dataclasses.is_dataclass(mapping) and isinstance(mapping, cls):
        return mapping
    mapping = plain(mapping)
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{path or cls.__name__} must be a mapping, got {_describe(mapping)}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = [key for key in mapping if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f"; did you mean {_join(path, close[0])}?" if close else ""
        raise ConfigError(f"unknown key {_join(path, str(key))} (known: {', '.join(sorted(fields))}){hint}")
    values = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name not in mapping:
            if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{key} is missing; add it to the config (it has no default on purpose)")
        values[name] = _convert(hints[name], mapping[name], key)
    try:
        return cls(**values)
    except FieldError as error:
        raise ConfigError(
            f"{_join(path, error.field)}={error.value!r} is not allowed: {error.allowed}"
        ) from None


def build_registered(
    registry: Mapping[str, type], key: str, cfg: Any, path: str, kind: str, where: str = ""
) -> Any:
    """The dataclass `registry[cfg[key]]` built from `cfg` (e.g. a method config by its `name`); an unknown
    name is a ConfigError listing the known ones (`where`: where they are registered, for the message)."""
    cfg = plain(cfg)
    name = cfg.get(key) if isinstance(cfg, Mapping) else None
    if name not in registry:
        raise ConfigError(f"{path}.{key}={name!r} is not a known {kind}; known: {', '.join(registry)}{where}")
    return build(registry[name], cfg, path)


def to_dict(instance: Any) -> Any:
    """A config dataclass back to plain JSON-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(instance):
        return {field.name: to_dict(getattr(instance, field.name)) for field in dataclasses.fields(instance)}
    if isinstance(instance, (list, tuple)):
        return [to_dict(item) for item in instance]
    if isinstance(instance, Mapping):
        return {key: to_dict(value) for key, value in instance.items()}
    return instance


# ---- checks for __post_init__ ----


def at_least(field: str, value: float | None, minimum: float) -> None:
    if value is not None and value < minimum:
        raise FieldError(field, value, f"must be >= {minimum}")


def at_least_each(config: Any, **minimums: float) -> None:
    """`at_least` for each named field of a config (in the given order), e.g. in `__post_init__`:
    `at_least_each(self, repeats=1, warmup=0)`."""
    for field, minimum in minimums.items():
        at_least(field, getattr(config, field), minimum)


def within(field: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise FieldError(field, value, f"must be in [{low}, {high}]")


def one_of(field: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise FieldError(field, value, f"must be one of {', '.join(map(repr, allowed))}")


class MappingAccess:
    """Read-only mapping-style access to a config dataclass (`cfg["key"]`, `cfg.get("key")`, `dict(cfg)`,
    `"key" in cfg`), so code written against the composed YAML reads the typed config unchanged."""

    def keys(self) -> list[str]:
        return [field.name for field in dataclasses.fields(self)]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default
