"""The argument parser of every `replicate` subcommand that is not a Hydra app, defined once: the entry module
parses its arguments with it (`python -m replicate.report ...` and `replicate report ...` are the same), and
`replicate <command> --help` prints it without importing the entry module (no torch: help is fast).

One style everywhere: paths and names are positional, a few flags, and settings as Hydra `key=value`
overrides where a command has a config. Every value is typed and range-checked here, before any work.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from replicate.paths import CONF_DIR

DTYPES = ("float32", "bfloat16", "float16")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown beside every option, the description as written."""


def group_options(group: str) -> list[str]:
    """The names of a config group (the group directory is the registry)."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def model_name(text: str) -> str:
    known = group_options("model")
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; known: {', '.join(known)} (conf/model/)")
    return text


def decoder_target(text: str) -> str:
    """`module:callable`, or a path holding `custom_generate/generate.py` (or that file itself)."""
    path = Path(text)
    if path.exists():
        return text
    module, colon, attribute = text.partition(":")
    names = [*module.split("."), attribute]
    if colon and all(name.isidentifier() for name in names):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither an existing path nor module:callable (e.g. my_package.decoding:decode)"
    )


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"replicate {command}", description=description, formatter_class=_Formatter
    )


def report_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "report",
        "The reproduced paper tables (report.md, report.csv, figures/) of the run directories under DIRECTORY, "
        "with the paper's numbers beside the measured ones.\nRefuses a directory without runs, a damaged run "
        "file (named), and never overwrites a file it did not write.",
    )
    parser.add_argument("directory", type=Path, help="a run directory or a directory of them (e.g. a sweep)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the report (None: DIRECTORY itself)"
    )
    parser.add_argument("--spec-bench", action="store_true", help="also write Spec-Bench jsonl per method")
    parser.add_argument(
        "--wandb-report", action="store_true", help="also build a W&B Report (wandb-workspaces)"
    )
    parser.add_argument("--entity", default=None, help="W&B entity of the report (None: the runs' logger's)")
    parser.add_argument(
        "--project", default=None, help="W&B project of the report (None: the runs' logger's)"
    )
    return parser


def rescore_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "rescore",
        "Score finished runs again without decoding (after the sandbox or the task's post-processing changed).\n"
        "Refuses a run whose samples.jsonl does not match its metrics.json and fingerprint.json.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
    return parser


def gpu_check_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "gpu-check",
        "Check a CUDA machine in ten minutes (docs/gpu.md); --rehearse: the same code on the CPU.",
    )
    parser.add_argument(
        "--rehearse", action="store_true", help="tiny shapes on the CPU (conf/gpu_check_rehearse.yaml)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides of conf/gpu_check.yaml, e.g. end_to_end.n_samples=4"
    )
    return parser


def experiment_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "experiment",
        "The paper's tables as Hydra experiments (conf/experiment/):\n"
        "  list                      the experiments\n"
        "  plan  NAME [key=value]    the jobs of the sweep, one per line (every job's config checked)\n"
        "  check NAME [key=value]    what this machine lacks to run them (exit 2 if anything)\n"
        "  run   NAME [key=value]    check, sweep (rerun resumes), then write the report",
    )
    parser.add_argument("command", choices=("list", "plan", "check", "run"))
    parser.add_argument("name", nargs="?", help="experiment name, e.g. table1")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every job, e.g. n_samples=4")
    parser.add_argument("--smoke", action="store_true", help="SmolLM2 on CPU, 2 samples x 32 tokens")
    parser.add_argument(
        "--sweep-dir",
        type=Path,
        default=None,
        help="where the runs go (None: outputs/experiments/<name>, or <name>-smoke)",
    )
    return parser


def numerics_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "numerics",
        "How far a multi-token pass moves logits from one-token decoding, in units in the last place of the dtype.",
    )
    parser.add_argument("--model", type=model_name, default="smollm2_135m", help="model config (conf/model/)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="the model's dtype")
    parser.add_argument(
        "--prompts", type=positive_int, default=10, help="HumanEval prompts (tabs, as the task feeds them)"
    )
    parser.add_argument(
        "--new-tokens", type=positive_int, default=64, help="tokens decoded per prompt (>= 2)"
    )
    parser.add_argument(
        "--chunk", type=positive_int, default=13, help="tokens per pass (K + 1 for a verification)"
    )
    return parser


def lossless_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "lossless",
        "The lossless check of `make check-lossless` through the real runner (every greedy method against "
        "autoregressive decoding);\n--decoder gates your own decoder instead.",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        type=model_name,
        default=None,
        help="model configs (conf/model/); None: the check's own, tiny_llama and smollm2_135m",
    )
    parser.add_argument("--samples", type=positive_int, default=3, help="HumanEval prompts per run")
    parser.add_argument("--max-new-tokens", type=positive_int, default=32, help="new tokens per sample")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs") / "lossless", help="run directories, kept"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None,
        help="model.dtype of every run (None: each model config's own, fp32 for both defaults)",
    )  # fmt: skip
    parser.add_argument(
        "--decoder", type=decoder_target, default=None,
        help="gate this decoder instead: module:callable, or a path holding custom_generate/generate.py",
    )  # fmt: skip
    return parser


def demo_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "demo",
        "SmolLM2-135M on a few HumanEval prompts with all three methods, one table (conf/experiment/demo.yaml).",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every run, e.g. n_samples=2")
    return parser


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "report": report_parser,
    "rescore": rescore_parser,
    "gpu-check": gpu_check_parser,
    "experiment": experiment_parser,
    "numerics": numerics_parser,
    "lossless": lossless_parser,
    "demo": demo_parser,
}
