"""Command-line overrides (`key=value`, Hydra's grammar) before any work: composing a root config of `conf/`
with them, a misspelt key answered with "did you mean", a sweep expanded into its jobs, and every job's
config checked before the first one runs (`check_before_work`). Light on purpose (Hydra and OmegaConf only,
no torch), so `replicate <command> --help` stays fast.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict

from replicate.paths import CONF_DIR
from replicate.schema import ConfigError

# Hydra flags that only print something (help, the config, shell completion): no job runs, nothing to check.
INFORMATION_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
)
MULTIRUN_FLAGS = ("-m", "--multirun")


@contextmanager
def _own_hydra() -> Iterator[None]:
    """Hydra initialized on `conf/`, with any running app's Hydra set aside and restored afterwards."""
    global_hydra = GlobalHydra.instance()
    running = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        global_hydra.clear()
        if running is not None:
            global_hydra.initialize(running)


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"cannot read the override: {error}") from None


def _is_group(key: str) -> bool:
    return key.startswith("hydra/") or (CONF_DIR / key).is_dir()


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    keys = [prefix] if prefix else []
    for key, value in node.items():
        keys += _leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))
    return keys


def config_keys(name: str = "config", overrides: Sequence[str] = ()) -> list[str]:
    """Every key (dotted path, sections too) of `conf/<name>.yaml` with these group choices."""
    groups = [
        o.input_line for o in _parse(overrides) if _is_group(o.key_or_group) and not o.is_sweep_override()
    ]
    with _own_hydra():
        cfg = compose(config_name=name, overrides=groups)
    return _leaf_keys(OmegaConf.to_container(cfg, resolve=False))


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """'; did you mean x?' for the known key closest to `key` ('' when none is close)."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if not close:  # a misspelt last part: compare it with the last parts of the known keys
        last = {k.rsplit(".", 1)[-1]: k for k in known if k.rsplit(".", 1)[0] == key.rpartition(".")[0]}
        close = [last[c] for c in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(last), n=1)]
    return f"; did you mean {close[0]}?" if close else ""


# The command whose --help lists the keys of each root config.
HELP_OF = {"config": "replicate run", "bench": "replicate bench", "search_config": "replicate search"}


def _unknown_key_error(name: str, overrides: Sequence[str]) -> ConfigError | None:
    """A ConfigError naming the first override whose key the config does not have (without `+`), or None."""
    try:
        known = set(config_keys(name, overrides))
    except HydraException:
        return None
    for override in _parse(overrides):
        key = override.key_or_group
        if override.is_add() or override.is_force_add() or _is_group(key) or key.startswith("hydra."):
            continue
        if key not in known:
            return ConfigError(
                f"unknown key {key} (in {override.input_line}){did_you_mean(key, sorted(known))}"
                + (
                    f" (`{HELP_OF[name]} --help` lists every key with its default)"
                    if name in HELP_OF
                    else f" (conf/{name}.yaml)"
                )
            )
    return None


def compose_config(
    overrides: Sequence[str] = (),
    name: str = "config",
    with_hydra: bool = False,
) -> DictConfig:
    """The root config `conf/<name>.yaml` with overrides, e.g. ["model=tiny_llama", "n_samples=2"]. Safe inside
    a running Hydra app (its Hydra state is set aside and restored). A bad override is a ConfigError: a key
    the config lacks, given without `+`, names the closest known key (with `+`, the typed config does the
    same: `replicate.schema.build`); an unknown group option (model=foo) names the closest and lists all."""
    overrides = list(overrides)
    try:
        with _own_hydra():
            return compose(config_name=name, overrides=overrides, return_hydra_config=with_hydra)
    except MissingConfigException as error:
        group, _, option = str(error.missing_cfg_file or "").rpartition("/")
        if not error.options or not group:
            raise ConfigError(str(error).split("\n")[0]) from None
        known = sorted(error.options)
        raise ConfigError(
            f"unknown {group} {option!r}{did_you_mean(option, known)} (options: {', '.join(known)}; conf/{group}/)"
        ) from None
    except HydraException as error:
        if "Could not override" in str(error) or "Key '" in str(error):
            unknown = _unknown_key_error(name, overrides)
            if unknown is not None:
                raise unknown from None
        raise ConfigError(str(error).replace("\n", " ")) from None


def split_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(overrides, flags) of a Hydra app's command line: `key=value`, `+key=value`, `~key` are overrides."""
    overrides, flags = [], []
    for argument in argv:
        is_override = not argument.startswith("-") and ("=" in argument or argument.startswith("~"))
        (overrides if is_override else flags).append(argument)
    return overrides, flags


def sweep_jobs(overrides: Sequence[str], name: str = "config") -> list[list[str]]:
    """The override list of every job a multirun (`-m`) of these overrides launches, expanded as Hydra's basic
    sweeper does (a command-line override of a key swept in the config's `hydra.sweeper.params` replaces it)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = _parse(overrides)
    fixed = [override.input_line for override in parsed if not override.is_sweep_override()]
    params = compose_config(fixed, name, with_hydra=True).hydra.sweeper.params or {}
    expanded = _parse([f"{key}={value}" for key, value in params.items()] + list(overrides))
    return BasicSweeper.split_arguments(expanded, max_batch_size=None)[0]


def job_config(overrides: Sequence[str], name: str = "config") -> DictConfig:
    """The composed config of one job, without Hydra's own node."""
    cfg = compose_config(overrides, name, with_hydra=True)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def check_before_work(argv: Sequence[str], name: str, check: Callable[[DictConfig], Any]) -> list[DictConfig]:
    """Before a Hydra app starts: compose every job's config (one, or each job of a `-m` sweep) and pass it to
    `check` (which raises ConfigError), so a bad value fails before the first job runs. Returns the configs
    ([] when a flag only prints something)."""
    overrides, flags = split_arguments(argv)
    if any(flag in INFORMATION_FLAGS for flag in flags) or any(
        f.startswith(("-cn", "--config-name")) for f in flags
    ):
        return []
    multirun = any(flag in MULTIRUN_FLAGS for flag in flags)
    jobs = sweep_jobs(overrides, name) if multirun else [overrides]
    configs = []
    for number, job in enumerate(jobs):
        try:
            cfg = job_config(job, name)
            check(cfg)
        except ConfigError as error:
            where = f"job {number} of {len(jobs)} ({' '.join(job)}): " if multirun and len(jobs) > 1 else ""
            raise ConfigError(f"{where}{error}" + ("; no job was started" if multirun else "")) from None
        configs.append(cfg)
    return configs


def run_checked(
    argv: Sequence[str], name: str, check: Callable[[DictConfig], Any], app: Callable[[], Any]
) -> int:
    """Run the Hydra app `app` (a `@hydra.main` of the root config `name`) on `argv` after
    `check_before_work` has checked every job's config; Hydra reads its arguments from sys.argv."""
    check_before_work(argv, name, check)
    sys.argv = [sys.argv[0], *argv]
    app()
    return 0
