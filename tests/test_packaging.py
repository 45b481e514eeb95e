"""Packaging and self-containment: pyproject.toml lists every package and ships every config and data file,
declares exactly the third-party packages the code imports, the offline data ship inside `tasks`, and the
config tree and git commit are found the same way in a checkout and in an installed copy.

The real `pip install .` into a fresh virtual environment is `.ci/check-install` (run by `.ci/run` and CI)."""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import tasks
from replicate import paths
from replicate.run import environment
from tasks.base import SHIPPED_DATA_DIR
from tasks.summarization import DataUnavailableError

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"replicate", "tasks", "tests", "studies"}
# The sandbox's bootstrap runs as a script inside the sandbox and imports its sibling modules by file name.
FIRST_PARTY |= {path.stem for path in (ROOT / "tasks" / "sandbox").glob("*.py")}
# Declared, never imported by the project, and needed all the same: another package loads them.
RUNTIME_ONLY = {
    "accelerate": "transformers needs it for device_map='auto'",
    "hydra-submitit-launcher": "the Hydra plugin behind hydra/launcher=slurm (and submitit_local)",
    "nltk": "rouge_score's Porter stemmer; the declared floor bounds the stemmer that produces the score",
}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; only these tests need it
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _subdirectories(top: Path) -> list[Path]:
    return [
        path
        for path in sorted(top.rglob("*"))
        if path.is_dir() and path.name != "__pycache__" and not path.name.startswith(".")
    ]


def _expected_packages() -> dict[str, Path]:
    """Package name -> source directory, from the tree: code packages have an __init__.py; every directory
    of conf/ (installed as replicate.conf) and of tasks/data holds data and must be a listed package too."""
    expected = {}
    for top in ("replicate", "tasks"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            directory = init.parent
            expected[".".join(directory.relative_to(ROOT).parts)] = directory
    for top, name in ((ROOT / "conf", "replicate.conf"), (ROOT / "tasks" / "data", "tasks.data")):
        expected[name] = top
        for directory in _subdirectories(top):
            expected[".".join((name, *directory.relative_to(top).parts))] = directory
    return expected


def test_pyproject_lists_every_package_of_the_source_tree(pyproject):
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    expected = set(_expected_packages())
    assert listed == expected, (
        f"pyproject.toml [tool.setuptools] packages is out of date: add {sorted(expected - listed)}, "
        f"remove {sorted(listed - expected)}"
    )
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"replicate.conf": "conf"}


def test_every_config_and_data_file_is_package_data(pyproject):
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    unshipped = []
    for name, directory in _expected_packages().items():
        globs = package_data.get(name, [])
        for path in sorted(directory.iterdir()):
            # setuptools ships a package's modules by itself; anything else needs a package-data glob
            if (
                path.is_file()
                and path.suffix != ".py"
                and not any(fnmatch.fnmatch(path.name, g) for g in globs)
            ):
                unshipped.append(str(path.relative_to(ROOT)))
    assert not unshipped, f"not shipped by pyproject.toml [tool.setuptools.package-data]: {unshipped}"


