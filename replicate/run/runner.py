"""One run: a model, a task, a method (and its autoregressive baseline, interleaved per sample).

    config -> task + data -> resume checks -> model -> decoders -> per sample: decode both, record, append
    -> metrics.json   (then the tracker, called by the entry point: `replicate.tracking.run_and_track`)

The config is typed and checked first (`replicate.config.run_config`), then the task and its data, so a bad
value or missing data fails before any model loads. For each sample, in alternating order, the method and
the baseline decode the same prompt with the same seed; the `SampleRecord` of both goes to `samples.jsonl` as
soon as the sample is done. A run directory that already holds samples resumes after the last one (the
decoder's carried state, e.g. the adaptive threshold, is restored from it), and only when its settings and
data fingerprint match (`fingerprint.json`); one that holds `metrics.json` is finished and is only rerun with
`force=true`. A finished or refused run never rewrites its files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from replicate.columns import format_table
from replicate.config import RunConfig, ineffective_settings, run_config
from replicate.core.methods import AUTOREGRESSIVE, Decoder, build_decoder
from replicate.core.models import LoadedModel, load_model
from replicate.core.prompts import encode_prompt
from replicate.cost_model import cost_model_metrics, measure_cost_profile
from replicate.metrics_record import RunMetrics
from replicate.records import DecodeRecord, DecodeResult, SampleRecord
from replicate.run import rundir
from replicate.run.environment import environment
from replicate.run.exclusions import baseline_filter
from replicate.run.metrics import divergence_counts, first_difference, post_eos_tokens, sample_metrics
from replicate.run.replay import baseline_top_two
from replicate.run.rundir import run_fingerprint
from replicate.run.scoring import paper_compatible_scores, score_records, task_scores
from replicate.schema import ConfigError
from tasks import Sample, Task, load_task

logger = logging.getLogger(__name__)  # under `python -m replicate`, Hydra writes it to the job log too


def _decode_record(loaded: LoadedModel, task: Task, sample: Sample, result: DecodeResult) -> DecodeRecord:
    """The decode with its text and prediction (and, with `task.paper_postprocess`, the authors' text without
    the first generated token and its prediction); it is scored after decoding (`replicate.run.scoring`)."""
    text = loaded.decode(result.tokens)
    record = DecodeRecord.from_result(result, text, task.postprocess(text, sample))
    record.post_eos_tokens = post_eos_tokens(result.tokens, result.accepted, result.prefill_cycle)
    if task.cfg["paper_postprocess"]:
        record.paper_text = loaded.decode(result.tokens[1:])
        record.paper_prediction = task.paper_prediction(record.paper_text, sample)
    return record


@dataclass(frozen=True)
class DecodedSample:
    """One sample's decodes: its index in the run, the sample, its prompt ids (1, seq) and whether the prompt
    was cut, the seed every decoder drew with, and each role's result ("method", "baseline")."""

    index: int
    sample: Sample
    prompt_ids: torch.Tensor
    truncated: bool
    seed: int
    results: dict[str, DecodeResult]


def sample_record(decoded: DecodedSample, task: Task, method: Decoder) -> SampleRecord:
    """The one place a `SampleRecord` is built."""
    loaded, sample, prompt_ids = method.loaded, decoded.sample, decoded.prompt_ids
    method_result, baseline_result = decoded.results["method"], decoded.results.get("baseline")
    if not method_result.cache_lengths_ok:
        raise AssertionError(
            f"sample {sample.id}: a layer's KV cache length differed from the committed length"
        )
    position, margin, top_logit = None, None, None
    if baseline_result is not None:
        position = first_difference(method_result.tokens, baseline_result.tokens)
        if position is not None and position < len(baseline_result.tokens):
            margin, top_logit = baseline_top_two(loaded, prompt_ids, baseline_result.tokens, position)
    return SampleRecord(
        index=decoded.index,
        id=sample.id,
        seed=decoded.seed,
        prompt_tokens=prompt_ids.shape[1],
        prompt_truncated=decoded.truncated,
        method=_decode_record(loaded, task, sample, method_result),
        baseline=None if baseline_result is None else _decode_record(loaded, task, sample, baseline_result),
        identical=None if baseline_result is None else position is None,
        first_difference=position,
        baseline_margin=margin,
        baseline_top_logit=top_logit,
        decoder_state=method.state_dict(),
    )


