"""`python -m replicate.search model=<m> [search=<preset>] [overrides]`: run or resume a layer search in Hydra's
run directory (default `outputs/search/<model>/<preset>_<strategy>_<estimate>_<objective>`; rerun the same command
to resume)."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from replicate.cli import user_errors
from replicate.paths import CONF_DIR
from replicate.search.run import run_search


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="search_config")
@user_errors
def main(cfg: DictConfig) -> None:
    run_search(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
