"""`python -m replicate.rescore <run dir> [<run dir> ...]`: score finished runs again without decoding (see
`replicate.run.scoring.rescore`): after the sandbox or the task's post-processing changed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from replicate.cli import user_errors
from replicate.run.scoring import rescore


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replicate.rescore", description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        fields = rescore(run_dir)
        print(f"{run_dir}: {fields['metric']} {fields['score']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