def _distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    return {
        _distribution_name(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        for requirement in requirements
    }


def _imported_modules(*tops: str) -> dict[str, set[str]]:
    """Top-level module -> the files importing it (function-level imports included), third-party only."""
    found: dict[str, set[str]] = {}
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    module = name.split(".")[0]
                    if module not in sys.stdlib_module_names and module not in FIRST_PARTY:
                        found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def _distributions_of(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    owners = importlib.metadata.packages_distributions()
    unknown = sorted(module for module in modules if module not in owners)
    assert not unknown, f"imported but not installed (declare them in pyproject.toml): {unknown}"
    return {module: {_distribution_name(owner) for owner in owners[module]} for module in sorted(modules)}


# Imported only by a module that needs an optional extra, and declared in that extra.
EXTRA_ONLY = {"pytest": ("testing", "replicate/testing.py")}


def test_every_imported_package_is_declared_and_every_declared_one_is_used(pyproject):
    declared = _declared(pyproject["project"]["dependencies"])
    modules = _imported_modules("replicate", "tasks", "studies")
    for module, (extra, importer) in EXTRA_ONLY.items():
        assert modules.pop(module, set()) <= {importer}, f"{module} is imported beyond {importer}"
        assert module in _declared(pyproject["project"]["optional-dependencies"][extra])
    imported = _distributions_of(modules)
    undeclared = {module: sorted(owners) for module, owners in imported.items() if not owners & declared}
    assert not undeclared, f"imported by replicate/ or tasks/ but not in [project] dependencies: {undeclared}"
    used = set().union(*imported.values())
    unused = sorted(declared - used - set(RUNTIME_ONLY))
    assert not unused, (
        f"declared in [project] dependencies but never imported: {unused}; drop them, or add them to "
        f"RUNTIME_ONLY here with the reason when another package loads them"
    )
    assert set(RUNTIME_ONLY) <= declared


def test_the_tests_need_only_the_dev_extra_beyond_the_dependencies(pyproject):
    declared = _declared(pyproject["project"]["dependencies"]) | _declared(
        pyproject["project"]["optional-dependencies"]["dev"]
    )
    imported = _distributions_of(_imported_modules("tests"))
    undeclared = {module: sorted(owners) for module, owners in imported.items() if not owners & declared}
    assert not undeclared, f"imported by tests/ but declared nowhere: {undeclared}"


def test_evaluate_is_not_a_dependency(pyproject):
    # ROUGE is rouge_score's, as in the paper's notebook (tasks/rouge.py); evaluate.load("rouge") needs
    # the hub.
    assert "evaluate" not in _declared(pyproject["project"]["dependencies"])


def test_the_offline_data_ship_inside_the_tasks_package(monkeypatch):
    monkeypatch.delenv("REPLICATE_DATA_DIR", raising=False)
    assert tasks.data_dir() == SHIPPED_DATA_DIR == Path(tasks.__file__).resolve().parent / "data"
    readme = (SHIPPED_DATA_DIR / "README.md").read_text()
    listed = dict(re.findall(r"\| `([\w/.]+\.jsonl)` \| `([0-9a-f]{64})` \|", readme))
    configured = {
        yaml.safe_load(path.read_text())["offline"]["file"]
        for path in sorted((ROOT / "conf" / "task").glob("*.yaml"))
        if "offline" in yaml.safe_load(path.read_text())
    }
    shipped = {str(path.relative_to(SHIPPED_DATA_DIR)) for path in SHIPPED_DATA_DIR.rglob("*.jsonl")}
    assert configured == {"cnndm/specbench_cnndm_test_80.jsonl", "xsum/xsum_official_subset_79.jsonl"}
    assert configured <= shipped and set(listed) == shipped
    for name, digest in listed.items():  # the README's checksums describe the files that ship
        assert hashlib.sha256((SHIPPED_DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_missing_shipped_data_names_the_directory_and_the_fix(monkeypatch, tmp_path):
    from tests.test_tasks import task_config

    monkeypatch.delenv("REPLICATE_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr("tasks.base.SHIPPED_DATA_DIR", tmp_path)
    monkeypatch.setattr("tasks.summarization.SHIPPED_DATA_DIR", tmp_path)
    with pytest.raises(DataUnavailableError) as caught:
        tasks.load_task(task_config("cnndm")).samples(2)
    message = str(caught.value)
    assert str(tmp_path / "cnndm" / "specbench_cnndm_test_80.jsonl") in message
    assert "reinstall" in message and "REPLICATE_DATA_DIR" in message and "shared" not in message


def test_in_a_checkout_the_config_tree_is_conf_at_the_top():
    assert paths.CONF_DIR == ROOT / "conf"
    assert paths.SOURCE_ROOT == ROOT


def test_an_installed_layout_finds_conf_inside_the_package(tmp_path):
    package = tmp_path / "site-packages" / "replicate"
    (package / "conf").mkdir(parents=True)
    (package / "conf" / "config.yaml").write_text("{}\n")
    assert paths.find_conf_dir(package) == package / "conf"
    assert paths.find_source_root(package) is None


def test_a_missing_or_doubled_config_tree_is_refused(tmp_path):
    package = tmp_path / "replicate"
    package.mkdir()
    with pytest.raises(RuntimeError, match="config tree was not found.*pip install"):
        paths.find_conf_dir(package)
    for directory in (package / "conf", tmp_path / "conf"):
        directory.mkdir()
        (directory / "config.yaml").write_text("{}\n")
    with pytest.raises(RuntimeError, match="two Hydra config trees found"):
        paths.find_conf_dir(package)


def test_no_git_commit_is_recorded_outside_the_projects_own_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "SOURCE_ROOT", None)  # an installed copy
    info = environment.environment(torch.device("cpu"))
    assert info["git_commit"] is None and info["git_dirty"] is None
    # Sources lying inside some other repository must not record that repository's commit.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(environment, "SOURCE_ROOT", tmp_path / "sources")
    (tmp_path / "sources").mkdir()
    info = environment.environment(torch.device("cpu"))
    assert info["git_commit"] is None and info["git_dirty"] is None
