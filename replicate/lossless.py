"""`python -m replicate.lossless`: the lossless check of `make check-lossless`, through the real runner.

`python -m replicate.lossless --decoder my_package.module:decode` gates your own decoder instead (a decode
function, a `custom_generate` callable, or a path holding `custom_generate/generate.py`), over the tiny-model
matrix and SmolLM2; in Python and pytest: `replicate.lossless.check(decoder)` (`replicate.gate`) and the
`lossless_check` fixture (`pytest_plugins = ["replicate.testing"]`).

Every greedy self-speculative method (fixed K, static threshold, adaptive draft-exit) decodes a few HumanEval
prompts on the random tiny model and on SmolLM2-135M (fp32, CPU, unless `--dtype` says otherwise), each sample
also decoded autoregressively; the runner records whether the tokens are identical and judges each difference
(metrics.json `divergences`: a near-tie when the baseline's top-two logit margin there is within a few units
in the last place of the dtype, else unexplained). In fp32 any difference fails the check (exit status 1); in
bf16/fp16 an unexplained one does, and near-ties are reported. A failure names for every method its first
failing sample, the position of the first differing token, both tokens and the baseline's margin there. Run
directories are kept under --out for inspection.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replicate.arguments import lossless_parser
from replicate.cli import user_errors
from replicate.gate import LosslessError, check
from replicate.schema import ConfigError

__all__ = ["LosslessError", "check", "check_methods", "first_divergence", "main"]

if TYPE_CHECKING:
    from replicate.records import SampleRecord

logger = logging.getLogger(__name__)

MODELS = ("tiny_llama", "smollm2_135m")
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


def gate_decoder(decoder: str, models: Sequence[str]) -> int:
    """`--decoder`: `module:callable` is imported (the current directory first), anything else is a path."""
    import importlib

    target: Any = decoder
    if ":" in decoder and not Path(decoder).exists():
        module_name, _, attribute = decoder.partition(":")
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise  # the decoder's own import failed: its traceback is the user's to read
            raise ConfigError(
                f"--decoder {decoder}: no module {module_name!r} importable from {os.getcwd()} (or sys.path)"
            ) from None
        target = getattr(module, attribute, None)
        if not callable(target):
            raise ConfigError(f"--decoder {decoder}: module {module_name} has no callable {attribute!r}")
    elif not (Path(decoder) / "custom_generate" / "generate.py").is_file():
        raise ConfigError(
            f"--decoder {decoder}: a path must be a directory holding custom_generate/generate.py (the layout "
            "transformers loads a custom_generate method from); or pass module:callable"
        )
    try:
        summary = check(target, models)
    except LosslessError as error:
        print(f"NOT LOSSLESS: {error}", file=sys.stderr)
        return 1
    print(f"lossless: {decoder} equals model.generate on {summary.cases} cases ({summary.tokens} tokens)")
    return 0


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = lossless_parser().parse_args(argv)
    if args.decoder:
        return gate_decoder(args.decoder, args.models)
    failures = check_methods(args.models, args.samples, args.max_new_tokens, args.out, args.dtype)
    for failure in failures:
        print(f"NOT LOSSLESS: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"lossless: no failing difference from autoregressive decoding on {', '.join(args.models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
