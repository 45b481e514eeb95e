"""`python -m replicate.gpu_check [--rehearse] [key=value ...]`; see `replicate.gpu_check`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from replicate.arguments import gpu_check_parser
from replicate.cli import user_errors


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = gpu_check_parser().parse_args(argv)
    from replicate.gpu_check.config import gpu_check_config
    from replicate.gpu_check.run import run_check

    cfg, settings = gpu_check_config(args.overrides, rehearse=args.rehearse)
    _, status = run_check(cfg, settings, rehearse=args.rehearse)
    return status


if __name__ == "__main__":
    sys.exit(main())
