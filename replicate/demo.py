"""`make demo`: SmolLM2-135M on a few HumanEval prompts with all three methods, one table at the end.

Settings live in conf/experiment/demo.yaml; extra arguments are Hydra overrides (e.g. n_samples=2)."""

from __future__ import annotations

import datetime
import logging
import sys
from pathlib import Path

from replicate.cli import user_errors
from replicate.config import compose_config
from replicate.run.runner import format_table, run

logger = logging.getLogger(__name__)


@user_errors
def main(overrides: list[str]) -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    root = Path("outputs") / "demo" / stamp
    methods = compose_config(["experiment=demo", *overrides]).experiment.methods
    rows = []
    for method in methods:
        cfg = compose_config(["experiment=demo", f"method={method}", *overrides])
        logger.info("== %s ==", method)
        rows.append(run(cfg, root / method))
    print("\n" + format_table(rows))
    environment = rows[0].environment
    print(
        f"device: {environment['device']} ({environment['cpu']}), torch threads: {environment['torch_threads']}"
    )
    print(f"results: {root}")


if __name__ == "__main__":
    main(sys.argv[1:])
