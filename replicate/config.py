"""Composing the Hydra config outside a Hydra app (Python API, demo, tests): same files, same overrides."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from replicate.paths import CONF_DIR


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The root config with command-line style overrides, e.g. ["model=tiny_llama", "n_samples=2"].
    An unknown group option (model=foo) raises Hydra's error, which lists the available options."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def options(group: str) -> list[str]:
    """The registered names of a config group (the group directory is the registry)."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
