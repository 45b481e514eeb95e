"""The report on a fixed set of hand-written run directories: a fixed table (golden file), missing runs marked
missing (never zero), unfinished runs incomplete, cost-model columns shown when present and "-" when absent.

The golden file (tests/golden/report.md) pins the whole text of the report: every title, column, value and its
formatting (3 decimals), every missing / incomplete / "-" marker and the order of rows. The values themselves are
not trusted to it alone: `test_the_golden_report_holds_the_hand_written_values` checks, in the golden file, the
cells that come straight from the hand-written metrics below (measured / paper / difference), so a regenerated
golden file that changed them fails too. After an intended change: UPDATE_GOLDEN=1 pytest tests/test_report.py
rewrites the golden file and fails, so that the diff (`git diff tests/golden/report.md`) is reviewed and committed
before the test passes again.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from replicate.config import compose_config
from replicate.errors import DataError
from replicate.metrics_record import CostModelStats, RunMetrics
from replicate.records import DecodeRecord, DecodeResult, SampleRecord
from replicate.report.tables import TABLES, paper_values_for_run, table_rows
from replicate.report.write import find_runs, write_report

GOLDEN = Path(__file__).parent / "golden" / "report.md"
ENVIRONMENT = {
    "date": "2026-01-02T03:04:05+00:00",
    "python": "3.11.9",
    "platform": "Linux",
    "versions": {"torch": "2.13.0", "transformers": "5.23.0"},
    "device": "cuda:0",
    "cpu": "Some CPU",
    "gpu": "NVIDIA A100-SXM4-40GB",
    "gpu_count": 1,
    "torch_threads": 8,
    "git_commit": "0123456789abcdef0123",
    "git_dirty": False,
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fake_metrics(
    config,
    speedup: float,
    acceptance: float | None,
    score: float,
    cost_model: dict | None = None,
    paper_score: float | None = None,
    divergences: dict | None = None,
) -> RunMetrics:
    method = config["method"]["name"]
    adaptive = method == "adaptive_draft_exit"
    cost = None
    if cost_model is not None:
        cost = CostModelStats(
            predicted_speedup=cost_model["predicted_speedup"], efficiency=cost_model.get("efficiency", 0.9),
            overhead_fraction=1 - cost_model.get("efficiency", 0.9), predicted_time_s=1.0, measured_time_s=1.1,
            baseline_efficiency=None, baseline_overhead_fraction=None, speedup_efficiency=None, cost_profile=None,
        )  # fmt: skip
    return RunMetrics(
        model=config["model"]["name"], task=config["task"]["name"], method=method, sampling=config["sampling"],
        max_new_tokens=config["max_new_tokens"], identity_expected=True, n_samples=2, new_tokens=4,
        mean_new_tokens=2.0, tokens_per_s=20.0, mean_accepted_length=3.25, acceptance_rate=acceptance,
        acceptance_rate_ci=None if acceptance is None else [acceptance - 0.05, acceptance + 0.02],
        acceptance_rate_pooled=acceptance, samples_without_drafts=None if acceptance is None else 0,
        speedup=speedup, speedup_ci=[speedup - 0.1, speedup + 0.1], speedup_total_time=speedup - 0.01,
        speedup_total_time_ci=[speedup - 0.11, speedup + 0.09], identical_fraction=1.0,
        baseline_tokens_per_s=20.0 / speedup, prompts_truncated=0, skip={"attention": [], "mlp": []},
        decoder_state={"threshold": 0.55} if adaptive else {}, environment=ENVIRONMENT,
        metric=config["task"]["metric"], score=score, baseline_score=score - 0.002,
        model_identity={"source": "hub", "revision": "abc123", "dtype": "bfloat16", "attn_implementation": "eager"},
        selection={"task": config["task"]["name"], "source": "hub", "revision": "r1", "sample_ids": ["a", "b"]},
        cost_model=cost, divergences=divergences,
        paper_compatible=None if paper_score is None else {"score": paper_score, "baseline_score": paper_score - 0.003},
    )  # fmt: skip


def fake_decode(tokens: int, total_time: float, thresholds: list[float]) -> DecodeRecord:
    result = DecodeResult(
        list(range(tokens)), 0.1, total_time, len(thresholds) + 1, 2 * len(thresholds), [2] * len(thresholds),
        [1] * len(thresholds), thresholds,
    )  # fmt: skip
    return DecodeRecord.from_result(result, text="", prediction="", scores={})


def fake_record(index: int, thresholds: list[float]) -> SampleRecord:
    return SampleRecord(
        index=index, id=f"s{index}", seed=0, prompt_tokens=10, prompt_truncated=False,
        method=fake_decode(2, 1.0, thresholds), baseline=fake_decode(2, 1.5, []), identical=True,
        first_difference=None, baseline_margin=None, decoder_state={"threshold": thresholds[-1]},
    )  # fmt: skip


def make_run(
    root: Path, relative: str, overrides: list[str], metrics: dict | None = None, records=()
) -> dict:
    """A run directory as the runner leaves it: config.yaml, samples.jsonl and (when finished) metrics.json."""
    directory = root / relative
    directory.mkdir(parents=True)
    config = compose_config(overrides)
    (directory / "config.yaml").write_text(OmegaConf.to_yaml(config, resolve=True))
    resolved = OmegaConf.to_container(config, resolve=True)
    if metrics is not None and not records:  # a finished run holds as many samples as its metrics say
        records = [fake_record(0, [0.6]), fake_record(1, [0.6])]
    (directory / "samples.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    if metrics is not None:
        text = json.dumps(fake_metrics(resolved, **metrics).to_dict(), indent=2)
        (directory / "metrics.json").write_text(text)
    return resolved


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "sweep"
    trace = [fake_record(0, [0.6, 0.59, 0.58]), fake_record(1, [0.58, 0.6])]
    table1 = ["experiment=table1", "model=llama2_13b"]
    make_run(
        root, "table1/llama2_13b/cnndm_t0.0", [*table1, "task=cnndm"],
        {"speedup": 1.48, "acceptance": 0.9, "score": 0.107, "cost_model": {"predicted_speedup": 1.6, "efficiency": 0.93},
         "paper_score": 0.104, "divergences": {"identical": 1, "near_tie": 1, "unexplained": 0}},
        trace,
    )  # fmt: skip
    make_run(root, "table1/llama2_13b/xsum_t0.0", [*table1, "task=xsum"], None, trace[:1])  # killed mid-way
    make_run(
        root, "table1/smollm2_135m/cnndm_t0.2", ["experiment=table1", "model=smollm2_135m", "sampling.temperature=0.2"],
        {"speedup": 0.81, "acceptance": 0.7, "score": 0.05}, trace,
    )  # fmt: skip
    table3 = ["experiment=table3", "model=llama2_13b"]
    make_run(
        root,
        "table3/fixed_2",
        [*table3, "experiment.row=fixed_2"],
        {"speedup": 1.3, "acceptance": 0.93, "score": 0.107},
    )
    make_run(
        root, "table3/adaptive", [*table3, "experiment.row=adaptive"],
        {"speedup": 1.5, "acceptance": 0.92, "score": 0.108, "cost_model": {"predicted_speedup": 1.7}}, trace,
    )  # fmt: skip
    table7 = ["experiment=table7", "model=llama2_13b"]
    make_run(
        root, "table7/searched", [*table7, "experiment.row=searched"],
        {"speedup": 1.45, "acceptance": 0.91, "score": 0.107}, trace,
    )  # fmt: skip
    make_run(
        root,
        "table7/middle",
        [*table7, "experiment.row=middle"],
        {"speedup": 0.9, "acceptance": 0.4, "score": 0.1},
    )
    smoke7 = [
        "experiment=table7",
        "model=smollm2_135m",
    ]  # no paper rows: shown in the paper's strategy order
    for row in ("last", "middle"):
        metrics = {"speedup": 0.8, "acceptance": 0.9, "score": 0.05}
        make_run(root, f"table7/smoke_{row}", [*smoke7, f"experiment.row={row}"], metrics)
    make_run(
        root,
        "adhoc/run",
        ["model=tiny_llama", "method=autoregressive"],
        {"speedup": 1.0, "acceptance": None, "score": 0.0},
    )
    write_report(root)
    return root


def test_report_matches_the_golden_file(sweep):
    text = (sweep / "report.md").read_text()
    if os.environ.get("UPDATE_GOLDEN") and text != GOLDEN.read_text():
        GOLDEN.write_text(text)
        pytest.fail(
            f"{GOLDEN} rewritten: review `git diff {GOLDEN}`, commit it, then rerun without UPDATE_GOLDEN"
        )
    assert text == GOLDEN.read_text(), (
        f"the report differs from {GOLDEN} (UPDATE_GOLDEN=1 rewrites it for review)"
    )


def test_the_golden_report_holds_the_hand_written_values():
    """Cells of the golden file checked against the run directories' hand-written metrics and the paper's numbers
    (conf/experiment/table1, reference.yaml): llama2_13b, CNN/DM, greedy: speedup 1.48 measured, 1.572 in the
    paper's Table 1; acceptance 0.90 with its interval [0.85, 0.92]; final gamma 0.55; 1.48 - 1.572 = -0.092."""
    golden = GOLDEN.read_text()
    row = next(line for line in golden.splitlines() if line.startswith("| llama2_13b | 0 | 0.105"))
    assert "| 1.480 / 1.572 / -0.092 |" in row and "incomplete / 1.429" in row
    stats = next(line for line in golden.splitlines() if line.startswith("| llama2_13b | 0 | cnndm | ok |"))
    cells = [cell.strip() for cell in stats.strip("|").split("|")]
    assert cells[4:9] == [
        "2",
        "1.480 [1.380, 1.580]",
        "1.470 [1.370, 1.570]",
        "0.900 [0.850, 0.920]",
        "0.900",
    ]
    assert cells[9] == "3.250" and cells[16] == "0.550" and cells[-1] == "table1/llama2_13b/cnndm_t0.0"
    assert "| llama2_13b | 0.2 | cnndm | missing |" in golden  # a missing run is marked missing, never 0


