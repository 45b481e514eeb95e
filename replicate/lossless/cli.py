"""`replicate lossless` (`python -m replicate.lossless`): the runner-based check (`replicate.lossless.runs`), or
with `--decoder` the users' gate (`replicate.lossless.gate`) on your own decoder. Options:
`replicate.arguments.lossless_parser`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replicate.arguments import lossless_parser
from replicate.cli import user_errors
from replicate.lossless.gate import LosslessError, check
from replicate.lossless.reference import CHECK_MODELS
from replicate.lossless.runs import check_methods
from replicate.schema import ConfigError


def load_decoder(decoder: str) -> Any:
    """`module:callable` imported (the current directory first), or a custom_generate directory as it is;
    ConfigError naming what is missing (an import error inside the decoder's own module keeps its traceback)."""
    import importlib

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
        return target
    if not (Path(decoder) / "custom_generate" / "generate.py").is_file():
        raise ConfigError(
            f"--decoder {decoder}: a path must be a directory holding custom_generate/generate.py (the layout "
            "transformers loads a custom_generate method from); or pass module:callable"
        )
    return decoder


def gate_decoder(decoder: str, models: Sequence[str]) -> int:
    """`--decoder`: the gate on `decoder` (see `load_decoder`); 1 when it is not lossless."""
    target = load_decoder(decoder)
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
    models = args.models or list(CHECK_MODELS)
    if args.decoder:
        return gate_decoder(args.decoder, models)
    failures = check_methods(models, args.samples, args.max_new_tokens, args.out, args.dtype)
    for failure in failures:
        print(f"NOT LOSSLESS: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"lossless: no failing difference from autoregressive decoding on {', '.join(models)}")
    return 0
