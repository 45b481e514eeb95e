"""`python -m replicate.gpu_check [--rehearse] [key=value ...]`; see `replicate.gpu_check`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from replicate.cli import user_errors


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicate.gpu_check",
        description="Check a CUDA machine in ten minutes (docs/gpu.md); --rehearse: the same code on the CPU.",
    )
    parser.add_argument(
        "--rehearse", action="store_true", help="tiny shapes on the CPU (conf/gpu_check_rehearse.yaml)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. end_to_end.n_samples=4")
    args = parser.parse_args(argv)
    from replicate.gpu_check.config import gpu_check_config
    from replicate.gpu_check.run import run_check

    cfg, settings = gpu_check_config(args.overrides, rehearse=args.rehearse)
    _, status = run_check(cfg, settings, rehearse=args.rehearse)
    return status


if __name__ == "__main__":
    sys.exit(main())
