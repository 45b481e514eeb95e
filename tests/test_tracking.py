"""W&B tracking: offline it writes the run into the run directory: summary keys for the headline statistics
(with the paper's numbers), the per-sample table, native charts and one artifact of the run's files; a
failure of W&B is a loud warning recorded in tracking.json, never a lost or failed run."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from replicate.config import compose_config, run_config
from replicate.run import rundir
from replicate.tracking import TRACKING_FILE, log_run, run_and_track, sample_rows, summary_values
from tests.test_report import fake_metrics, fake_record
from tests.wandb_records import offline_run


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network, whatever the caller's environment
    monkeypatch.setenv("WANDB_SILENT", "true")


def table_files(run_dir, name):
    return list(run_dir.glob(f"wandb/offline-run-*/files/media/table/**/{name}_*.table.json"))


def test_offline_wandb_writes_summary_keys_charts_and_the_artifact(tmp_path):
    cfg = compose_config(["experiment=table3", "experiment.row=adaptive", "logger=wandb"])
    config = OmegaConf.to_container(cfg, resolve=True)
    metrics = fake_metrics(config, speedup=1.5, acceptance=0.92, score=0.108)
    records = [fake_record(0, [0.6, 0.59, 0.58]), fake_record(1, [0.58, 0.6])]
    rundir.write_metrics(tmp_path, metrics)
    rundir.rewrite_samples(tmp_path, records)
    (tmp_path / rundir.CONFIG_FILE).write_text(OmegaConf.to_yaml(config))
    log_run(run_config(cfg), tmp_path, metrics, records)

    outcome = json.loads((tmp_path / TRACKING_FILE).read_text())
    assert outcome["status"] == "ok" and outcome["mode"] == "offline"
    logged = offline_run(tmp_path)
    summary = logged["summary"]
    assert summary["speedup"] == 1.5 and summary["speedup_ci_low"] == pytest.approx(1.4)
    assert summary["acceptance_rate"] == 0.92 and summary["identical_fraction"] == 1.0
    assert summary["rouge2"] == summary["score"] == 0.108 and summary["metric"] == "rouge2"
    assert summary["predicted_speedup"] is None  # no cost model in this run: None, never 0
    assert summary["paper/speedup"] == 1.57 and summary["paper/acceptance"] == 0.919
    (artifact,) = [artifact for artifact in logged["artifacts"] if artifact["type"] == "run-results"]
    assert artifact["type"] == "run-results" and artifact["name"].startswith("llama2_13b-cnndm-adaptive")
    assert artifact["files"] == ["config.yaml", "metrics.json", "samples.jsonl"]
    assert artifact["metadata"]["speedup"] == 1.5
    assert logged["tables"] == ["sample_speedup_table", "samples", "threshold_trace_table"]
    samples = json.loads(table_files(tmp_path, "samples")[0].read_text())
    assert samples["columns"][:3] == ["index", "id", "new_tokens"] and len(samples["data"]) == 2
    assert samples["data"][0][5] == pytest.approx(1.5)  # per-sample speedup: (1.5 / 2) / (1.0 / 2)
    trace = json.loads(table_files(tmp_path, "threshold_trace")[0].read_text())
    assert [row[2] for row in trace["data"]] == [0.6, 0.59, 0.58, 0.58, 0.6]
    assert not list(tmp_path.glob("wandb/offline-run-*/files/media/images/*.png"))  # native charts only


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


def test_the_cli_run_logs_after_writing_its_files(tmp_path, caplog, capsys):
    """`python -m replicate ... logger=wandb` offline: the run's files, then an artifact of them and the
    headline summary keys in its W&B directory; progress on a bar and in the log."""
    overrides = ["model=tiny_llama", "task=humaneval", "method=adaptive_draft_exit", "logger=wandb"]
    cfg = compose_config([*overrides, "n_samples=2", "max_new_tokens=4", "warmup.runs=0"])
    with caplog.at_level("INFO", logger="replicate.run.runner"):
        metrics = run_and_track(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["speedup"] == metrics.speedup
    assert json.loads((tmp_path / TRACKING_FILE).read_text())["status"] == "ok"
    logged = offline_run(tmp_path)
    assert logged["summary"]["speedup"] == metrics.speedup
    assert logged["summary"]["pass@1"] == metrics.score and "acceptance_rate" in logged["summary"]
    results = [artifact["files"] for artifact in logged["artifacts"] if artifact["type"] == "run-results"]
    assert results == [["config.yaml", "metrics.json", "samples.jsonl"]]
    assert len(table_files(tmp_path, "samples")) == 1
    runner = [record for record in caplog.records if record.name == "replicate.run.runner"]
    progress = [record.getMessage()[:5] for record in runner if record.levelname == "INFO"]
    assert progress == ["[1/2]", "[2/2]"]
    warnings = [record.getMessage() for record in runner if record.levelname == "WARNING"]
    assert warnings == ["warning: method.max_draft_tokens=12 cannot take effect with max_new_tokens=4: a cycle "
                        "never drafts past the token budget"]  # fmt: skip
    assert "2/2" in capsys.readouterr().err  # the progress bar
