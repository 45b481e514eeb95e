"""One run: a model, a task, a method (and its autoregressive baseline, interleaved per sample).

For each sample, in alternating order, the method and the baseline decode the same prompt with the same
seed; the record of both goes to `samples.jsonl` as soon as the sample is done. A run directory that
already holds samples resumes after the last one (the adaptive threshold picks up where it was); one that
holds `metrics.json` is finished and is only rerun with `force=true`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replicate.core.decoding import DecodeResult, forward
from replicate.core.methods import Decoder, build_decoder
from replicate.core.models import LoadedModel, load_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipAwareCache
from replicate.cost_model import cost_model_metrics, measure_cost_profile
from replicate.run.environment import environment
from replicate.run.metrics import decoding_metrics, first_difference
from replicate.run.rundir import (
    CONFIG_FILE,
    SAMPLES_FILE,
    append_sample,
    read_metrics,
    read_samples,
    rewrite_samples,
    write_atomic,
    write_metrics,
)
from replicate.run.tracking import log_run
from tasks import Sample, Task, load_task, truncate_middle


def encode_prompt(loaded: LoadedModel, text: str, max_new_tokens: int) -> tuple[torch.Tensor, bool]:
    """Token ids (1, seq) on the model's device, cut in the middle when prompt + new tokens would not fit
    the context (as the paper does). Returns (ids, whether it was cut)."""
    ids = loaded.encode(text)
    budget = loaded.max_context - max_new_tokens - 1
    truncated = len(ids) + max_new_tokens >= loaded.max_context
    if truncated:
        if budget < 5:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {loaded.max_context}"
            )
        ids = truncate_middle(ids, budget)
    return torch.tensor([ids], device=loaded.device), truncated


@torch.inference_mode()
def baseline_margin(
    loaded: LoadedModel, prompt_ids: torch.Tensor, baseline_tokens: list[int], position: int
) -> float:
    """The baseline's gap between its top two logits where the method first differs: a gap near 0 is a
    numerical near-tie (expected in bf16), a large gap points at a bug."""
    ids = torch.cat([prompt_ids, torch.tensor([baseline_tokens[:position]], device=prompt_ids.device)], dim=1)
    logits = forward(loaded.model, ids, SkipAwareCache(config=loaded.model.config), 0, last_only=True)[0]
    top_two = torch.topk(logits.float(), 2).values
    return float(top_two[0] - top_two[1])


def _run_record(loaded: LoadedModel, task: Task, sample: Sample, result: DecodeResult) -> dict[str, Any]:
    text = loaded.decode(result.tokens)
    prediction = task.postprocess(text, sample)
    record = asdict(result)
    record.pop("cache_lengths_ok")
    return {
        **record,
        "new_tokens": result.num_new_tokens,
        "text": text,
        "prediction": prediction,
        "scores": task.score_sample(sample, prediction),
    }


def _sample_record(
    index: int,
    sample: Sample,
    prompt_ids: torch.Tensor,
    truncated: bool,
    loaded: LoadedModel,
    task: Task,
    method: Decoder,
    results: Mapping[str, DecodeResult | None],
    seed: int,
) -> dict[str, Any]:
    method_result, baseline_result = results["method"], results.get("baseline")
    if not method_result.cache_lengths_ok:
        raise AssertionError(
            f"sample {sample.id}: a layer's KV cache length differed from the committed length"
        )
    record: dict[str, Any] = {
        "index": index,
        "id": sample.id,
        "seed": seed,
        "prompt_tokens": prompt_ids.shape[1],
        "prompt_truncated": truncated,
        "method": _run_record(loaded, task, sample, method_result),
        "baseline": None if baseline_result is None else _run_record(loaded, task, sample, baseline_result),
        "identical": True,
        "first_difference": None,
        "baseline_margin": None,
        "threshold_after": getattr(method.draft_exit, "threshold", None),
    }
    if baseline_result is not None:
        position = first_difference(method_result.tokens, baseline_result.tokens)
        record["identical"] = position is None
        record["first_difference"] = position
        if position is not None and position < len(baseline_result.tokens):
            record["baseline_margin"] = baseline_margin(loaded, prompt_ids, baseline_result.tokens, position)
    return record


def _decode_sample(
    decoders: list[tuple[str, Decoder]], prompt_ids: torch.Tensor, max_new_tokens: int, seed: int, index: int
) -> dict[str, DecodeResult]:
    """Decode with every decoder, alternating who goes first so that slow drift hits both alike."""
    order = decoders if index % 2 == 0 else decoders[::-1]
    results = {}
    for role, decoder in order:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(seed)
        results[role] = decoder(prompt_ids, max_new_tokens, generator)
    return results


def _summarize(
    cfg: DictConfig, records: list[dict], task: Task, samples: list[Sample], loaded: LoadedModel
) -> dict:
    by_id = {sample.id: sample for sample in samples}
    scored = [by_id[record["id"]] for record in records]
    is_baseline = cfg.method.name == "autoregressive"
    metrics: dict[str, Any] = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "method": cfg.method.name,
        "sampling": OmegaConf.to_container(cfg.sampling, resolve=True),
        "max_new_tokens": cfg.max_new_tokens,
        # Greedy output must be identical; sampled output is only identically distributed.
        "identity_expected": cfg.sampling.temperature == 0,
        **decoding_metrics(records, is_baseline=is_baseline),
        "prompts_truncated": sum(record["prompt_truncated"] for record in records),
    }
    method_scores = task.aggregate(scored, [record["method"]["scores"] for record in records])
    metrics.update(metric=method_scores["metric"], score=method_scores["score"], task_scores=method_scores)
    if not is_baseline and records[0]["baseline"] is not None:
        baseline_scores = task.aggregate(scored, [record["baseline"]["scores"] for record in records])
        metrics.update(baseline_score=baseline_scores["score"], baseline_task_scores=baseline_scores)
    thresholds = [record["threshold_after"] for record in records]
    metrics["final_threshold"] = thresholds[-1]
    metrics["skip"] = {"attention": list(loaded.plan.attention), "mlp": list(loaded.plan.mlp)}
    metrics["model_identity"] = loaded.identity
    metrics["selection"] = task.selection()
    metrics["environment"] = environment(loaded.device)
    return metrics


# Settings that may differ between a run and its resumption: they do not change any sample's result.
_RESUMABLE_KEYS = ("n_samples", "resume", "force", "logger", "cost_model", "hydra")


def _check_same_settings(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse to append to a run directory whose samples were decoded under other settings."""
    previous_path = run_dir / CONFIG_FILE
    if not (run_dir / SAMPLES_FILE).exists() or not previous_path.exists():
        return
    previous = OmegaConf.to_container(OmegaConf.load(previous_path), resolve=True)
    current = OmegaConf.to_container(cfg, resolve=True)
    changed = sorted(
        key
        for key in set(previous) | set(current)
        if key not in _RESUMABLE_KEYS and previous.get(key) != current.get(key)
    )
    if changed:
        raise ValueError(
            f"{run_dir} holds samples decoded with other settings ({', '.join(changed)} differ from its "
            "config.yaml); use a new run directory, or force=true to discard them"
        )


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Decode, score and summarize; returns the metrics also written to `run_dir/metrics.json`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    finished = read_metrics(run_dir)
    if finished is not None and not cfg.force:
        print(f"{run_dir} is finished (metrics.json exists); pass force=true to run it again")
        return finished
    if cfg.force or not cfg.resume:
        for name in (SAMPLES_FILE, "metrics.json"):
            (run_dir / name).unlink(missing_ok=True)
    _check_same_settings(run_dir, cfg)
    write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))

    loaded = load_model(cfg.model)
    task = load_task(cfg.task)
    sampling = SamplingConfig(**cfg.sampling)
    decoders = [("method", build_decoder(cfg.method, loaded, sampling, check_cache=cfg.verify_cache))]
    if decoders[0][1].draft_exit is not None and cfg.run_baseline:
        decoders.append(("baseline", build_decoder({"name": "autoregressive"}, loaded, sampling)))
    samples = task.samples(cfg.n_samples)

    done = read_samples(run_dir)
    if [record["id"] for record in done] != [sample.id for sample in samples[: len(done)]]:
        raise ValueError(
            f"{run_dir / SAMPLES_FILE} holds other samples than this config selects; use a new run dir"
        )
    rewrite_samples(run_dir, done)
    method = decoders[0][1]
    if done and method.draft_exit is not None and hasattr(method.draft_exit, "threshold"):
        method.draft_exit.threshold = done[-1]["threshold_after"]  # resume the carried threshold

    warmup_ids, _ = encode_prompt(loaded, samples[0].prompt, cfg.warmup.max_new_tokens)
    for _ in range(cfg.warmup.runs):
        warm = [(role, decoder.detached_copy()) for role, decoder in decoders]
        _decode_sample(warm, warmup_ids, cfg.warmup.max_new_tokens, cfg.seed, 0)
    cost_profile = None
    if cfg.cost_model.enabled:  # the device's price of each kind of pass, once, on a warm model
        cost = cfg.cost_model
        max_draft_tokens = cfg.method.get("max_draft_tokens", 0)
        cost_profile = measure_cost_profile(
            loaded, cost.context_length, max_draft_tokens, cost.repeats, cost.warmup
        )

    for index in range(len(done), len(samples)):
        sample = samples[index]
        prompt_ids, truncated = encode_prompt(loaded, sample.prompt, cfg.max_new_tokens)
        seed = cfg.seed + sample.seed
        results = _decode_sample(decoders, prompt_ids, cfg.max_new_tokens, seed, index)
        record = _sample_record(index, sample, prompt_ids, truncated, loaded, task, method, results, seed)
        append_sample(run_dir, record)
        print(_progress_line(index, len(samples), record), flush=True)

    records = read_samples(run_dir)
    metrics = _summarize(cfg, records, task, samples, loaded)
    if cost_profile is not None:
        metrics.update(cost_model_metrics(records, cost_profile))
    write_metrics(run_dir, metrics)
    log_run(cfg, run_dir, metrics, records)  # after the local files: tracking never loses them
    print(format_table([metrics]))
    print(f"results: {run_dir}")
    return metrics


