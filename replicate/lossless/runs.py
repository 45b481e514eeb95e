"""The lossless check of `make check-lossless`, through the real runner.

Every greedy self-speculative method (fixed K, static threshold, adaptive draft-exit) decodes a few HumanEval
prompts on the random tiny model and on SmolLM2-135M (fp32, CPU, unless a dtype is given), each sample also
decoded autoregressively; the runner records whether the tokens are identical and judges each difference
(metrics.json `divergences`: a near-tie when the baseline's top-two logit margin there is within a few units
in the last place of the dtype, else unexplained). In fp32 any difference fails the check; in bf16/fp16 an
unexplained one does, and near-ties are reported. A failure names for every method its first failing
sample, the position of the first differing token, both tokens and the baseline's margin there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replicate.records import SampleRecord

logger = logging.getLogger(__name__)

METHODS: dict[str, list[str]] = {
    "fixed_k4": ["method=self_speculative", "method.max_draft_tokens=4", "method.threshold=0.0"],
    "static_threshold_0.5": ["method=self_speculative", "method.max_draft_tokens=12", "method.threshold=0.5"],
    "adaptive_draft_exit": ["method=adaptive_draft_exit"],
}
COMMON = [
    "task=humaneval", "sampling.temperature=0.0", "run_baseline=true", "force=true", "verify_cache=true",
    "logger=none", "warmup.runs=0",
]  # fmt: skip
# The sandbox's namespaces need root. Scores play no part in this check, so elsewhere (e.g. a CI runner)
# programs run with the resource limits only, through the sandbox's explicit opt-in.
UNPRIVILEGED_SANDBOX = ["task.execution.allow_unsandboxed=true"]


def first_divergence(
    records: Sequence[SampleRecord], failing: Callable[[SampleRecord], bool] | None = None
) -> dict[str, Any] | None:
    """The first sample whose tokens differ from the baseline's (and that `failing` says fails, when given):
    id, position and what differs there."""
    for record in records:
        if record.identical is not False or (failing is not None and not failing(record)):
            continue
        position = record.first_difference
        method_tokens = record.method.tokens
        baseline_tokens = record.baseline.tokens if record.baseline is not None else []
        return {
            "index": record.index,
            "id": record.id,
            "position": position,
            "method_token": method_tokens[position] if position < len(method_tokens) else None,
            "baseline_token": baseline_tokens[position] if position < len(baseline_tokens) else None,
            "baseline_margin": record.baseline_margin,
        }
    return None


def fails_lossless(dtype: str, near_tie_ulps: float) -> Callable[[SampleRecord], bool]:
    """Which differing samples fail the check: in fp32 every one; in bf16/fp16 the unexplained ones."""
    from replicate.run.metrics import divergence_verdict

    if dtype == "float32":
        return lambda record: record.identical is False
    return lambda record: divergence_verdict(record, dtype, near_tie_ulps) == "unexplained"


def check_methods(
    models: Sequence[str], n_samples: int, max_new_tokens: int, out: Path, dtype: str | None = None
) -> list[str]:
    """Run every (model, method) pair (in `dtype`, else each model's own); returns one failure line per pair
    with a failing difference (`fails_lossless`)."""
    from replicate.config import compose_config
    from replicate.run.rundir import read_samples
    from replicate.run.runner import run

    sandbox = [] if os.geteuid() == 0 else UNPRIVILEGED_SANDBOX
    if sandbox:
        logger.info(
            "not root: HumanEval programs run without the sandbox's namespaces (scores are not checked here)"
        )
    failures = []
    for model in models:
        for method, overrides in METHODS.items():
            settings = [f"model={model}", f"n_samples={n_samples}", f"max_new_tokens={max_new_tokens}"]
            settings += [f"model.dtype={dtype}"] if dtype is not None else []
            run_dir = out / model / method
            config = compose_config([*COMMON, *sandbox, *settings, *overrides])
            metrics = run(config, run_dir)
            records = read_samples(run_dir)
            counts = metrics.divergences or {}
            verdicts = ", ".join(
                f"{counts.get(key)} {key}" for key in ("identical", "near_tie", "unexplained")
            )
            failing = fails_lossless(config.model.dtype, config.divergence.near_tie_ulps)
            divergence = first_divergence(records, failing)
            if divergence is None:
                logger.info(
                    "lossless: %s (%s) %s: %d samples: %s",
                    model,
                    config.model.dtype,
                    method,
                    len(records),
                    verdicts,
                )
                continue
            failures.append(
                f"{model} ({config.model.dtype}; {verdicts}) {method}: sample {divergence['id']} "
                f"(index {divergence['index']}) differs at token "
                f"{divergence['position']}: method {divergence['method_token']}, baseline "
                f"{divergence['baseline_token']}, baseline top-2 logit margin {divergence['baseline_margin']} "
                f"({run_dir / 'samples.jsonl'})"
            )
    return failures
