"""W&B tracking: offline it writes the run, its per-sample and speedup tables and figures into the run
directory; a failure of W&B is a loud warning recorded in tracking.json, never a lost or failed run."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from replicate.config import compose_config, run_config
from replicate.tracking import TRACKING_FILE, log_run, run_and_track, sample_rows, summary_values
from tests.test_report import fake_metrics, fake_record


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network, whatever the caller's environment
    monkeypatch.setenv("WANDB_SILENT", "true")


def table_files(run_dir, name):
    return list(run_dir.glob(f"wandb/offline-run-*/files/media/table/{name}_*.table.json"))


def test_offline_wandb_writes_the_tables_and_figures(tmp_path):
    cfg = compose_config(["experiment=table3", "experiment.row=adaptive", "logger=wandb"])
    config = OmegaConf.to_container(cfg, resolve=True)
    metrics = fake_metrics(config, speedup=1.5, acceptance=0.92, score=0.108)
    records = [fake_record(0, [0.6, 0.59, 0.58]), fake_record(1, [0.58, 0.6])]
    log_run(run_config(cfg), tmp_path, metrics, records)

    outcome = json.loads((tmp_path / TRACKING_FILE).read_text())
    assert outcome["status"] == "ok" and outcome["mode"] == "offline"
    assert len(list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    samples = json.loads(table_files(tmp_path, "samples")[0].read_text())
    assert samples["columns"][:3] == ["index", "id", "new_tokens"] and len(samples["data"]) == 2
    assert samples["data"][0][5] == pytest.approx(1.5)  # per-sample speedup: (1.5 / 2) / (1.0 / 2)
    speedup = json.loads(table_files(tmp_path, "speedup")[0].read_text())
    row = dict(zip(speedup["columns"], speedup["data"][0]))
    assert row["speedup"] == 1.5 and row["paper_speedup"] == 1.57 and row["paper_acceptance"] == 0.919
    images = list(tmp_path.glob("wandb/offline-run-*/files/media/images/*.png"))
    assert len(images) == 2  # threshold over cycles, per-sample speedup


def test_a_wandb_failure_never_loses_the_run(tmp_path, monkeypatch):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError("no route to api.wandb.ai")

    monkeypatch.setattr(wandb, "init", broken_init)
    cfg = run_config(compose_config(["model=tiny_llama", "logger=wandb"]))
    (tmp_path / "metrics.json").write_text("{}")
    metrics = fake_metrics(cfg.to_dict(), speedup=1.0, acceptance=None, score=0.0)
    with pytest.warns(UserWarning, match="tracking failed.*no route"):
        log_run(cfg, tmp_path, metrics, [])
    outcome = json.loads((tmp_path / TRACKING_FILE).read_text())
    assert (
        outcome["status"] == "failed"
        and "no route" in outcome["error"]
        and "Traceback" in outcome["traceback"]
    )
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_no_tracker_by_default(tmp_path):
    cfg = run_config(compose_config(["model=tiny_llama"]))
    log_run(cfg, tmp_path, fake_metrics(cfg.to_dict(), speedup=1.0, acceptance=None, score=0.0), [])
    assert not any(tmp_path.iterdir())


def test_summary_and_sample_rows():
    summary = summary_values(
        {"speedup": 1.2, "speedup_ci": [1.1, 1.3], "environment": {"device": "cpu"}, "x": [1]}
    )
    assert summary == {
        "speedup": 1.2,
        "speedup_ci_low": 1.1,
        "speedup_ci_high": 1.3,
        "environment/device": "cpu",
    }
    record = fake_record(0, [0.6])
    record.method.scores, record.method.prediction = {"rouge2": 0.1}, "x" * 50
    columns, rows = sample_rows([record], max_text_chars=10)
    assert columns[-2:] == ["score/rouge2", "prediction"] and rows[0][-2:] == [0.1, "x" * 10]


def test_the_cli_run_logs_after_writing_its_files(tmp_path):
    overrides = ["model=tiny_llama", "task=humaneval", "method=adaptive_draft_exit", "logger=wandb"]
    cfg = compose_config([*overrides, "n_samples=1", "max_new_tokens=4", "warmup.runs=0"])
    metrics = run_and_track(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["speedup"] == metrics.speedup
    assert json.loads((tmp_path / TRACKING_FILE).read_text())["status"] == "ok"
    assert len(table_files(tmp_path, "samples")) == 1
