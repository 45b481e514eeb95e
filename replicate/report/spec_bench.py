"""`python -m replicate.report <dir> --spec-bench`: the runs under <dir> in Spec-Bench's answer format, and the
speedup under Spec-Bench's definition beside ours.

Spec-Bench (Xia et al. 2024, github hemingkx/Spec-Bench) keeps one JSONL answer file per decoding method; each
line is one question: `question_id`, `category`, `answer_id`, `model_id`, `tstamp` and `choices`, a list (one
entry per sampled choice; we decode one) of `index`, `turns` (the answer text of each turn; our tasks have
one turn), `decoding_steps`, `new_tokens`, `wall_time` and `accept_lengths` (per decoding step, the tokens
it committed). Written here from samples.jsonl, per finished run, into `<dir>/spec_bench/`:
- `<model>-<run>.jsonl`: the method's decodes;
- `<model>-vanilla-<run>.jsonl`: the autoregressive baseline decoded in the same run (Spec-Bench's "vanilla"),
  when the run has one. Each run has its own interleaved baseline, so each pair is compared on its own.
Our mapping: `decoding_steps` = full-model forward passes (prefill included); `accept_lengths` = 1 for the
prefill, then accepted drafts + 1 for each verification cycle, the last cut where EOS or the token budget
ended the decode, so they add up to `new_tokens`; `wall_time` = the decode's total time (prefill included).

Speedup, Spec-Bench's definition (its evaluation/speed.py): mean over questions of the method's tokens/s,
divided by the same mean for the baseline (a ratio of mean rates). Ours (`speedup` in metrics.json): mean
over samples of the baseline's seconds per token, divided by the same mean for the method (a ratio of mean
times). Both come from the same decodes; they differ when per-sample rates vary. Spec-Bench counts the
baseline's tokens by re-tokenizing its text; we use the recorded token counts for both.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from replicate.core.methods import load_method_modules
from replicate.records import DecodeRecord
from replicate.report.markdown import fmt, markdown_table, relative
from replicate.report.runs import RunResult

DIRECTORY = "spec_bench"


def accept_lengths(decode: DecodeRecord) -> list[int]:
    """Tokens committed by each decoding step: the prefill's 1, then accepted + 1 per cycle, capped so that
    they add up to the decode's new tokens (EOS or the budget can end a cycle early); 1 per step for
    autoregressive decoding."""
    if not decode.drafted:  # autoregressive decoding: every full forward commits one token
        return [1] * decode.new_tokens
    steps = [1, *(accepted + 1 for accepted in decode.accepted)]
    committed, lengths = 0, []
    for step in steps:
        take = min(step, decode.new_tokens - committed)
        if take <= 0:
            break
        lengths.append(take)
        committed += take
    return lengths


def answer(run: RunResult, record_index: int, role: str, model_id: str) -> dict[str, Any]:
    """One Spec-Bench answer line for a sample of `run` (`role`: "method" or "baseline")."""
    record = run.records[record_index]
    decode: DecodeRecord = getattr(record, role)
    answer_id = hashlib.sha256(f"{model_id}/{record.id}".encode()).hexdigest()[:22]
    return {
        "question_id": record.id,
        "category": (run.config.get("task") or {}).get("name"),
        "answer_id": answer_id,
        "model_id": model_id,
        "choices": [
            {
                "index": 0,
                "turns": [decode.text or ""],
                "decoding_steps": [decode.full_forwards],
                "new_tokens": [decode.new_tokens],
                "wall_time": [decode.total_time],
                "accept_lengths": accept_lengths(decode),
            }
        ],
        "tstamp": run.path.joinpath("samples.jsonl").stat().st_mtime,
    }


def mean_tokens_per_second(lines: Sequence[dict[str, Any]]) -> float:
    """Spec-Bench's per-method speed: the mean over questions of new tokens / wall time (first choice)."""
    rates = [sum(line["choices"][0]["new_tokens"]) / sum(line["choices"][0]["wall_time"]) for line in lines]
    return float(np.mean(rates))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _write(path: Path, lines: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def write_spec_bench(root: Path, runs: list[RunResult], out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Write the answer files of every finished run; returns one row per run (files, both speedups, mean
    accepted tokens) and the lines of a markdown table of them."""
    directory = Path(out) / DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in runs:
        if run.metrics is None or run.status != "ok":
            continue  # an unfinished run has no speedup to compare
        model = run.metrics.model
        label = _slug(relative(run.path, root) if run.path != root else run.metrics.method)
        method_id = f"{model}-{label}"
        method_lines = [answer(run, i, "method", method_id) for i in range(len(run.records))]
        _write(directory / f"{method_id}.jsonl", method_lines)
        row: dict[str, Any] = {
            "run": relative(run.path, root),
            "method": run.metrics.method,
            "n": len(method_lines),
            "file": f"{DIRECTORY}/{method_id}.jsonl",
            "baseline_file": None,
            "spec_bench_speedup": None,
            "speedup": run.metrics.speedup,
            "mean_accept_length": float(
                np.mean([n for line in method_lines for n in line["choices"][0]["accept_lengths"]])
            ),
        }
        if all(record.baseline is not None for record in run.records):
            baseline_id = f"{model}-vanilla-{label}"
            baseline_lines = [answer(run, i, "baseline", baseline_id) for i in range(len(run.records))]
            _write(directory / f"{baseline_id}.jsonl", baseline_lines)
            row["baseline_file"] = f"{DIRECTORY}/{baseline_id}.jsonl"
            row["spec_bench_speedup"] = mean_tokens_per_second(method_lines) / mean_tokens_per_second(
                baseline_lines
            )
        elif not load_method_modules()[run.metrics.method].drafts:
            row["spec_bench_speedup"] = 1.0  # the method is the baseline, as our speedup says
        rows.append(row)
    headers = [
        "run",
        "method",
        "n",
        "speedup (Spec-Bench: ratio of mean tok/s)",
        "speedup (ours: ratio of mean s/token)",
        "mean accepted tokens",
    ]
    body = [
        [
            row["run"],
            row["method"],
            str(row["n"]),
            fmt(row["spec_bench_speedup"]),
            fmt(row["speedup"]),
            fmt(row["mean_accept_length"], 2),
        ]
        for row in rows
    ]
    return rows, markdown_table(headers, body)
