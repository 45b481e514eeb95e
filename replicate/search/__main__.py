"""`replicate search model=<m> [search=<preset>] [overrides]` (also `python -m replicate.search ...`): run or
resume a layer search in Hydra's run directory (default
`outputs/search/<model>/<preset>_<strategy>_<estimate>_<objective>`; rerun the same command to resume). The
config is composed and checked before Hydra starts (`replicate.overrides.check_before_work`, through `run_checked`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from replicate.cli import user_errors
from replicate.paths import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="search_config")
@user_errors
def _hydra_main(cfg: DictConfig) -> None:
    from replicate.search.run import run_search

    run_search(cfg, Path(HydraConfig.get().runtime.output_dir))


def check_job(cfg: DictConfig) -> None:
    from replicate.search.config import search_run_config

    search_run_config(cfg)


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    from replicate.overrides import run_checked

    return run_checked(list(sys.argv[1:] if argv is None else argv), "search_config", check_job, _hydra_main)


if __name__ == "__main__":
    sys.exit(main())
