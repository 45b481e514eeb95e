"""Output is never destroyed or rewritten from bad data (issue 21): `report` refuses a directory without runs,
a damaged run file (named) and any file it did not write; `rescore` refuses samples that are not the run's;
a failed run leaves no files that look like results."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from replicate.config import compose_config
from replicate.report.write import main as report_main
from replicate.rescore import main as rescore_main
from replicate.run.runner import run
from replicate.schema import ConfigError


def tiny_cfg(*overrides: str):
    base = ["model=tiny_llama", "task=humaneval", "n_samples=3", "max_new_tokens=4", "method=autoregressive"]
    return compose_config([*base, *overrides])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    """Two finished runs on the same prompts (other seeds), written once for the module."""
    root = tmp_path_factory.mktemp("finished")
    run(tiny_cfg(), root / "a")
    run(tiny_cfg("seed=7", "max_new_tokens=5"), root / "b")
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture
def run_dir(finished, tmp_path) -> Path:
    """A copy of finished run `a`, to damage."""
    return Path(shutil.copytree(finished["a"], tmp_path / "run"))


def contents(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def refused(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# ---- report ----


def test_report_refuses_an_empty_directory(capsys, tmp_path):
    assert "holds no run directories" in refused(capsys, report_main, [str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_report_never_overwrites_a_gpu_check_report(capsys, tmp_path):
    """A gpu-check output directory: its own report.md and results.json, no runs; then the same files beside
    a run (or as --out): refused, naming the file, and nothing changes."""
    check = tmp_path / "gpu-check"
    check.mkdir()
    (check / "report.md").write_text("# GPU check\n")
    (check / "results.json").write_text("{}\n")
    before = contents(check)
    assert "holds no run directories" in refused(capsys, report_main, [str(check)])
    assert contents(check) == before


def test_report_never_overwrites_a_file_it_did_not_write(capsys, run_dir, tmp_path):
    (run_dir / "report.md").write_text("# my notes\n")
    before = contents(run_dir)
    err = refused(capsys, report_main, [str(run_dir)])
    assert "report.md, not written by replicate report" in err and "--out" in err
    assert contents(run_dir) == before
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "figures").mkdir()
    (out / "figures" / "mine.png").write_bytes(b"png")
    assert "figures/mine.png" in refused(capsys, report_main, [str(run_dir), "--out", str(out)])


def test_report_rewrites_its_own_report(run_dir):
    report_main([str(run_dir)])
    manifest = json.loads((run_dir / "report.manifest.json").read_text())
    assert {"report.md", "report.csv"} <= set(manifest["files"]) and manifest[
        "written_by"
    ] == "replicate report"
    report_main([str(run_dir)])  # its own files: rewritten without complaint
    assert (run_dir / "report.md").read_text().startswith("# Replication report:")


@pytest.mark.parametrize("name,damage,message", [
    ("samples.jsonl", lambda text: text.replace("{", "{garbled", 1), r"samples.jsonl:1 is not valid JSON"),
    ("metrics.json", lambda text: text[: len(text) // 2], r"metrics.json is not valid JSON"),
    ("metrics.json", lambda text: "", r"metrics.json is not valid JSON"),
])  # fmt: skip
def test_report_refuses_a_damaged_run_naming_the_file(capsys, run_dir, name, damage, message):
    path = run_dir / name
    path.write_text(damage(path.read_text()))
    before = contents(run_dir)
    err = refused(capsys, report_main, [str(run_dir.parent)])
    assert "damaged run file" in err and str(path) in err
    assert re.search(message, err)
    assert contents(run_dir) == before and not (run_dir.parent / "report.md").exists()


# ---- rescore ----


def test_rescore_refuses_a_run_missing_its_last_sample(capsys, run_dir):
    samples = run_dir / "samples.jsonl"
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:-1]))
    before = contents(run_dir)
    err = refused(capsys, rescore_main, [str(run_dir)])
    assert str(samples) in err and "missing ['HumanEval/2']" in err
    assert contents(run_dir) == before


def test_rescore_refuses_another_runs_samples(capsys, run_dir, finished):
    shutil.copy(finished["b"] / "samples.jsonl", run_dir / "samples.jsonl")
    before = contents(run_dir)
    err = refused(capsys, rescore_main, [str(run_dir)])
    assert "is not the file" in err and "new_tokens 12 there, 15 from the samples" in err
    assert contents(run_dir) == before


def test_rescore_refuses_settings_that_do_not_match_the_fingerprint(capsys, run_dir, finished):
    shutil.copy(finished["b"] / "config.yaml", run_dir / "config.yaml")
    before = contents(run_dir)
    assert "describe different runs" in refused(capsys, rescore_main, [str(run_dir)])
    assert contents(run_dir) == before


def test_rescore_refuses_a_damaged_or_unfinished_run(capsys, run_dir, tmp_path):
    (run_dir / "metrics.json").write_text('{"model": ')
    assert "metrics.json is not valid JSON" in refused(capsys, rescore_main, [str(run_dir)])
    assert "has no metrics.json" in refused(capsys, rescore_main, [str(tmp_path)])


def test_rescore_accepts_its_own_run(finished, tmp_path):
    copy = Path(shutil.copytree(finished["a"], tmp_path / "ok"))
    assert rescore_main([str(copy)]) == 0


# ---- a failed run leaves nothing that looks like results ----


def test_a_run_that_fails_before_its_first_sample_leaves_no_files(monkeypatch, tmp_path):
    import replicate.run.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("weights unreadable (test)")

    monkeypatch.setattr(runner, "load_model", broken)
    with pytest.raises(RuntimeError, match="weights unreadable"):
        run(tiny_cfg(), tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


def test_a_run_refused_on_resume_keeps_what_it_had(run_dir):
    (run_dir / "metrics.json").unlink()
    before = contents(run_dir)
    with pytest.raises(ConfigError, match=r"other settings or data \(seed differ"):
        run(tiny_cfg("seed=3"), run_dir)
    assert contents(run_dir) == before
