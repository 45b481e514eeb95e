"""The search space of the layer search: one continuous variable in [0, 1] per sub-block, > threshold = skip.

For a model with L decoder layers there are 2L variables, attention sub-blocks first, then MLP sub-blocks
(as in the paper's `searching.py`). Variable i < L is the attention sub-block of layer i, variable L + i
the MLP sub-block of layer i; everything derives from `num_layers`, so no depth is hard-coded (the
original code's warm start used an MLP offset of 40, wrong for 70B). Variable names carry the mapping and
are zero-padded, so their sorted order is the index order.

Departures from the paper, both off by default, for small budgets and small models (SmolLM2-135M is much
less redundant than LLaMA-2-13B: drafts that skip 30% of the sub-blocks accept almost nothing, and
uniformly random points skip about half of them):
- `max_skipped` caps the number of skipped sub-blocks. When more variables exceed the threshold, only the
  `max_skipped` largest are skipped (ties go to the lower index).
- `min_skipped` floors it. When fewer variables exceed the threshold, the `min_skipped` largest are
  skipped anyway. Without it, a device on which no draft pays (a CPU, where verifying k tokens costs
  1.5-2.7 full steps) makes the empty set, i.e. drafting with the full model itself, the search's answer.
- `candidates` restricts the variables to some sub-blocks (e.g. those a cheaper measurement ranks best);
  the others are never skipped. Order stays attention first, then MLP, each by layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from replicate.core.skipping import SkipPlan

SUB_BLOCK_KINDS = ("attention", "mlp")


@dataclass(frozen=True)
class SearchSpace:
    """The variables of a model with `num_layers` decoder layers: 2L, or one per sub-block of `candidates`."""

    num_layers: int
    threshold: float = 0.5
    max_skipped: int | None = None
    candidates: tuple[tuple[str, int], ...] | None = None
    min_skipped: int = 0

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"the skip threshold must be in [0, 1), got {self.threshold}")
        everything = [(kind, layer) for kind in SUB_BLOCK_KINDS for layer in range(self.num_layers)]
        if self.candidates is None:
            sub_blocks = everything
        else:
            unknown = sorted(set(self.candidates) - set(everything))
            if unknown:
                raise ValueError(
                    f"search.candidates {unknown} are not sub-blocks of a {self.num_layers}-layer model"
                )
            sub_blocks = [block for block in everything if block in set(self.candidates)]
            if not sub_blocks:
                raise ValueError("search.candidates is empty; null searches every sub-block")
        object.__setattr__(self, "_sub_blocks", tuple(sub_blocks))
        object.__setattr__(self, "_indices", {block: i for i, block in enumerate(sub_blocks)})
        if self.max_skipped is not None and not 0 <= self.max_skipped <= len(sub_blocks):
            raise ValueError(
                f"search.max_skipped must be null or in [0, {len(sub_blocks)}] (the searched sub-blocks), got "
                f"{self.max_skipped}"
            )
        most = len(sub_blocks) if self.max_skipped is None else self.max_skipped
        object.__setattr__(self, "_most_skipped", most)
        if not 0 <= self.min_skipped <= most:
            raise ValueError(
                f"search.min_skipped must be in [0, {most}] (search.max_skipped, else the searched "
                f"sub-blocks), got {self.min_skipped}"
            )

    @classmethod
    def from_config(cls, num_layers: int, search_cfg: Mapping) -> SearchSpace:
        """The space `search.{skip_threshold,max_skipped,candidates,min_skipped}` describe."""
        candidates = search_cfg["candidates"]
        if candidates is not None:
            candidates = tuple(
                (kind, int(layer)) for kind in SUB_BLOCK_KINDS for layer in candidates.get(kind, [])
            )
        return cls(
            num_layers,
            search_cfg["skip_threshold"],
            search_cfg["max_skipped"],
            candidates,
            search_cfg["min_skipped"],
        )

    @property
    def num_variables(self) -> int:
        return len(self._sub_blocks)

    @property
    def sub_blocks(self) -> tuple[tuple[str, int], ...]:
        """The searched (kind, layer) sub-blocks in variable order (the candidates, else all 2L)."""
        return self._sub_blocks

    @property
    def most_skipped(self) -> int:
        """`max_skipped`, else the number of searched sub-blocks."""
        return self._most_skipped

    @staticmethod
    def plan_of(blocks) -> SkipPlan:
        """The skip plan of some (kind, layer) sub-blocks."""
        return SkipPlan.from_lists(
            sorted(layer for kind, layer in blocks if kind == "attention"),
            sorted(layer for kind, layer in blocks if kind == "mlp"),
        )

    def sub_block(self, index: int) -> tuple[str, int]:
        """The (kind, layer id) that variable `index` controls."""
        if not 0 <= index < self.num_variables:
            raise IndexError(f"variable {index} is out of range for {self.num_variables} variables")
        return self._sub_blocks[index]

    def index(self, kind: str, layer: int) -> int:
        """The variable index of sub-block (`kind`, `layer`); the inverse of `sub_block`."""
        if (kind, layer) not in self._indices:
            raise ValueError(
                f"sub-block ({kind!r}, {layer}) is not searched (model of {self.num_layers} layers, "
                f"{self.num_variables} searched sub-blocks); check search.candidates and search.warm_start"
            )
        return self._indices[(kind, layer)]

    def variable_names(self) -> list[str]:
        """`attention_00`, ..., `mlp_00`, ...: index order, which is also their sorted order."""
        width = len(str(self.num_layers - 1))
        return [f"{kind}_{layer:0{width}d}" for kind, layer in map(self.sub_block, range(self.num_variables))]

    def bounds(self) -> dict[str, tuple[float, float]]:
        return dict.fromkeys(self.variable_names(), (0.0, 1.0))

    def to_array(self, params: Mapping[str, float]) -> np.ndarray:
        """Optimizer parameters (a name -> value mapping) as an array of shape (2L,)."""
        return np.array([float(params[name]) for name in self.variable_names()])

    def to_params(self, values: Sequence[float] | np.ndarray) -> dict[str, float]:
        values = np.asarray(values, dtype=float)
        if values.shape != (self.num_variables,):
            raise ValueError(f"expected {self.num_variables} values, got shape {values.shape}")
        return {name: float(value) for name, value in zip(self.variable_names(), values)}

    def plan(self, values: Sequence[float] | np.ndarray) -> SkipPlan:
        """The skip plan of a point (2L,): variables above the threshold, between `min_skipped` and
        `max_skipped` of them (the largest variables win)."""
        values = np.asarray(values, dtype=float)
        if values.shape != (self.num_variables,):
            raise ValueError(f"expected {self.num_variables} values, got shape {values.shape}")
        chosen = [i for i in range(self.num_variables) if values[i] > self.threshold]
        # Stable sort on -value keeps the lower index first among equal values.
        by_value = sorted(range(self.num_variables), key=lambda i: -values[i])
        if self.max_skipped is not None and len(chosen) > self.max_skipped:
            chosen = sorted(by_value[: self.max_skipped])  # the largest are all above the threshold
        elif len(chosen) < self.min_skipped:
            chosen = sorted(by_value[: self.min_skipped])
        blocks = [self.sub_block(i) for i in chosen]
        return SkipPlan.from_lists(
            [layer for kind, layer in blocks if kind == "attention"],
            [layer for kind, layer in blocks if kind == "mlp"],
        )

    def point(self, plan: SkipPlan) -> np.ndarray:
        """A point (2L,) whose plan is `plan`: 1.0 for its sub-blocks, 0.0 elsewhere (for warm starts)."""
        plan.validate(self.num_layers)
        if not self.min_skipped <= plan.num_skipped <= self._most_skipped:
            raise ValueError(
                f"a warm start skipping {plan.num_skipped} sub-blocks ({plan}) is outside search.min_skipped="
                f"{self.min_skipped} / search.max_skipped={self.max_skipped}; change the warm start or the bounds"
            )
        values = np.zeros(self.num_variables)
        for layer in plan.attention:
            values[self.index("attention", layer)] = 1.0
        for layer in plan.mlp:
            values[self.index("mlp", layer)] = 1.0
        return values
