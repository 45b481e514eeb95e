"""Skip sets of one size chosen by the strategies the paper's Table 7 compares: first, middle, last, random
layers, and the searched set (Table 7: 24 attention + 10 MLP sub-layers of LLaMA-2-13B in every row).

`strategy_plan` builds them for any depth and size. Table 7 runs as a Hydra experiment
(`conf/experiment/table7.yaml`, `python -m replicate -m experiment=table7`), whose skip sets are literal
lists written by this module's CLI, which prints the `experiment.skip_sets` entry of a model:

    python -m replicate.search.strategies --model llama2_13b --layers 40
    python -m replicate.search.strategies --model smollm2_135m            # sizes: the model's own set

`tests/test_search.py` checks that the experiment's lists are what `strategy_plan` gives.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence

from replicate.core.skipping import SkipPlan

STRATEGIES = ("first", "middle", "last", "random", "searched")


def chosen_layers(strategy: str, num_layers: int, count: int, rng: random.Random) -> list[int]:
    """`count` layer ids of `num_layers` for a positional strategy (first, middle, last, random)."""
    if not 0 <= count <= num_layers:
        raise ValueError(f"cannot choose {count} of {num_layers} layers")
    if strategy == "first":
        return list(range(count))
    if strategy == "last":
        return list(range(num_layers - count, num_layers))
    if strategy == "middle":
        start = (num_layers - count) // 2  # centred; an odd leftover goes after the block
        return list(range(start, start + count))
    if strategy == "random":
        return sorted(rng.sample(range(num_layers), count))
    raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def strategy_plan(
    strategy: str,
    num_layers: int,
    num_attention: int,
    num_mlp: int,
    seed: int = 0,
    searched: SkipPlan | None = None,
) -> SkipPlan:
    """The skip set of `strategy` with `num_attention` attention and `num_mlp` MLP sub-layers of `num_layers`.

    `random` draws the attention ids, then the MLP ids, from `random.Random(seed)`. `searched` returns
    `searched` (the Bayesian-optimization set), which must have the requested sizes."""
    if strategy == "searched":
        if searched is None:
            raise ValueError("the searched strategy needs the searched skip set")
        if (len(searched.attention), len(searched.mlp)) != (num_attention, num_mlp):
            raise ValueError(
                f"the searched set has {len(searched.attention)} attention + {len(searched.mlp)} MLP "
                f"sub-layers, not the requested {num_attention} + {num_mlp}"
            )
        return searched.validate(num_layers)
    rng = random.Random(seed)
    attention = chosen_layers(strategy, num_layers, num_attention, rng)
    mlp = chosen_layers(strategy, num_layers, num_mlp, rng)
    return SkipPlan.from_lists(attention, mlp).validate(num_layers)


def skip_sets(num_layers: int, searched: SkipPlan, searched_source: str, seed: int = 0) -> dict[str, dict]:
    """Every strategy's set, sized like `searched`, as `model.skip` mappings (the experiment's rows)."""
    sizes = (len(searched.attention), len(searched.mlp))
    rows = {}
    for strategy in STRATEGIES:
        plan = strategy_plan(strategy, num_layers, *sizes, seed=seed, searched=searched)
        source = (
            searched_source
            if strategy == "searched"
            else f"table7 {strategy} ({sizes[0]} attention + {sizes[1]} mlp, seed {seed})"
        )
        rows[strategy] = {"attention": list(plan.attention), "mlp": list(plan.mlp), "source": source}
    return rows


def _model_depth(model: str) -> int | None:
    from replicate.config import compose_config

    cfg = compose_config([f"model={model}"]).model
    if "num_hidden_layers" in cfg:
        return int(cfg.num_hidden_layers)
    if cfg.source == "gguf":  # local and quick to load; hub models need --layers (no download here)
        from replicate.core.models import load_model

        return int(load_model(cfg).model.config.num_hidden_layers)
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a conf/model name; its skip set is the searched row")
    parser.add_argument("--layers", type=int, help="decoder layers (needed for hub models)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    args = parser.parse_args(argv)
    from replicate.config import compose_config

    skip = compose_config([f"model={args.model}"]).model.skip
    layers = args.layers or _model_depth(args.model)
    if layers is None:
        raise SystemExit(f"model {args.model} is loaded from the hub: pass its depth with --layers")
    rows = skip_sets(layers, SkipPlan.from_lists(skip.attention, skip.mlp), skip.source, args.seed)
    print(f"    {args.model}:")
    for strategy, row in rows.items():
        print(
            f"      {strategy}: {{attention: {row['attention']}, mlp: {row['mlp']}, source: {json.dumps(row['source'])}}}"
        )


if __name__ == "__main__":
    main()
