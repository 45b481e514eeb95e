"""Small builders shared by the tests."""

from __future__ import annotations

from replicate.lossless.reference import TinyModel, tiny_model

__all__ = ["TinyModel", "tiny_model"]


def config_bootstrap():
    """The bootstrap settings of conf/config.yaml (what a run uses)."""
    from replicate.config import compose_config, run_config

    return run_config(compose_config([])).bootstrap


def task_config(name: str, **overrides) -> dict:
    """`conf/task/<name>.yaml` as composed (its bootstrap included), top-level values replaced by `overrides`."""
    from replicate.config import compose_config
    from replicate.schema import plain

    return {**plain(compose_config([f"task={name}"]).task), **overrides}
