"""`on_the_fly`: self-speculative decoding whose skip set is chosen during decoding from the context, with no
offline search (a simplified SWIFT, Xia et al., ICLR 2025), so a model without a searched set still drafts.

SWIFT observes that which layers can be skipped depends on the input, and optimizes the skip set on the
fly over the first part of the task stream: candidate sets are scored by how well their draft agrees with
tokens the full model has already verified (parallel, teacher-forced drafting over the context), and the
best set drafts from then on. Here, after each of the first `search_cycles` cycles of the run (counted
across prompts: the set and the count carry over to the next prompt, like SWIFT's task stream):
- the window is the last `window_tokens` committed tokens generated so far (not the prompt: those tokens
  are the full model's own output, so agreement with them is the draft's acceptance);
- the current set and `candidates_per_cycle` neighbours (one skipped sub-block swapped for a kept one,
  drawn from a seeded generator) each run one teacher-forced pass over the window with their sub-blocks
  skipped; the score is the share of positions whose draft argmax equals the next committed token;
- the best scorer becomes the set (the current one is kept on a tie).
The passes write over the window's KV, which is saved before and written back after, bit for bit, so the
verified cache is untouched and decoding stays lossless (the verifier never sees a skipped sub-block).
Each scoring pass is counted in `DecodeResult.search_forwards`. Drafting and verification are the paper's
cycle (`run_cycle`) with the current set and a static draft-exit `threshold`.

Departures from SWIFT (also in docs/replication.md): SWIFT searches with random search and then Bayesian
optimization over sets of a fixed skip ratio, and verifies a tree of top-k drafts with confidence-aware
drafting; this is a seeded local search (swap one sub-block) over sets of `skip_fraction` of all
attention + MLP sub-blocks, linear drafts with a static confidence threshold, and a fixed number of search
cycles instead of SWIFT's stopping rule. The initial set is drawn at random (seeded) from all sub-blocks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from replicate.core.cycle import CycleSettings, CycleStart, run_cycle
from replicate.core.decoding import (
    DecodeSettings,
    _check_prompt,
    _commit,
    _finished,
    _prefill,
    check_cache_lengths,
    record_cycle,
)
from replicate.core.kv_cache import KVCache
from replicate.core.methods import Decoder, MethodTraits, register_method
from replicate.core.passes import forward, synchronize
from replicate.core.skipping import SkipPlan, skip_sublayers, truncate_cache
from replicate.records import DecodeResult
from replicate.schema import at_least, within

SubBlock = tuple[str, int]  # ("attention" | "mlp", layer id)


def _plan(blocks: list[SubBlock]) -> SkipPlan:
    return SkipPlan(
        tuple(sorted(i for kind, i in blocks if kind == "attention")),
        tuple(sorted(i for kind, i in blocks if kind == "mlp")),
    )


def _blocks(plan: SkipPlan) -> list[SubBlock]:
    return [("attention", i) for i in plan.attention] + [("mlp", i) for i in plan.mlp]


def neighbour(plan: SkipPlan, num_layers: int, rng: random.Random) -> SkipPlan:
    """`plan` with one skipped sub-block (drawn by `rng`) swapped for one kept sub-block."""
    skipped = _blocks(plan)
    kept = [b for b in ((k, i) for k in ("attention", "mlp") for i in range(num_layers)) if b not in skipped]
    if not skipped or not kept:
        return plan
    skipped[rng.randrange(len(skipped))] = kept[rng.randrange(len(kept))]
    return _plan(skipped)


def _save_window(cache: KVCache, start: int, end: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (layer.keys[:, :, start:end].clone(), layer.values[:, :, start:end].clone()) for layer in cache.layers
    ]


def _restore_window(cache: KVCache, start: int, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    truncate_cache(cache, start)
    for layer, (keys, values) in zip(cache.layers, saved):
        layer.update(keys, values)


def score_plans(
    model: nn.Module, cache: KVCache, context: list[int], window: int, plans: list[SkipPlan]
) -> list[float]:
    """Teacher-forced agreement of each plan's draft with the committed tokens over the last `window`
    positions of `context` (prompt + committed tokens; the cache holds all of it but the last token). The
    cache is left exactly as it was."""
    end = len(context) - 1  # cached positions
    start = end - window
    window_ids = torch.tensor([context[start:end]], device=next(model.parameters()).device)
    targets = torch.tensor(context[start + 1 :], device=window_ids.device)
    saved = _save_window(cache, start, end)
    scores = []
    try:
        for plan in plans:
            truncate_cache(cache, start)
            with skip_sublayers(model, plan):
                logits = forward(model, window_ids, cache, start, last_only=False)
            scores.append(float((logits.argmax(dim=-1) == targets).float().mean()))
    finally:
        _restore_window(cache, start, saved)
    return scores


@dataclass
class SkipSetSearch:
    """The state on-the-fly selection carries from cycle to cycle and prompt to prompt (the decoder's
    carried state, in place of an adaptive threshold): the current set, the search cycles done. Also the
    draft-exit rule of its cycles: a static `threshold`."""

    threshold: float
    skip_fraction: float
    search_cycles: int
    candidates_per_cycle: int
    window_tokens: int
    seed: int
    plan: SkipPlan | None = None
    searched: int = 0
    scores: list[float] = field(default_factory=list)

    def start_sample(self) -> None:
        pass

    def update(self, num_drafted: int, num_accepted: int, max_draft_tokens: int) -> None:
        pass

    def initial_plan(self, num_layers: int) -> SkipPlan:
        if self.plan is None:
            blocks = [(k, i) for k in ("attention", "mlp") for i in range(num_layers)]
            count = round(self.skip_fraction * len(blocks))
            self.plan = _plan(random.Random(self.seed).sample(blocks, count))
        return self.plan

    def search_step(self, model: nn.Module, cache: KVCache, context: list[int], generated: int) -> int:
        """Score the current set and its neighbours on the window and keep the best; returns passes run."""
        window = min(self.window_tokens, generated)
        if self.searched >= self.search_cycles or window < 1:
            return 0
        rng = random.Random(self.seed * 1_000_003 + self.searched)
        num_layers = model.config.num_hidden_layers
        plans = [self.plan] + [
            neighbour(self.plan, num_layers, rng) for _ in range(self.candidates_per_cycle)
        ]
        scores = score_plans(model, cache, context, window, plans)
        best = max(range(len(plans)), key=lambda i: (scores[i], i == 0))
        self.plan, self.searched = plans[best], self.searched + 1
        self.scores.append(scores[best])
        return len(plans)

    def state_dict(self) -> dict[str, Any]:
        plan = self.plan or SkipPlan()
        return {"attention": list(plan.attention), "mlp": list(plan.mlp), "searched": self.searched}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"attention", "mlp", "searched"}:
            raise ValueError(f"on-the-fly state is {{'attention', 'mlp', 'searched'}}, got {dict(state)}")
        self.plan = SkipPlan.from_lists(state["attention"], state["mlp"])
        self.searched = int(state["searched"])


@dataclass(frozen=True)
class OnTheFly:
    """How the on-the-fly loop drafts: the sets of `search` (which carries them across cycles and prompts),
    at most `max_draft_tokens` a cycle under its static threshold, `draft_confidence` as in `Speculation`,
    `check_cache` as in `Speculation`."""

    search: SkipSetSearch
    max_draft_tokens: int
    draft_confidence: str = "paper"
    check_cache: bool = False


@torch.inference_mode()
def on_the_fly_decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    settings: DecodeSettings,
    on_the_fly: OnTheFly,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """The paper's loop (prefill, then draft-and-verify cycles) with the skip set of `on_the_fly.search`, which
    a search step may change after each cycle (see the module docstring)."""
    _check_prompt(prompt_ids, settings.max_new_tokens)
    search, num_layers = on_the_fly.search, model.config.num_hidden_layers
    search.initial_plan(num_layers).validate(num_layers)
    prompt = prompt_ids[0].tolist()
    cache, chosen, start_time, prefill_time = _prefill(model, prompt_ids, settings, generator)
    result = DecodeResult([], prefill_time, 0.0, full_forwards=1)
    last_ids = chosen.view(1, 1)
    tokens = [int(last_ids[0, 0])]
    while not _finished(tokens, settings):
        num_to_draft = min(on_the_fly.max_draft_tokens, settings.max_new_tokens - len(tokens) - 1)
        cycle_settings = CycleSettings(
            search.plan, settings.sampling, settings.eos_token_ids, on_the_fly.draft_confidence, generator
        )
        start = CycleStart(
            tokens[-1], last_ids, len(prompt) + len(tokens) - 1, num_to_draft, search.threshold
        )
        cycle = run_cycle(model, cache, cycle_settings, start)
        _commit(tokens, [*cycle.draft_tokens[: cycle.num_accepted], cycle.next_token], settings)
        last_ids = cycle.next_ids
        record_cycle(result, cycle, search.threshold)
        result.draft_sources.append("model" if cycle.draft_tokens else "none")
        if _finished(tokens, settings):
            break
        result.search_forwards += search.search_step(model, cache, prompt + tokens, len(tokens))
        if on_the_fly.check_cache:
            check_cache_lengths(result, cache, len(prompt) + len(tokens) - 1)
    synchronize(prompt_ids.device)
    result.tokens = tokens
    result.total_time = time.perf_counter() - start_time
    return result


@register_method
@dataclass(frozen=True)
class OnTheFlyConfig(MethodTraits):
    """Skip set chosen during decoding (see the module docstring): `skip_fraction` of all sub-blocks skipped,
    searched over the first `search_cycles` cycles with `candidates_per_cycle` neighbours scored on the last
    `window_tokens` generated tokens, from seed `search_seed`; drafts of up to `max_draft_tokens` stopped
    by the static confidence `threshold`."""

    name: Literal["on_the_fly"]
    max_draft_tokens: int
    threshold: float
    skip_fraction: float
    search_cycles: int
    candidates_per_cycle: int
    window_tokens: int
    search_seed: int
    draft_confidence: Literal["paper", "processed"]
    needs_skip_set: ClassVar[bool] = False
    cost_model_not_applicable: ClassVar[str | None] = (
        "on_the_fly changes its skip set during decoding and runs scoring passes: no single cost profile "
        "(one skip set's draft step) prices its cycles"
    )

    def __post_init__(self):
        at_least("max_draft_tokens", self.max_draft_tokens, 1)
        within("threshold", self.threshold, 0.0, 1.0)
        within("skip_fraction", self.skip_fraction, 0.0, 1.0)
        at_least("search_cycles", self.search_cycles, 0)
        at_least("candidates_per_cycle", self.candidates_per_cycle, 1)
        at_least("window_tokens", self.window_tokens, 1)
        at_least("search_seed", self.search_seed, 0)

    def draft_exit(self) -> SkipSetSearch:
        return SkipSetSearch(
            self.threshold, self.skip_fraction, self.search_cycles, self.candidates_per_cycle,
            self.window_tokens, self.search_seed,
        )  # fmt: skip

    def decode(
        self, decoder: Decoder, prompt_ids: torch.Tensor, max_new_tokens: int, generator
    ) -> DecodeResult:
        on_the_fly = OnTheFly(
            decoder.draft_exit, self.max_draft_tokens, self.draft_confidence, decoder.check_cache
        )
        settings = decoder.settings(max_new_tokens)
        return on_the_fly_decode(decoder.loaded.model, prompt_ids, settings, on_the_fly, generator)
