"""What one trial of the layer search measures: self-speculative decoding of the dev prompts with one skip set.

Every trial decodes the same dev prompts (from the tasks' training side, never an evaluation item) with the
evaluation method's settings (`method`: by default the adaptive draft-exit with K = 12, gamma_0 = 0.6; the
original search ran its code defaults K = 8, gamma = 0.8). The draft-exit state starts fresh in every trial
and carries over from prompt to prompt within it, as in the evaluation, so a trial does not depend on the
trials before it.

Objectives (`search.objective`):
- `tokens_per_s` (the paper's): new tokens / wall-clock seconds over all prompts (with the prefill unless
  `search.include_prefill_time` is false). Noisy wherever the machine is shared.
- `predicted_speedup`: the speedup the per-sub-block cost profile (`replicate.search.sub_block_costs`, measured once
  at the start) predicts from the trial's acceptance trace. Greedy decoding in fp32 makes the trace a
  function of the skip set alone, so the objective has no wall-clock noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from replicate.core.decoding import DecodeResult, DecodeSettings, Speculation, self_speculative_decode
from replicate.core.methods import build_draft_exit
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.run.runner import encode_prompt
from replicate.search.sub_block_costs import predicted_speedup
from tasks import load_task

OBJECTIVES = ("tokens_per_s", "predicted_speedup")


@dataclass(frozen=True)
class DevPrompt:
    """One search prompt: the task it comes from and its exact text."""

    task: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def collect_dev_prompts(cfg: DictConfig) -> list[DevPrompt]:
    """`search.prompts_per_task` dev prompts of each task in `search.dev_tasks` (configs under `tasks`)."""
    search = cfg.search
    if not search.dev_tasks:
        raise ValueError(
            "search.dev_tasks is empty; name at least one task, e.g. search.dev_tasks=[humaneval]"
        )
    prompts = []
    for name in search.dev_tasks:
        if name not in cfg.tasks:
            known = ", ".join(cfg.tasks)
            raise ValueError(
                f"search.dev_tasks names {name!r}, not a task config under `tasks` (known: {known})"
            )
        task = load_task(cfg.tasks[name])
        prompts += [DevPrompt(name, text) for text in task.dev_prompts(search.prompts_per_task)]
    return prompts


# What a trial record holds from a decoded evaluation (copied when a skip set is met again).
MEASUREMENT_KEYS = (
    "objective",
    "tokens_per_s",
    "predicted_speedup",
    "acceptance",
    "acceptance_pooled",
    "mean_accepted_length",
    "new_tokens",
    "draft_forwards",
    "full_forwards",
    "decode_time_s",
    "prefill_time_s",
    "cycles",
)


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one search decodes with: the model (its own configured plan is not used), the
    evaluation method's config, the sampling settings, the dev prompts and the `search` settings."""

    loaded: LoadedModel
    method_cfg: Mapping[str, Any]
    sampling: SamplingConfig
    prompts: Sequence[DevPrompt]
    search_cfg: Mapping[str, Any]

    def check_drafts(self) -> None:
        if build_draft_exit(self.method_cfg) is None:
            raise ValueError(
                f"method={self.method_cfg['name']} does not draft; the search needs a self-speculative method "
                "(method=adaptive_draft_exit, the evaluation's)"
            )

    def prompt_ids(self) -> list[torch.Tensor]:
        """One (1, seq) tensor per dev prompt, cut as the runner cuts it."""
        max_new_tokens = self.search_cfg["max_new_tokens"]
        return [encode_prompt(self.loaded, prompt.text, max_new_tokens)[0] for prompt in self.prompts]


def acceptance_summary(drafted: Sequence[int], accepted: Sequence[int]) -> dict[str, float | None]:
    """`acceptance` (the mean over prompts that drafted of accepted / drafted) and `acceptance_pooled` (all
    accepted over all drafted), from each prompt's totals; None where nothing was drafted."""
    rates = [a / d for a, d in zip(accepted, drafted) if d > 0]
    return {
        "acceptance": float(np.mean(rates)) if rates else None,
        "acceptance_pooled": sum(accepted) / sum(drafted) if sum(drafted) else None,
    }


