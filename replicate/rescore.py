"""`python -m replicate.rescore <run dir> [<run dir> ...]`: score finished runs again without decoding (see
`replicate.run.scoring.rescore`): after the sandbox or the task's post-processing changed."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from replicate.arguments import rescore_parser
from replicate.cli import user_errors


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    from replicate.run.scoring import rescore

    args = rescore_parser().parse_args(argv)
    for run_dir in args.run_dirs:
        fields = rescore(run_dir)
        print(f"{run_dir}: {fields['metric']} {fields['score']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