def test_missing_runs_are_missing_never_zero(sweep):
    lines = read_csv(sweep / "report.csv")
    table1 = [line for line in lines if line["experiment"] == "table1"]
    assert len(table1) == 12 + 1  # the paper's 12 cells and the smoke row the paper does not have
    missing = [line for line in table1 if line["status"] == "missing"]
    assert len(missing) == 10
    for line in missing:
        assert line["speedup"] == line["ar"] == line["ssd"] == line["speedup_diff"] == ""
        assert float(line["speedup_paper"]) > 1.0
    incomplete = next(line for line in table1 if line["status"].startswith("incomplete"))
    assert (incomplete["model"], incomplete["task"], incomplete["speedup"]) == ("llama2_13b", "xsum", "")
    assert incomplete["status"] == "incomplete (1/1000 samples)"
    done = next(line for line in table1 if line["status"] == "ok")
    assert float(done["speedup_diff"]) == pytest.approx(1.48 - 1.572)
    assert (done["cost_model.predicted_speedup"], done["cost_model.efficiency"]) == ("1.6", "0.93")
    markdown = (sweep / "report.md").read_text()
    assert "missing / 1.529" in markdown and "incomplete / 1.429" in markdown


def test_paper_scoring_and_divergences_are_shown_beside_the_faithful_ones(sweep):
    done = next(
        line for line in read_csv(sweep / "report.csv") if line["run_dir"] == "table1/llama2_13b/cnndm_t0.0"
    )
    assert (done["ssd"], done["ssd_paper_scoring"], done["ssd_paper_scoring_paper"]) == (
        "0.107",
        "0.104",
        "0.108",
    )
    assert float(done["ar_paper_scoring_diff"]) == pytest.approx(0.101 - 0.106)
    assert (done["divergences.near_tie"], done["divergences.unexplained"]) == ("1", "0")
    markdown = (sweep / "report.md").read_text()
    assert "cnndm SSD (paper's scoring)" in markdown and "0.104 / 0.108 / -0.004" in markdown


