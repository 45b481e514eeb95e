"""`replicate run [key=value ...] [-m]` (also `python -m replicate.run ...`): one run, or with `-m` a Hydra
multirun sweep, of `conf/config.yaml` (model=<m> task=<t> method=<x> n_samples=<N> max_new_tokens=<N>
seed=<S> ...). The run directory is Hydra's output directory. Every job's config is composed and checked
before the first job starts (`replicate.overrides.check_before_work`, through `run_checked`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from replicate.cli import user_errors
from replicate.paths import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
@user_errors
def _hydra_main(cfg: DictConfig) -> None:
    from replicate.tracking import run_and_track

    run_and_track(cfg, Path(HydraConfig.get().runtime.output_dir))


def check_job(cfg: DictConfig) -> None:
    """A job's config, typed and checked (raises ConfigError); nothing loads."""
    from replicate.config import run_config

    run_config(cfg)


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    from replicate.overrides import run_checked

    return run_checked(list(sys.argv[1:] if argv is None else argv), "config", check_job, _hydra_main)


if __name__ == "__main__":
    sys.exit(main())