def _progress_line(index: int, total: int, record: dict[str, Any]) -> str:
    run = record["method"]
    line = f"[{index + 1}/{total}] {record['id']}: {run['new_tokens']} tokens in {run['total_time']:.2f}s"
    if record["baseline"] is not None:
        line += f" (baseline {record['baseline']['total_time']:.2f}s, identical={record['identical']})"
    if run["drafted"]:
        line += f", accepted {sum(run['accepted'])}/{sum(run['drafted'])} drafts"
    return line


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of run metrics, one row per run."""
    columns = [
        ("method", "method"), ("n", "n_samples"), ("tokens", "new_tokens"), ("tok/s", "tokens_per_s"),
        ("speedup", "speedup"), ("speedup(total)", "speedup_total_time"), ("acceptance", "acceptance_rate"),
        ("accepted len", "mean_accepted_length"), ("identical", "identical_fraction"), ("metric", "metric"),
        ("score", "score"), ("baseline score", "baseline_score"),
    ]  # fmt: skip
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(header), *(len(r[i]) for r in cells)) for i, (header, _) in enumerate(columns)]
    lines = ["  ".join(header.ljust(w) for (header, _), w in zip(columns, widths))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in cells]
    if rows:
        lines.insert(0, f"model={rows[0]['model']} task={rows[0]['task']}")
    return "\n".join(lines)