def test_excluded_samples_are_not_inconsistent(tmp_path):
    from replicate.report.tables import RunResult

    config = compose_config(["experiment=table1"])
    resolved = OmegaConf.to_container(config, resolve=True)
    records = [fake_record(0, [0.6]), fake_record(1, [0.6]), fake_record(2, [0.6])]
    metrics = dataclasses.replace(fake_metrics(resolved, 1.2, 0.9, 0.1), excluded_ids=["s0"])
    assert RunResult(tmp_path, resolved, metrics, records).status == "ok"  # 2 kept + 1 excluded
    assert RunResult(tmp_path, resolved, metrics, records[:2]).status.startswith("inconsistent")


def test_cost_model_columns_are_dashes_when_absent(sweep):
    lines = {line["run_dir"]: line for line in read_csv(sweep / "report.csv")}
    assert (
        lines["table3/fixed_2"]["cost_model.predicted_speedup"] == ""
        and lines["table3/adaptive"]["cost_model.predicted_speedup"] == "1.7"
    )
    assert lines["adhoc/run"]["experiment"] == "" and lines["adhoc/run"]["model"] == "tiny_llama"


def test_figures_are_written(sweep):
    names = {path.name for path in (sweep / "figures").glob("*.png")}
    assert {
        "table1_speedup.png",
        "table1_threshold.png",
        "table3_speedup.png",
        "table3_acceptance.png",
    } <= names
    assert "table3_threshold.png" in names and all(
        (sweep / "figures" / name).stat().st_size > 1000 for name in names
    )


