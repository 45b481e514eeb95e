"""Launching: an experiment end to end through the submitit local launcher (2 tiny jobs, then the report), a
killed multirun job resuming without duplicate or lost samples, a fast failure on a machine without what the
experiment needs, the Makefile targets, and the lossless check's divergence finder."""

from __future__ import annotations

import csv
import dataclasses
import json
import runpy
import subprocess
import sys

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from replicate import experiment
from replicate.lossless import first_divergence
from replicate.records import DecodeRecord, DecodeResult
from tests.test_report import fake_record

TINY = ["model=tiny_llama", "task=humaneval", "n_samples=1", "max_new_tokens=4", "warmup.runs=0"]


def test_an_experiment_runs_through_the_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        *TINY,
        "method.max_draft_tokens=2,4",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
    ]
    assert experiment.run_experiment("table10", overrides, smoke=False, sweep_dir=sweep) == 0
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit
    for k in (2, 4):
        metrics = json.loads((sweep / "tiny_llama" / f"k{k}" / "metrics.json").read_text())
        assert metrics["identical_fraction"] == 1.0 and metrics["n_samples"] == 1
    with open(sweep / "report.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["status"] for line in lines] == ["missing"] * 5 + ["ok, not in the paper"] * 2
    assert [line["K"] for line in lines[-2:]] == ["2", "4"]


def multirun(monkeypatch, *overrides: str) -> None:
    """`python -m replicate -m <overrides>`, in this process (Hydra's basic launcher runs jobs in-process, so
    nothing is imported again)."""
    monkeypatch.setattr(sys, "argv", ["replicate", "-m", *overrides])
    GlobalHydra.instance().clear()
    try:
        runpy.run_module("replicate", run_name="__main__")  # exactly as `python -m replicate`
    finally:
        GlobalHydra.instance().clear()


def test_a_killed_multirun_job_resumes_without_duplicates_or_losses(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    arguments = [*TINY, "n_samples=2", "method=autoregressive,self_speculative", f"hydra.sweep.dir={sweep}"]
    multirun(monkeypatch, *arguments)
    killed = sweep / "1_tiny_llama_humaneval_self_speculative"
    finished = (sweep / "0_tiny_llama_humaneval_autoregressive" / "samples.jsonl").read_text()
    first_line = (killed / "samples.jsonl").read_text().splitlines()[0]
    (killed / "metrics.json").unlink()  # as if killed while decoding sample 2 of 2
    (killed / "samples.jsonl").write_text(first_line + "\n" + '{"index": 1, "id": "HumanEval/1", "met')
    multirun(monkeypatch, *arguments)
    records = [json.loads(line) for line in (killed / "samples.jsonl").read_text().splitlines()]
    assert [record["id"] for record in records] == ["HumanEval/0", "HumanEval/1"]
    assert json.loads(first_line) == records[0]  # the finished sample was kept, not decoded again
    assert json.loads((killed / "metrics.json").read_text())["n_samples"] == 2
    assert (sweep / "0_tiny_llama_humaneval_autoregressive" / "samples.jsonl").read_text() == finished


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_paper_experiment_fails_at_once_without_gpu_or_weights(tmp_path, monkeypatch, capsys):
    def no_launch(*args, **kwargs):
        raise AssertionError("nothing may be launched when requirements are missing")

    monkeypatch.setattr(subprocess, "run", no_launch)
    assert experiment.run_experiment("table1", [], smoke=False, sweep_dir=tmp_path / "sweep") == 2
    message = capsys.readouterr().err
    assert "needs a CUDA GPU" in message and "llama2_70b" in message and "SMOKE=1" in message
    assert "not (completely) in the Hugging Face cache" in message or "hub refused" in message
    assert not (tmp_path / "sweep").exists()
    assert experiment.main(["check", "table2"]) == 2


def test_make_targets_call_the_experiment_launcher():
    output = subprocess.run(
        ["make", "-n", "replicate-table1", "replicate-table2", "replicate", "EXP=table3", "SMOKE=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("table1", "table2", "table3"):
        assert f"bin/replicate experiment run {name} --smoke" in output
    help_text = subprocess.run(["make", "help"], capture_output=True, text=True, check=True).stdout
    assert "replicate-table1" in help_text and "replicate " in help_text


def test_the_lossless_check_names_the_first_divergence():
    def decode(tokens):
        return DecodeRecord.from_result(DecodeResult(tokens, 0.1, 1.0, len(tokens)))

    same = fake_record(0, [0.6])
    different = dataclasses.replace(
        fake_record(1, [0.6]), id="HumanEval/3", identical=False, first_difference=1, baseline_margin=0.002,
        method=decode([5, 6, 7]), baseline=decode([5, 9, 7]),
    )  # fmt: skip
    assert first_divergence([same]) is None
    assert first_divergence([same, different, different]) == {
        "index": 1, "id": "HumanEval/3", "position": 1, "method_token": 6, "baseline_token": 9,
        "baseline_margin": 0.002,
    }  # fmt: skip