class TrialEvaluator:
    """Decodes the dev prompts with a given skip plan and scores the result.

    setup: the model, method, sampling, dev prompts and search settings; seed: prompt i samples with
    seed + i. costs: the per-sub-block cost profile, needed for `predicted_speedup` only.
    """

    measurement_keys = MEASUREMENT_KEYS

    def __init__(self, setup: TrialSetup, seed: int, costs: Mapping[str, Any] | None = None):
        search_cfg = setup.search_cfg
        if search_cfg["objective"] not in OBJECTIVES:
            raise ValueError(
                f"search.objective={search_cfg['objective']!r} is not one of {', '.join(OBJECTIVES)}"
            )
        setup.check_drafts()
        if search_cfg["max_new_tokens"] < 2:
            raise ValueError(
                f"search.max_new_tokens must be >= 2 (the first token is the prefill's), got "
                f"{search_cfg['max_new_tokens']}"
            )
        self.loaded = setup.loaded
        self.method_cfg = setup.method_cfg
        self.sampling = setup.sampling
        self.objective = search_cfg["objective"]
        self.max_new_tokens = search_cfg["max_new_tokens"]
        self.include_prefill_time = search_cfg["include_prefill_time"]
        self.seed = seed
        self.costs = costs
        self.prompts = list(setup.prompts)
        self.prompt_ids = setup.prompt_ids()
        self.evaluations = 0  # decodes of a whole trial (what resume must not repeat)

    def decode_all(self, plan: SkipPlan) -> list[DecodeResult]:
        """Self-speculative decodes of every dev prompt with `plan`, in order, one draft-exit state."""
        draft_exit = build_draft_exit(self.method_cfg)
        results = []
        for index, prompt_ids in enumerate(self.prompt_ids):
            generator = torch.Generator(device=prompt_ids.device).manual_seed(self.seed + index)
            settings = DecodeSettings(self.max_new_tokens, self.sampling, self.loaded.eos_token_ids)
            speculation = Speculation(plan, self.method_cfg["max_draft_tokens"], draft_exit)
            results.append(
                self_speculative_decode(self.loaded.model, prompt_ids, settings, speculation, generator)
            )
        return results

    def warm_up(self, runs: int) -> None:
        """Untimed decodes of the first prompt, so that the first trial is not charged for lazy setup."""
        for _ in range(runs):
            draft_exit = build_draft_exit(self.method_cfg)
            settings = DecodeSettings(min(8, self.max_new_tokens), self.sampling, self.loaded.eos_token_ids)
            speculation = Speculation(SkipPlan(), self.method_cfg["max_draft_tokens"], draft_exit)
            self_speculative_decode(self.loaded.model, self.prompt_ids[0], settings, speculation)

    def evaluate(self, plan: SkipPlan) -> dict[str, Any]:
        """The trial's measurements; `objective` is the value the optimizer maximizes."""
        if self.objective == "predicted_speedup" and self.costs is None:
            raise ValueError("the predicted_speedup objective needs a cost profile (TrialEvaluator.costs)")
        results = self.decode_all(plan)
        self.evaluations += 1
        new_tokens = sum(result.num_new_tokens for result in results)
        seconds = sum(
            result.total_time - (0.0 if self.include_prefill_time else result.prefill_time)
            for result in results
        )
        drafted = [sum(result.drafted) for result in results]
        accepted = [sum(result.accepted) for result in results]
        measured = {
            "tokens_per_s": new_tokens / seconds,
            "predicted_speedup": None if self.costs is None else predicted_speedup(results, self.costs, plan),
            **acceptance_summary(drafted, accepted),
            "mean_accepted_length": new_tokens / sum(result.full_forwards for result in results),
            "new_tokens": new_tokens,
            "draft_forwards": sum(result.draft_forwards for result in results),
            "full_forwards": sum(result.full_forwards for result in results),
            "decode_time_s": sum(result.total_time for result in results),
            "prefill_time_s": sum(result.prefill_time for result in results),
            # Per prompt, the acceptance trace: enough to score the trial again with another cost profile.
            "cycles": [
                {
                    "new_tokens": r.num_new_tokens,
                    "full_forwards": r.full_forwards,
                    "drafted": r.drafted,
                    "accepted": r.accepted,
                }
                for r in results
            ],
        }
        return {"objective": measured[self.objective], **measured}