def test_rows_follow_the_paper_and_runs_know_their_paper_values(sweep):
    runs = [run for run in find_runs(sweep) if run.experiment == "table3"]
    rows = table_rows(TABLES["table3"], runs)
    assert [row.key["K"] for row in rows] == [2, 4, 6, 8, "adaptive"]
    assert [row.status for row in rows] == ["ok", "missing", "missing", "missing", "ok"]
    assert paper_values_for_run(rows[-1].run.config) == {"ssd": 0.108, "acceptance": 0.919, "speedup": 1.57}
    smoke = next(run for run in find_runs(sweep) if run.config["model"]["name"] == "smollm2_135m")
    assert paper_values_for_run(smoke.config) is None


def test_table7_rows_are_the_strategies_and_searched_is_bayesian_optimization(sweep):
    runs = [run for run in find_runs(sweep) if run.experiment == "table7"]
    rows = table_rows(TABLES["table7"], runs)
    strategies = ["first", "middle", "last", "random", "searched"]
    assert [row.key["strategy"] for row in rows] == [*strategies, "middle", "last"]  # not alphabetical
    assert [row.key["model"] for row in rows] == ["llama2_13b"] * 5 + ["smollm2_135m"] * 2
    assert [row.status for row in rows[:5]] == ["missing", "ok", "missing", "missing", "ok"]
    assert rows[5].status == "ok, not in the paper" and rows[5].paper is None
    assert rows[4].paper == {"acceptance": 0.919, "speedup": 1.57}
    assert rows[4].difference("speedup") == pytest.approx(1.45 - 1.57)
    assert paper_values_for_run(rows[1].run.config) == {"acceptance": 0.393, "speedup": 0.887}


def test_an_empty_directory_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(DataError, match="holds no run directories"):
        write_report(tmp_path)
    assert list(tmp_path.iterdir()) == []
