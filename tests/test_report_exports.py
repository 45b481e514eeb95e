"""The report's exports: Spec-Bench answer files with both speedup definitions, and the W&B Report built as
code, whose spec is written offline without network or login."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from replicate.records import DecodeRecord, DecodeResult, SampleRecord
from replicate.report.spec_bench import accept_lengths, mean_tokens_per_second
from replicate.report.write import main
from tests.test_report import fake_decode, fake_record, make_run


def decode(tokens: int, seconds: float, accepted: list[int]) -> DecodeRecord:
    drafted = [4] * len(accepted)
    result = DecodeResult(
        list(range(tokens)),
        0.1,
        seconds,
        len(accepted) + 1,
        sum(drafted),
        drafted,
        accepted,
        [0.6] * len(accepted),
    )
    return DecodeRecord.from_result(result, text="x" * tokens, prediction="", scores={})


def sample(index: int, method: DecodeRecord, baseline: DecodeRecord) -> SampleRecord:
    return SampleRecord(
        index=index, id=f"s{index}", seed=0, prompt_tokens=10, prompt_truncated=False, method=method,
        baseline=baseline, identical=True, first_difference=None, baseline_margin=None, decoder_state={"threshold": 0.6},
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exports") / "sweep"
    # Per-sample rates differ, so the two speedup definitions differ: Spec-Bench (2 + 4) / 2 over 4/3 = 2.25,
    # ours (0.75 + 0.75) / 2 over (0.5 + 0.25) / 2 = 2.0.
    records = [
        sample(0, decode(2, 1.0, [0]), decode(2, 1.5, [])),
        sample(1, decode(4, 1.0, [3, 3]), decode(4, 3.0, [])),  # the second cycle is cut by the budget
    ]
    table3 = ["experiment=table3", "model=llama2_13b", "logger=wandb", "logger.entity=my-team"]
    make_run(
        root,
        "table3/adaptive",
        [*table3, "experiment.row=adaptive"],
        {"speedup": 2.0, "acceptance": 0.9, "score": 0.1},
        records,
    )
    (root / "table3/adaptive/tracking.json").write_text(json.dumps({"status": "ok", "id": "abc123"}))
    make_run(
        root,
        "table3/fixed_2",
        [*table3, "experiment.row=fixed_2"],
        {"speedup": 1.3, "acceptance": 0.93, "score": 0.107},
    )
    make_run(root, "adhoc/ar", ["model=tiny_llama", "method=autoregressive"], {"speedup": 1.0, "acceptance": None, "score": 0.0}, [
        SampleRecord(0, "s0", 0, 10, False, fake_decode(2, 1.0, []), None, None, None, None, {}),
        SampleRecord(1, "s1", 0, 10, False, fake_decode(2, 1.0, []), None, None, None, None, {}),
    ])  # fmt: skip
    make_run(
        root, "table3/fixed_4", [*table3, "experiment.row=fixed_4"], None, [fake_record(0, [0.6])]
    )  # unfinished
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_accept_lengths_add_up_to_the_new_tokens():
    assert accept_lengths(decode(4, 1.0, [3, 3])) == [1, 3]  # prefill 1, then 3 + 1 cut to the budget
    assert accept_lengths(decode(9, 1.0, [3, 3])) == [1, 4, 4]
    assert accept_lengths(decode(1, 1.0, [])) == [1]


def test_spec_bench_files_and_both_speedups(runs, capsys):
    main([str(runs), "--spec-bench"])
    printed = capsys.readouterr().out
    directory = runs / "spec_bench"
    method = read_jsonl(directory / "llama2_13b-table3_adaptive.jsonl")
    baseline = read_jsonl(directory / "llama2_13b-vanilla-table3_adaptive.jsonl")
    assert [line["question_id"] for line in method] == ["s0", "s1"] and method[0]["category"] == "cnndm"
    choice = method[1]["choices"][0]
    assert choice["turns"] == ["xxxx"] and choice["new_tokens"] == [4] and choice["wall_time"] == [1.0]
    assert choice["decoding_steps"] == [3] and sum(choice["accept_lengths"]) == 4
    assert baseline[1]["choices"][0]["accept_lengths"] == [1, 1, 1, 1]  # the baseline: one token per step
    assert mean_tokens_per_second(method) / mean_tokens_per_second(baseline) == pytest.approx(2.25)
    row = next(line for line in printed.splitlines() if line.startswith("| table3/adaptive"))
    assert "| 2.250 | 2.000 |" in row
    assert (directory / "tiny_llama-adhoc_ar.jsonl").exists()
    baseline_row = next(line for line in printed.splitlines() if line.startswith("| adhoc/ar"))
    assert "| autoregressive | 2 | 1.000 | 1.000 |" in baseline_row  # the baseline is its own baseline
    assert not list(directory.glob("*fixed_4*"))  # unfinished: nothing to compare


def test_wandb_report_spec_is_written_offline_without_network(runs, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("the offline W&B report touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    main([str(runs), "--wandb-report"])  # entity from the runs' logger config
    assert "W&B report spec:" in capsys.readouterr().out
    report = json.loads((runs / "wandb_report.json").read_text())
    assert report["entity"] == "my-team" and report["project"] == "self-speculative-decoding"
    blocks = report["spec"]["blocks"]
    headings = [block["children"][0]["text"] for block in blocks if block["type"] == "heading"]
    assert headings[0].startswith("Table 3:") and headings[-1] == "Other runs"
    markdown = next(block["content"] for block in blocks if block["type"] == "markdown-block")
    assert "1.57" in markdown and "missing" in markdown  # the paper's adaptive speedup; K=6 has no run
    grid = next(block for block in blocks if block["type"] == "panel-grid")
    text = json.dumps(grid)
    assert '"abc123"' in text and "paper/speedup" in text and "threshold_trace_table" in text


def test_wandb_report_needs_an_entity(tmp_path):
    make_run(
        tmp_path,
        "run",
        ["model=tiny_llama", "method=autoregressive"],
        {"speedup": 1.0, "acceptance": None, "score": 0.0},
    )
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--wandb-report"])
