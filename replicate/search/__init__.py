"""The layer search of self-speculative decoding: which attention and MLP sub-blocks the draft skips.

    python -m replicate.search model=smollm2_135m search=smollm2_cpu      # see docs/search.md
    python -m replicate.search model=codellama_13b search.dev_tasks=[humaneval] search.prompts_per_task=8

Modules: `space` (variables <-> sub-blocks), `config` (the typed `search.*` settings), `objective` (one
decoded trial: decode the dev prompts), `dev_sequences` and `teacher_forced` (the teacher-forced estimate of
a trial), `evaluators` (which of the two, and the cost profile), `sub_block_costs` (the per-sub-block cost
profile of the `predicted_speedup` objective), `optimizer` (Bayesian optimization with exact save and
restore), `rundir` (the run directory: setup record, trial log, resume), `run` (the search loop; other
strategies go to `selectors`), `selectors` (search.strategy other than bayesian), `outputs` (snippet, trace
plot, summary), `accounting` (search cost), `strategies` (the first / middle / last / random / searched sets
of the paper's Table 7). One-off studies that drive this library (comparing searches, checking the estimate,
the selection experiment) live in the checkout's `studies/` folder.
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
