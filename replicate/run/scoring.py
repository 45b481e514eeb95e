"""Scoring a run's decodes, apart from decoding: after the last sample is decoded, every prediction not yet
scored is scored in one batch (HumanEval: `execution.workers` sandboxed programs at a time), so scoring never
runs between timed decodes, and `samples.jsonl` is rewritten once, atomically, with the scores and why each
scored so (`DecodeRecord.score_detail`). A killed run resumes decoding, then scores what is left.

`rescore(run_dir)` (`python -m replicate.rescore <run dir>`) scores a finished run again without decoding:
predictions are rebuilt from the stored text with the task's current post-processing, useful when the
sandbox or the post-processing changed; metrics.json's task scores (the paper-compatible ones too, from their
stored `paper_text`) are replaced over the samples the run kept (`excluded_ids` stay excluded), and the
re-score recorded.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from replicate.errors import DataError
from replicate.records import SampleRecord
from replicate.run import rundir
from tasks import Sample, Task, load_task


def _decodes(record: SampleRecord) -> list[str]:
    return [role for role in ("method", "baseline") if getattr(record, role) is not None]


def score_records(
    task: Task, samples: Sequence[Sample], records: list[SampleRecord], rescore: bool = False
) -> int:
    """Score every decode of `records` without scores (all of them when `rescore`, with predictions rebuilt
    from the text), in place, and its paper-compatible prediction where it has one
    (`score_paper_predictions`). Returns how many predictions were scored."""
    by_id = {sample.id: sample for sample in samples}
    todo = [
        (record, role)
        for record in records
        for role in _decodes(record)
        if rescore or getattr(record, role).scores is None
    ]
    if todo:
        if rescore:
            for record, role in todo:
                decode = getattr(record, role)
                decode.prediction = task.postprocess(decode.text, by_id[record.id])
        predictions = [getattr(record, role).prediction for record, role in todo]
        scores = task.score_samples([by_id[record.id] for record, _ in todo], predictions)
        for (record, role), score in zip(todo, scores, strict=True):
            decode = getattr(record, role)
            decode.scores, decode.score_detail = dict(score.values), score.detail
    return len(todo) + score_paper_predictions(task, by_id, records, rescore)


def score_paper_predictions(
    task: Task, by_id: dict[str, Sample], records: list[SampleRecord], rescore: bool = False
) -> int:
    """Score the authors'-scoring predictions (`DecodeRecord.paper_prediction`, `task.paper_postprocess`) not
    yet scored (all, rebuilt from `paper_text`, when `rescore`), in place; returns how many were scored."""
    todo = [
        (record, getattr(record, role))
        for record in records
        for role in _decodes(record)
        if getattr(record, role).paper_text is not None
        and (rescore or getattr(record, role).paper_scores is None)
    ]
    if not todo:
        return 0
    if rescore:
        for record, decode in todo:
            decode.paper_prediction = task.paper_prediction(decode.paper_text, by_id[record.id])
    samples = [by_id[record.id] for record, _ in todo]
    scores = task.score_samples(samples, [decode.paper_prediction for _, decode in todo])
    for (_, decode), score in zip(todo, scores, strict=True):
        decode.paper_scores = dict(score.values)
    return len(todo)


def task_scores(task: Task, samples: Sequence[Sample], records: Sequence[SampleRecord]) -> dict[str, Any]:
    """The `RunMetrics` task-score fields: the method's and (when decoded) the baseline's aggregate."""
    aggregates = _aggregates(task, samples, records, "scores")
    return {"metric": aggregates["task_scores"]["metric"], **aggregates}


def _aggregates(
    task: Task, samples: Sequence[Sample], records: Sequence[SampleRecord], scores: str
) -> dict[str, Any]:
    """The method's and (when decoded) the baseline's `task.aggregate` of the per-decode `scores` field
    (`scores` or `paper_scores`), as the `score`, `task_scores`, `baseline_score` and `baseline_task_scores`."""
    by_id = {sample.id: sample for sample in samples}
    scored = [by_id[record.id] for record in records]
    method = task.aggregate(scored, [getattr(record.method, scores) for record in records])
    baseline = None
    if records[0].baseline is not None:
        baseline = task.aggregate(scored, [getattr(record.baseline, scores) for record in records])
    return {
        "score": method["score"],
        "task_scores": method,
        "baseline_score": None if baseline is None else baseline["score"],
        "baseline_task_scores": baseline,
    }


def paper_compatible_scores(
    task: Task, samples: Sequence[Sample], records: Sequence[SampleRecord]
) -> dict[str, Any] | None:
    """metrics.json `paper_compatible`: the method's and the baseline's task scores under the authors' scoring
    (None when the run did not compute it, `task.paper_postprocess: false`)."""
    decodes = [getattr(record, role) for record in records for role in _decodes(record)]
    if not decodes or all(decode.paper_text is None for decode in decodes):
        return None
    unscored = [
        record.id
        for record in records
        for role in _decodes(record)
        if getattr(record, role).paper_scores is None
    ]
    if unscored:
        raise ValueError(f"samples {unscored[:3]} have no paper-compatible scores; rescore the run")
    return {
        **_aggregates(task, samples, records, "paper_scores"),
        "postprocess": "first generated token dropped, then the authors' notebook post-processing",
    }


# Statistics of metrics.json recomputed from samples.jsonl before a re-score: any difference means the
# samples are not the ones the metrics were computed from (another run's file, an edited or cut file).
_DECODE_STATISTICS = (
    "n_samples",
    "new_tokens",
    "mean_accepted_length",
    "acceptance_rate",
    "identical_fraction",
)


def matching_records(
    run_dir: Path, config: Any, task: Task, samples: Sequence[Sample], metrics: Any
) -> list[SampleRecord]:
    """samples.jsonl of a finished run, refused (DataError naming the file and the mismatch) unless it holds
    exactly the samples the run selected, under the fingerprint its metrics.json and fingerprint.json
    record, with the decoding statistics metrics.json reports."""
    from replicate.run.metrics import sample_metrics

    path = run_dir / rundir.SAMPLES_FILE
    fingerprint_path = run_dir / rundir.FINGERPRINT_FILE
    if not fingerprint_path.is_file():
        raise DataError(f"{fingerprint_path} is missing: the run's samples cannot be matched to its settings")
    recorded = rundir.read_json(fingerprint_path).get("sha256")
    expected = rundir.run_fingerprint(config, task)["sha256"]
    claimed = (metrics.fingerprint or {}).get("sha256")
    if not recorded == expected == claimed:
        raise DataError(
            f"{fingerprint_path}, {rundir.CONFIG_FILE} and {rundir.METRICS_FILE} of {run_dir} describe different "
            "runs (their settings fingerprints differ); rerun it (force=true) instead of re-scoring"
        )
    records = rundir.read_samples(run_dir)
    ids, selected = [record.id for record in records], [sample.id for sample in samples]
    if ids != selected:
        missing = [i for i in selected if i not in ids]
        detail = f"missing {missing[:3]}" if missing else f"{len(ids)} records for {len(selected)} samples"
        raise DataError(
            f"{path} does not hold the samples this run selected ({detail}); it is not re-scored. Resume the "
            "run (rerun its command) or rerun it with force=true"
        )
    excluded = set(metrics.excluded_ids or ())
    kept = [record for record in records if record.id not in excluded]
    stored = metrics.to_dict()
    recomputed = sample_metrics(kept, not config.method.drafts, config.bootstrap)
    differing = [key for key in _DECODE_STATISTICS if recomputed.get(key) != stored.get(key)]
    if differing:
        raise DataError(
            f"{path} is not the file {run_dir / rundir.METRICS_FILE} was computed from ("
            + ", ".join(
                f"{key} {stored.get(key)} there, {recomputed.get(key)} from the samples" for key in differing
            )
            + "); it is not re-scored"
        )
    return records


def rescore(run_dir: Path) -> dict[str, Any]:
    """Score a finished run again from its stored text; returns the new task-score fields. Refuses (DataError,
    nothing rewritten) a run whose samples do not match its metrics and fingerprint (`matching_records`)."""
    from replicate.config import run_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a directory; name a finished run directory")
    metrics = rundir.read_metrics(run_dir)
    if metrics is None:
        raise DataError(f"{run_dir} has no metrics.json: only a finished run can be re-scored")
    config_path = run_dir / rundir.CONFIG_FILE
    if not config_path.is_file():
        raise DataError(f"{config_path} is missing: the run's settings are unknown, it cannot be re-scored")
    try:
        stored_config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise DataError(f"{config_path} is damaged ({type(error).__name__})") from None
    config = run_config(stored_config)
    task = load_task(config.task)
    samples = task.samples(config.n_samples)
    records = matching_records(run_dir, config, task, samples, metrics)
    scoring = task.prepare_scoring()
    count = score_records(task, samples, records, rescore=True)
    rundir.rewrite_samples(run_dir, records)
    excluded = set(metrics.excluded_ids or ())  # the run's baseline filter still applies
    kept = [record for record in records if record.id not in excluded]
    fields = task_scores(task, samples, kept)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rescored = {"date": now, "decodes": count, "previous_score": metrics.score}
    metrics = dataclasses.replace(
        metrics,
        **fields,
        paper_compatible=paper_compatible_scores(task, samples, kept),
        scoring={**(scoring or {}), "rescored": rescored},
    )
    rundir.write_metrics(run_dir, metrics)
    return fields