def decode_sample(
    decoders: list[tuple[str, Decoder]], prompt_ids: torch.Tensor, max_new_tokens: int, seed: int, index: int
) -> dict[str, DecodeResult]:
    """Decode with every decoder, alternating who goes first so that slow drift hits both alike."""
    order = decoders if index % 2 == 0 else decoders[::-1]
    results = {}
    for role, decoder in order:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(seed)
        results[role] = decoder(prompt_ids, max_new_tokens, generator)
    return results


@dataclass(frozen=True)
class RunInputs:
    """What a run decodes: its typed config, its task, the samples selected, and the loaded model."""

    config: RunConfig
    task: Task
    samples: list[Sample]
    loaded: LoadedModel


def summarize(
    inputs: RunInputs,
    records: list[SampleRecord],
    fingerprint: dict[str, Any],
    scoring: dict[str, Any] | None,
) -> RunMetrics:
    """The one place a run's `RunMetrics` is built (statistics from `replicate.run.metrics`), over the samples
    the baseline filter keeps (all, when it is off); the carried decoder state is the last decoded
    sample's."""
    config, task, samples, loaded = inputs.config, inputs.task, inputs.samples, inputs.loaded
    kept, excluded_ids = baseline_filter(config, task, samples, records, loaded)
    post_eos = [record.method.post_eos_tokens for record in kept]
    return RunMetrics(
        model=config.model.name,
        task=config.task.name,
        method=config.method.name,
        sampling=config.to_dict()["sampling"],
        max_new_tokens=config.max_new_tokens,
        # Greedy output must be identical; sampled output is only identically distributed.
        identity_expected=config.sampling.greedy,
        **sample_metrics(kept, not config.method.drafts, config.bootstrap),
        prompts_truncated=sum(record.prompt_truncated for record in kept),
        skip={"attention": list(loaded.plan.attention), "mlp": list(loaded.plan.mlp)},
        decoder_state=records[-1].decoder_state,
        environment=environment(loaded.device),
        **task_scores(task, samples, kept),
        model_identity=loaded.identity,
        selection=task.selection(),
        fingerprint={"sha256": fingerprint["sha256"]},
        scoring=scoring,
        excluded_ids=excluded_ids,
        divergences=(
            divergence_counts(kept, config.model.dtype, config.divergence.near_tie_ulps)
            if config.sampling.greedy
            else None
        ),
        post_eos_tokens=None if None in post_eos else sum(post_eos),
        paper_compatible=paper_compatible_scores(task, samples, kept),
    )


def _start(config: RunConfig, run_dir: Path, task: Task, samples: list[Sample]) -> tuple[list, dict]:
    """Discard or resume what `run_dir` holds, then record the config and fingerprint the run goes on with."""
    if config.force or not config.resume:
        for name in (rundir.SAMPLES_FILE, rundir.METRICS_FILE):
            (run_dir / name).unlink(missing_ok=True)
    fingerprint = run_fingerprint(config, task)
    done = rundir.resume_records(run_dir, fingerprint, samples)
    rundir.rewrite_samples(run_dir, done)  # drops a line torn by a kill before appending resumes
    rundir.write_atomic(run_dir / rundir.CONFIG_FILE, OmegaConf.to_yaml(config.to_dict()))
    rundir.write_atomic(run_dir / rundir.FINGERPRINT_FILE, json.dumps(fingerprint, indent=2) + "\n")
    return done, fingerprint


def _finished(config: RunConfig, run_dir: Path) -> RunMetrics | None:
    """The metrics of a finished run in `run_dir` to return as they are (None: run it); a finished run
    decoded with other settings is refused, naming each difference."""
    finished = rundir.read_metrics(run_dir)
    if finished is None or config.force:
        return None
    changed = rundir.config_differences(run_dir, config.to_dict())
    if changed:
        raise ConfigError(
            f"{run_dir} is a finished run decoded with other settings ({'; '.join(changed)}); it is left "
            "as it is: use a new run directory (hydra.run.dir=...), or force=true to discard it and rerun"
        )
    logger.warning("%s is finished (metrics.json exists); pass force=true to run it again", run_dir)
    return finished


