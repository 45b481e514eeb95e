"""Where the project's files are, in a checkout and in an installed copy alike.

- `CONF_DIR`: the Hydra config tree. In a checkout it is `conf/` at the top level (beside `replicate/`);
  `pip install .` ships the same tree as `replicate/conf` (pyproject.toml maps the package `replicate.conf`
  to `conf/`), because nothing outside the package directory survives an install into site-packages.
- `SOURCE_ROOT`: the checkout the code runs from, or None in an installed copy (there is no checkout, so no
  git commit to record).

The offline evaluation data live in the `tasks` package itself (`tasks.base.SHIPPED_DATA_DIR`).
"""

from __future__ import annotations

from pathlib import Path

from replicate.errors import MissingResource

PACKAGE_DIR = Path(__file__).resolve().parent


def find_conf_dir(package_dir: Path) -> Path:
    """The config tree of the package at `package_dir`: `<package>/conf` when installed, `<package>/../conf`
    in a checkout. Exactly one of them must hold config.yaml."""
    installed, checkout = package_dir / "conf", package_dir.parent / "conf"
    found = [path for path in (installed, checkout) if (path / "config.yaml").is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise MissingResource(
            f"replicate's Hydra config tree was not found: looked for {installed}/config.yaml "
            f"(installed copy) and {checkout}/config.yaml (checkout). Reinstall with `pip install .` from "
            f"a complete checkout, or run from a checkout that has conf/ beside replicate/."
        )
    # Both present means one shadows the other (e.g. a stray copy inside a checkout's package); refuse rather
    # than guess which one the user edits.
    raise MissingResource(
        f"two Hydra config trees found, {installed} (installed layout) and {checkout} (checkout layout): "
        f"a checkout has only conf/ beside replicate/, an installed copy only replicate/conf; remove the "
        f"stray one."
    )


def find_source_root(package_dir: Path) -> Path | None:
    """The checkout holding the package at `package_dir`, or None when it is installed (site-packages has
    no pyproject.toml and no conf/ beside the package)."""
    root = package_dir.parent
    return root if (root / "pyproject.toml").is_file() and (root / "conf").is_dir() else None


CONF_DIR = find_conf_dir(PACKAGE_DIR)
SOURCE_ROOT = find_source_root(PACKAGE_DIR)
