"""`python -m replicate model=<m> task=<t> method=<x> n_samples=<N> max_new_tokens=<N> seed=<S>` (Hydra;
`-m` for multirun sweeps). The run directory is Hydra's output directory."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from replicate.paths import CONF_DIR
from replicate.run.runner import run


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
