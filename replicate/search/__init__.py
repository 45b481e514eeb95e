"""The layer search of self-speculative decoding: which attention and MLP sub-blocks the draft skips.

    python -m replicate.search model=smollm2_135m search=smollm2_cpu      # see docs/search.md
    python -m replicate.search model=codellama_13b search.dev_tasks=[humaneval] search.prompts_per_task=8

Modules: `space` (variables <-> sub-blocks), `objective` (one trial: decode the dev prompts), `cost` (the
per-sub-block cost profile of the `predicted_speedup` objective), `optimizer` (Bayesian optimization with
exact save and restore), `run` (the search loop and its files), `report` (snippet, trace plot, summary),
`strategies` (the first / middle / last / random / searched sets of the paper's Table 7).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from replicate.config import CONF_DIR
from replicate.search.space import SearchSpace

SEARCH_CONFIG = "search_config"

# `strategies` is not imported here: `python -m replicate.search.strategies` runs it as a script.
__all__ = ["SearchSpace", "compose_search_config"]


def compose_search_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The search CLI's config (`conf/search_config.yaml`) with command-line style overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=SEARCH_CONFIG, overrides=list(overrides))
