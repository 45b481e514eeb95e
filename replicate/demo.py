"""`make demo`: SmolLM2-135M on a few HumanEval prompts with all three methods, one table at the end.

Settings live in conf/experiment/demo.yaml; extra arguments are Hydra overrides (e.g. n_samples=2)."""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from replicate.arguments import demo_parser
from replicate.cli import user_errors

logger = logging.getLogger(__name__)


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    from replicate.config import run_config
    from replicate.overrides import compose_config
    from replicate.run.runner import format_table, run

    overrides = demo_parser().parse_args(sys.argv[1:] if argv is None else argv).overrides
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    root = Path("outputs") / "demo" / stamp
    methods = compose_config(["experiment=demo", *overrides]).experiment.methods
    configs = {  # every method's config checked before the first one decodes
        method: run_config(compose_config(["experiment=demo", f"method={method}", *overrides]))
        for method in methods
    }
    rows = []
    for method, config in configs.items():
        logger.info("== %s ==", method)
        rows.append(run(config, root / method))
    print("\n" + format_table(rows))
    environment = rows[0].environment
    print(
        f"device: {environment['device']} ({environment['cpu']}), torch threads: {environment['torch_threads']}"
    )
    print(f"results: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
