"""`python -m replicate.lossless`: the runner-based check (`replicate.lossless.runs`), or with `--decoder` the
users' gate (`replicate.lossless.gate`) on your own decoder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replicate.cli import user_errors
from replicate.lossless.gate import LosslessError, check
from replicate.lossless.reference import CHECK_MODELS
from replicate.lossless.runs import check_methods


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def gate_decoder(decoder: str, models: Sequence[str]) -> int:
    """`--decoder`: `module:callable` is imported (the current directory first), anything else is a path."""
    import importlib

    target: Any = decoder
    if ":" in decoder and not Path(decoder).exists():
        module_name, _, attribute = decoder.partition(":")
        sys.path.insert(0, os.getcwd())
        target = getattr(importlib.import_module(module_name), attribute)
    try:
        summary = check(target, models)
    except LosslessError as error:
        print(f"NOT LOSSLESS: {error}", file=sys.stderr)
        return 1
    print(f"lossless: {decoder} equals model.generate on {summary.cases} cases ({summary.tokens} tokens)")
    return 0


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicate.lossless",
        description="The lossless check of make check-lossless, or the gate of your own --decoder.",
    )
    parser.add_argument("--models", nargs="+", default=list(CHECK_MODELS), help="model configs (conf/model/)")
    parser.add_argument("--samples", type=_positive, default=3, help="HumanEval prompts per run")
    parser.add_argument("--max-new-tokens", type=_positive, default=32)
    parser.add_argument("--out", type=Path, default=Path("outputs") / "lossless")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], default=None,
        help="model.dtype of every run (default: each model config's own, fp32 for both defaults)",
    )  # fmt: skip
    parser.add_argument(
        "--decoder", help="gate this decoder instead: module:callable, or a custom_generate path"
    )
    args = parser.parse_args(argv)
    if args.decoder:
        return gate_decoder(args.decoder, args.models)
    failures = check_methods(args.models, args.samples, args.max_new_tokens, args.out, args.dtype)
    for failure in failures:
        print(f"NOT LOSSLESS: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"lossless: no failing difference from autoregressive decoding on {', '.join(args.models)}")
    return 0
