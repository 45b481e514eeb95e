"""`replicate <command> ...`: the one command line (console script `replicate`, also `python -m replicate`).

Every command is an entry module with a `main(argv)` (`python -m <module>` runs the same); this module only
lists them, prints help without importing them (no torch until a command runs), and dispatches. One argument
style: Hydra `key=value` overrides (with `-m` sweeps for `run`), paths positional, a few flags.
`python -m replicate key=value ...` (the form before subcommands) is `replicate run key=value ...`.

What every entry point shares (`user_errors`): the project's own user errors (`replicate.errors.UserError`: a
bad value, a damaged file, a missing resource, each naming the value and the fix) end the command with one
line, `error: ...`, exit status 2; any other exception is a bug or an unforeseen failure and keeps its
traceback (`REPLICATE_TRACEBACK=1` shows it for user errors too). Progress and status messages go through
`logging` (INFO and up on stderr, unless logging is set up already, e.g. by Hydra).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from replicate.errors import UserError

USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)


def user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run `function`; a UserError prints `error: <message>` on stderr and exits with status 2."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not logging.getLogger().handlers:  # Hydra apps arrive with their logging set up
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get("REPLICATE_TRACEBACK") not in (None, "", "0"):
                raise
            print(
                f"error: {error or type(error).__name__}  [REPLICATE_TRACEBACK=1 shows where]",
                file=sys.stderr,
            )
            sys.exit(2)

    return wrapper


@dataclass(frozen=True)
class Command:
    module: str  # its `main(argv)` runs the command (in the module, or in its package's __main__)
    summary: str
    hydra_config: str | None = None  # a Hydra app's root config (conf/<name>.yaml); None: an argparse command


COMMANDS: dict[str, Command] = {
    "run": Command(
        "replicate.run", "decode a model/task/method into a run directory (-m: a sweep)", "config"
    ),
    "report": Command(
        "replicate.report", "write the paper tables of run directories (report.md, report.csv)"
    ),
    "rescore": Command("replicate.rescore", "score finished runs again without decoding"),
    "bench": Command(
        "replicate.bench", "cost profile, cost model, parity, peers, memory (outputs/bench/)", "bench"
    ),
    "search": Command(
        "replicate.search",
        "search a model's skip set (Bayesian optimization; rerun resumes)",
        "search_config",
    ),
    "lossless": Command(
        "replicate.lossless", "check that greedy methods equal autoregressive decoding; --decoder: yours"
    ),
    "gpu-check": Command(
        "replicate.gpu_check", "check a CUDA machine in ten minutes; --rehearse: on the CPU"
    ),
    "experiment": Command("replicate.experiment", "the paper's tables: list, plan, check, run"),
    "numerics": Command("replicate.numerics", "how far multi-token passes move logits (ulps of the dtype)"),
    "demo": Command("replicate.demo", "SmolLM2 on a few HumanEval prompts, all three methods, one table"),
}
HYDRA_FLAGS = """Hydra flags:
  -m, --multirun        run a sweep: every comma-separated value (key=a,b) is a job; every job's config
                        is checked before the first one runs
  --cfg job             print the composed config and exit
  --hydra-help          Hydra's own help
Overrides: key=value for a key the config has; +key=value only for a key it lacks (a misspelt key is
refused with the closest known one, with or without +); group=option picks a file of conf/<group>/."""


def main_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: replicate <command> [options] [key=value ...]",
        "",
        "Self-speculative decoding (Draft & Verify, Zhang et al., ACL 2024): a lossless, measured reference.",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        "`replicate <command> --help` lists a command's options with their defaults.",
        "`replicate key=value ...` (and `python -m replicate key=value ...`) is `replicate run key=value ...`.",
    ]
    return "\n".join(lines)


def _defaults(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        lines = []
        for key, value in node.items():
            lines += _defaults(value, f"{prefix}.{key}" if prefix else str(key))
        return lines or [f"{prefix}={{}}"]
    text = "null" if node is None else str(node).replace("True", "true").replace("False", "false")
    return [f"{prefix}={text}"]


def hydra_help(name: str, command: Command) -> str:
    """The help of a Hydra command: its groups with their options, then every key with its default."""
    from omegaconf import OmegaConf

    from replicate.arguments import group_options
    from replicate.overrides import compose_config

    cfg = compose_config([], command.hydra_config, with_hydra=True)
    choices = {  # the groups a user picks (not Hydra's own, nor a group placed under another key with @)
        group: choice
        for group, choice in cfg.hydra.runtime.choices.items()
        if not group.startswith("hydra") and "@" not in group
    }
    data = OmegaConf.to_container(cfg, resolve=False)
    del data["hydra"]
    lines = [
        f"usage: replicate {name} [-m] [key=value ...]",
        "",
        command.summary,
        "",
        "groups (group=option):",
    ]
    for group, choice in choices.items():
        lines.append(f"  {group}={choice}  (options: {', '.join(group_options(group))})")
    lines += ["", f"keys and their defaults (conf/{command.hydra_config}.yaml; groups as chosen above):"]
    lines += [f"  {line}" for line in _defaults(data)]
    return "\n".join([*lines, "", HYDRA_FLAGS])


def entry_point(command: Command) -> Callable[..., Any]:
    """The command's `main`: in its module, else in the module's package `__main__`."""
    module = importlib.import_module(command.module)
    if not hasattr(module, "main"):
        module = importlib.import_module(f"{command.module}.__main__")
    return module.main


def _unknown_command(name: str) -> str:
    close = difflib.get_close_matches(name, list(COMMANDS), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"replicate: unknown command {name!r}{hint} (commands: {', '.join(COMMANDS)}; `replicate --help`)"


def _is_legacy_run(argument: str) -> bool:
    """`python -m replicate key=value` / `-m ...`: the run command's arguments without the command."""
    return ("=" in argument and not argument.startswith("-")) or argument in ("-m", "--multirun", "--cfg")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(main_help())
        return 0 if argv else 2
    name, arguments = argv[0], argv[1:]
    if name not in COMMANDS:
        if not _is_legacy_run(name):
            print(_unknown_command(name), file=sys.stderr)
            return 2
        name, arguments = "run", argv
    command = COMMANDS[name]
    if command.hydra_config is not None and any(a in ("-h", "--help") for a in arguments):
        print(user_errors(hydra_help)(name, command))
        return 0
    if command.hydra_config is None and any(a in ("-h", "--help") for a in arguments):
        from replicate.arguments import PARSERS

        PARSERS[name]().parse_args(["--help"])  # prints and exits 0, without importing the command
    status = entry_point(command)(arguments)
    return status if isinstance(status, int) else 0


def console() -> None:
    """The `replicate` console script."""
    sys.exit(main())