def _decoders(
    config: RunConfig, loaded: LoadedModel, done: list[SampleRecord]
) -> tuple[Decoder, list[tuple[str, Decoder]]]:
    """The method's decoder (its carried state restored from the last decoded sample) and every decoder of
    a sample by role: the method, then its autoregressive baseline when the run has one."""
    method = build_decoder(config.method, loaded, config.sampling, check_cache=config.verify_cache)
    decoders = [("method", method)]
    if config.method.drafts and config.run_baseline:
        decoders.append(("baseline", build_decoder(AUTOREGRESSIVE, loaded, config.sampling)))
    if done:
        method.load_state_dict(done[-1].decoder_state)  # e.g. the adaptive threshold carried over
    return method, decoders


def _decode_remaining(
    inputs: RunInputs, run_dir: Path, start: int, decoders: list[tuple[str, Decoder]]
) -> None:
    """Decode samples `start`.. in order, each sample's `SampleRecord` appended (fsynced) once it is done."""
    config, samples, loaded = inputs.config, inputs.samples, inputs.loaded
    progress = tqdm(
        range(start, len(samples)), desc=config.method.name, unit="sample", total=len(samples), initial=start
    )
    with logging_redirect_tqdm():  # log lines printed above the bar instead of through it
        for index in progress:
            sample = samples[index]
            prompt_ids, truncated = encode_prompt(loaded, sample.prompt, config.max_new_tokens)
            seed = config.seed + sample.seed
            results = decode_sample(decoders, prompt_ids, config.max_new_tokens, seed, index)
            decoded = DecodedSample(index, sample, prompt_ids, truncated, seed, results)
            record = sample_record(decoded, inputs.task, decoders[0][1])
            rundir.append_sample(run_dir, record)
            logger.info(_progress_line(index, len(samples), record))


def run(cfg: DictConfig | RunConfig, run_dir: Path) -> RunMetrics:
    """Decode, score and summarize; returns the metrics also written to `run_dir/metrics.json`."""
    config = run_config(cfg)  # every value checked before anything loads
    for note in ineffective_settings(config):
        logger.warning("warning: %s", note)
    run_dir = rundir.prepare(run_dir)
    finished = _finished(config, run_dir)
    if finished is not None:
        return finished
    task = load_task(config.task)
    samples = task.samples(config.n_samples)  # the data, before the model: missing data fails fast
    scoring = task.prepare_scoring()  # e.g. the HumanEval sandbox: unavailable fails before decoding
    with rundir.nothing_left_on_failure(run_dir):
        done, fingerprint = _start(config, run_dir, task, samples)
        loaded = load_model(config.model)
        method, decoders = _decoders(config, loaded, done)

        warmup_ids, _ = encode_prompt(loaded, samples[0].prompt, config.warmup.max_new_tokens)
        for _ in range(config.warmup.runs):
            warm = [(role, decoder.detached_copy()) for role, decoder in decoders]
            decode_sample(warm, warmup_ids, config.warmup.max_new_tokens, config.seed, 0)
        cost_profile = None
        not_applicable = config.method.cost_model_not_applicable if config.cost_model.enabled else None
        if config.cost_model.enabled and not_applicable is None:  # each kind of pass priced once, warm
            cost = config.cost_model
            max_draft_tokens = method.max_draft_tokens or 0
            cost_profile = measure_cost_profile(
                loaded, cost.context_length, max_draft_tokens, cost.repeats, cost.warmup
            )

        inputs = RunInputs(config, task, samples, loaded)
        _decode_remaining(inputs, run_dir, len(done), decoders)

        records = rundir.read_samples(run_dir)
        if score_records(task, samples, records):  # after decoding, in parallel where the task can
            rundir.rewrite_samples(run_dir, records)
        metrics = summarize(inputs, records, fingerprint, scoring)
        if cost_profile is not None:
            baselines = [r.baseline for r in records] if records[0].baseline is not None else None
            metrics.cost_model = cost_model_metrics(
                [r.method for r in records], baselines, cost_profile, bootstrap=config.bootstrap
            )
        metrics.cost_model_not_applicable = not_applicable
        rundir.write_metrics(run_dir, metrics)
        print(format_table([metrics]))
        print(f"results: {run_dir}")
        return metrics


def _progress_line(index: int, total: int, record: SampleRecord) -> str:
    run = record.method
    line = f"[{index + 1}/{total}] {record.id}: {run.new_tokens} tokens in {run.total_time:.2f}s"
    if record.baseline is not None:
        line += f" (baseline {record.baseline.total_time:.2f}s, identical={record.identical})"
    if run.drafted:
        line += f", accepted {sum(run.accepted)}/{sum(run.drafted)} drafts"
    return line
