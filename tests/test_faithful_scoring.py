"""Issue 12, evaluation side: the authors' scoring beside the faithful one, the baseline filter wired into the
run, the hub selection checked against known positions, and the long-prompt cut at the authors' budget."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

import tasks.summarization as summarization
from replicate.config import compose_config, run_config
from replicate.core.prompts import encode_prompt
from replicate.records import DecodeRecord, DecodeResult, SampleRecord
from replicate.run.exclusions import baseline_filter
from replicate.run.runner import format_table, run
from replicate.schema import ConfigError
from tasks import Sample, load_task
from tasks.base import BaselineFilter
from tasks.selection import SelectionMismatchError, ids_digest
from tests.helpers import task_config

# ---------------------------------------------------------------- item 2: the authors' scoring


def test_paper_predictions_follow_the_notebooks(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    summary, sample = load_task(task_config("xsum")), Sample(id="x", prompt="", reference="r")
    # evaluate_sum.ipynb: cut only when "\nArticle:" is found after position 0, no strip
    assert summary.paper_prediction("A summary.\nArticle: next", sample) == "A summary."
    assert summary.paper_prediction("\nArticle: at once", sample) == "\nArticle: at once"
    code = load_task(task_config("humaneval"))
    # evaluate_code.ipynb: "    " + filter_code(fix_indents(completion))
    assert code.paper_prediction("return x\n\tpass\n\ndef other():", sample) == "    return x\n    pass"
    assert code.paper_prediction("\n\n\treturn 1\n", sample) == "        return 1\n"


def test_a_run_scores_both_ways_and_filters_on_the_baseline(tmp_path, monkeypatch):
    """One tiny run, two items of issue 12: paper-compatible scores beside the faithful ones, and the baseline
    filter excluding a sample from every statistic (the rule itself is tested in test_tasks.py)."""
    excluded = []

    def exclude_first(self, samples, completions):
        excluded.append(completions)
        ids = [sample.id for sample in samples]
        return BaselineFilter(kept_ids=ids[1:], excluded_ids=ids[:1], min_chars=5, leading_dots=True)

    monkeypatch.setattr(summarization.SummarizationTask, "baseline_exclusions", exclude_first)
    overrides = [
        "model=tiny_llama", "task=cnndm", "method=self_speculative", "n_samples=3", "max_new_tokens=6",
        "task.min_baseline_chars_filter=5", "warmup.runs=0",
    ]  # fmt: skip
    metrics = run(compose_config(overrides), tmp_path)
    records = [
        SampleRecord.from_dict(json.loads(line), "samples.jsonl")
        for line in (tmp_path / "samples.jsonl").read_text().splitlines()
    ]
    assert len(records) == 3 and metrics.excluded_ids == [records[0].id] and metrics.n_samples == 2
    kept = records[1:]
    # The statistics are over the kept samples only (the paper's definitions, written out here):
    baseline_per_token = np.mean([r.baseline.total_time / r.baseline.new_tokens for r in kept])
    method_per_token = np.mean([r.method.total_time / r.method.new_tokens for r in kept])
    assert metrics.speedup == pytest.approx(baseline_per_token / method_per_token, rel=1e-12)
    assert metrics.new_tokens == sum(r.method.new_tokens for r in kept) == 12
    assert metrics.task_scores["n"] == 2 and metrics.decoder_state == records[-1].decoder_state
    # the filter read the baseline's completion as the authors decode it: without its first token
    from replicate.core.models import load_model

    loaded = load_model(run_config(compose_config(overrides)).model)
    assert excluded[0] == [loaded.decode(r.baseline.tokens[1:]) for r in records]
    for record in records:
        for decode in (record.method, record.baseline):
            assert decode.paper_text == loaded.decode(decode.tokens[1:]) and decode.paper_scores is not None
            assert decode.post_eos_tokens == 0  # no EOS in 6 tokens of this model
    paper = metrics.paper_compatible
    assert paper["task_scores"]["n"] == 2 and metrics.score is not None
    assert paper["score"] == pytest.approx(np.mean([r.method.paper_scores["rouge2"] for r in kept]))
    assert metrics.divergences["identical"] == 2 and metrics.post_eos_tokens == 0
    table = format_table([metrics])
    assert "score (paper's scoring)" in table and "near ties" in table and "unexplained" in table


def fake_record(record_id: str, tokens: list[int]) -> SampleRecord:
    decode = DecodeRecord.from_result(DecodeResult(tokens, 0.1, 1.0, len(tokens)))
    return SampleRecord(
        index=0, id=record_id, seed=0, prompt_tokens=3, prompt_truncated=False, method=decode, baseline=decode,
        identical=True, first_difference=None, baseline_margin=None, decoder_state={},
    )  # fmt: skip


def test_the_filter_uses_the_notebooks_rule_on_the_completion_without_its_first_token(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    config = run_config(
        compose_config(
            ["model=tiny_llama", "task=cnndm", "method=self_speculative", "task.min_baseline_chars_filter=5"]
        )
    )
    task = load_task(config.task)
    loaded = SimpleNamespace(decode=lambda ids: "".join(chr(token) for token in ids))
    records = [fake_record("a", [ord(c) for c in "Xabcdef"]), fake_record("b", [ord(c) for c in "abcde"])]
    samples = [Sample(id="a", prompt=""), Sample(id="b", prompt="")]
    kept, excluded = baseline_filter(config, task, samples, records, loaded)
    assert [r.id for r in kept] == ["a"] and excluded == ["b"]  # "bcde" is 4 characters once "a" is dropped
    with pytest.raises(ValueError, match="excluded all 1 samples"):
        baseline_filter(config, task, samples[1:], records[1:], loaded)
    off = dataclasses.replace(config, task=dataclasses.replace(config.task, min_baseline_chars_filter=None))
    assert baseline_filter(off, task, samples, records, loaded) == (records, None)


def test_the_filter_needs_the_baseline():
    with pytest.raises(ConfigError, match="run_baseline=False.*set run_baseline=true"):
        run_config(
            compose_config(
                ["model=tiny_llama", "task=cnndm", "run_baseline=false", "task.min_baseline_chars_filter=5"]
            )
        )


# ---------------------------------------------------------------- item 5: the hub selection checked


def fake_hub(monkeypatch, path: str, test_size: int = 60):
    def fake_load_dataset(name, config, split, revision):
        assert name == path
        size = 30 if split == "train" else test_size
        return datasets.Dataset.from_dict(
            {
                "id": [f"{split}-{i}" for i in range(size)],
                "document": [f"{split} document {i}" for i in range(size)],
                "article": [f"{split} article {i}" for i in range(size)],
                "summary": [f"{split} summary\n{i}" for i in range(size)],
                "highlights": [f"{split} highlights {i}" for i in range(size)],
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(summarization, "_resolve_hub_revision", lambda path, revision: "resolved-sha")
    return fake_load_dataset(path, None, "test", None)


def write_ranked_file(directory: Path, rows: list[dict]) -> None:
    target = directory / "xsum" / "xsum_official_subset_79.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_xsum_hub_items_must_sit_at_their_official_rank(monkeypatch, tmp_path):
    monkeypatch.setenv("REPLICATE_DATA_DIR", str(tmp_path))
    test = fake_hub(monkeypatch, "EdinburghNLP/xsum")
    # where the paper's selection puts each test row: Dataset.shuffle(seed=42) is default_rng(42).permutation
    order = np.random.default_rng(42).permutation(len(test))
    rows = [
        {"hf_test_index": int(order[rank]), "official_rank": rank, "id": None if rank else test[int(order[rank])]["id"],
         "summary": " ".join(test[int(order[rank])]["summary"].split())}
        for rank in (0, 3, 17, 25)
    ] + [{"hf_test_index": 59, "official_rank": 40, "id": None, "summary": "beyond the selection"}]  # fmt: skip
    write_ranked_file(tmp_path, rows)
    task = load_task(task_config("xsum", source="hub", selection_size=30))
    task.samples(2)
    check = task.selection()["selection_check"]
    assert check["status"] == "ranks_verified" and check["ranked_checked"] == 4
    assert check["ids_sha256"] == ids_digest([test[int(i)]["id"] for i in order[:30]])
    rows[1]["official_rank"] = 4  # one row claimed at another position
    write_ranked_file(tmp_path, rows)
    expected = f"expected summary 'test summary {order[3]}', found id test-{order[4]}"
    with pytest.raises(SelectionMismatchError, match=rf"1 of the 4 rows .*\(position 4: {expected}\)"):
        load_task(task_config("xsum", source="hub", selection_size=30)).samples(2)


def test_cnndm_selection_is_unverified_until_a_hash_is_committed(monkeypatch):
    test = fake_hub(monkeypatch, "abisee/cnn_dailymail")
    task = load_task(task_config("cnndm", source="hub", selection_size=10))
    task.samples(1)
    check = task.selection()["selection_check"]
    expected = hashlib.sha256("\n".join(test.shuffle(seed=42)["id"][:10]).encode()).hexdigest()
    assert check["status"] == "unverified" and check["ids_sha256"] == expected
    committed = {"ranked": None, "ids_sha256": expected}
    task = load_task(task_config("cnndm", source="hub", selection_size=10, selection_check=committed))
    task.samples(1)
    assert task.selection()["selection_check"]["status"] == "verified"
    wrong = {"ranked": None, "ids_sha256": "0" * 64}
    with pytest.raises(SelectionMismatchError, match="not the committed task.selection_check.ids_sha256"):
        load_task(task_config("cnndm", source="hub", selection_size=10, selection_check=wrong)).samples(1)


# ---------------------------------------------------------------- item 6: the cut at the authors' budget


def authors_clip(ids: list[int], max_new_tokens: int, context: int) -> list[int]:
    """decoding.clip_input's arithmetic, restated: cut when prompt + new >= context."""
    if len(ids) + max_new_tokens < context:
        return ids
    excess = len(ids) + max_new_tokens - context
    middle = ids[2:-3]
    return ids[:2] + (middle[:-excess] if excess else []) + ids[-3:]


@pytest.mark.parametrize("length", [95, 96, 97, 120])
def test_the_cut_keeps_the_authors_budget(length):
    """context 128 and 32 new tokens: the authors keep 96 = 128 - 32 tokens (as 3584 = 4096 - 512)."""
    loaded = SimpleNamespace(encode=lambda text: list(range(length)), max_context=128, device="cpu")
    ids, truncated = encode_prompt(loaded, "unused", 32)
    tokens = ids[0].tolist()
    if length <= 96:
        assert tokens == list(range(length)) and not truncated
    else:
        assert truncated and tokens == authors_clip(list(range(length)), 32, 128) and len(tokens) == 96
        assert tokens[-3:] == list(range(length - 3, length))
    if length == 96:  # the authors' `>=` with a `[:-0]` slice would keep only 5 tokens here: a departure
        assert len(authors_clip(list(range(length)), 32, 128)) == 5
    assert isinstance(ids, torch.Tensor)
