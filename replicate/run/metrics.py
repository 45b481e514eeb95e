"""Definitions of every reported statistic, in one place. All are computed from `samples.jsonl` records.

- speedup (the paper's): mean over samples of the baseline's time per new token, divided by the mean
  over samples of the method's time per new token.
- speedup_total_time: total baseline time / total method time (equal to the above when every sample
  decodes the same number of tokens).
- acceptance_rate (the paper's "matchness"): per sample, accepted draft tokens / drafted tokens (the
  verifier's own token not counted), averaged over the samples that drafted anything.
  acceptance_rate_pooled: all accepted / all drafted.
- mean_accepted_length: new tokens per full-model forward pass (prefill included), i.e. tokens committed
  per verification including the verifier's own token; 1.0 for autoregressive decoding.
- tokens_per_s: total new tokens / total decoding time.
- identical_fraction: share of samples whose tokens equal the autoregressive baseline's. Meaningful for
  greedy decoding only (`identity_expected`): sampled runs are identically distributed, not identical,
  because the two decoders consume the random generator differently.
Times are wall clock around the whole decode (prefill included, tokenization excluded).
Intervals are percentile bootstraps over samples (`replicate.statistics`; the speedups resample the
(baseline, method) pairs of each sample together), with the run's `bootstrap` settings (conf/config.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from replicate.records import DecodeRecord, SampleRecord
from replicate.statistics import BootstrapConfig, bootstrap_interval, interval_list, ratio_of_means


def _acceptance_metrics(methods: Sequence[DecodeRecord], bootstrap: BootstrapConfig) -> dict[str, Any]:
    """Accepted / drafted per sample, averaged (with its interval) and pooled; samples that drafted nothing."""
    drafted = [sum(run.drafted) for run in methods]
    accepted = [sum(run.accepted) for run in methods]
    rates = [a / d for a, d in zip(accepted, drafted) if d > 0]
    found: dict[str, Any] = {"samples_without_drafts": len(methods) - len(rates)}
    if rates:
        found["acceptance_rate"] = float(np.mean(rates))
        found["acceptance_rate_ci"] = interval_list(
            bootstrap_interval([rates], np.mean, **bootstrap.settings())
        )
        found["acceptance_rate_pooled"] = sum(accepted) / sum(drafted)
    return found


def _baseline_metrics(
    methods: Sequence[DecodeRecord],
    baselines: Sequence[DecodeRecord],
    identical: Sequence[bool] | None,
    bootstrap: BootstrapConfig,
) -> dict[str, Any]:
    """The speedups over the baseline's decodes of the same samples (paired bootstrap intervals), the share
    of identical outputs and the baseline's own throughput."""
    if len(baselines) != len(methods) or identical is None or len(identical) != len(methods):
        raise ValueError("every decode of the method needs its baseline decode and identity")
    per_token = np.array([[b.time_per_token, m.time_per_token] for b, m in zip(baselines, methods)])
    totals = np.array([[b.total_time, m.total_time] for b, m in zip(baselines, methods)])
    return {
        "speedup": float(ratio_of_means(*per_token.T)),
        "speedup_ci": interval_list(
            bootstrap_interval(per_token.T, ratio_of_means, paired=True, **bootstrap.settings())
        ),
        "speedup_total_time": float(ratio_of_means(*totals.T)),  # = total / total
        "speedup_total_time_ci": interval_list(
            bootstrap_interval(totals.T, ratio_of_means, paired=True, **bootstrap.settings())
        ),
        "identical_fraction": float(np.mean(identical)),
        "baseline_tokens_per_s": sum(b.new_tokens for b in baselines) / sum(b.total_time for b in baselines),
    }


def decoding_metrics(
    methods: Sequence[DecodeRecord],
    baselines: Sequence[DecodeRecord] | None,
    identical: Sequence[bool] | None,
    is_baseline: bool,
    bootstrap: BootstrapConfig,
) -> dict[str, Any]:
    """Statistics of the method's decodes and, when given, against the baseline's decodes of the same samples
    (`RunMetrics` fields). `is_baseline`: the method is autoregressive decoding itself, so it is its own
    reference (speedup 1, identical by definition) and drafts nothing (acceptance None). `bootstrap`: the
    intervals' settings."""
    if not methods:
        raise ValueError("no samples were decoded; nothing to summarize")
    new_tokens = sum(run.new_tokens for run in methods)
    total_time = sum(run.total_time for run in methods)
    metrics: dict[str, Any] = {
        "n_samples": len(methods),
        "new_tokens": new_tokens,
        "mean_new_tokens": new_tokens / len(methods),
        "tokens_per_s": new_tokens / total_time,
        "mean_accepted_length": new_tokens / sum(run.full_forwards for run in methods),
        "acceptance_rate": None,
        "acceptance_rate_ci": None,
        "acceptance_rate_pooled": None,
        "samples_without_drafts": None,
        "speedup": None,
        "speedup_ci": None,
        "speedup_total_time": None,
        "speedup_total_time_ci": None,
        "identical_fraction": None,
        "baseline_tokens_per_s": None,
    }
    if not is_baseline:
        metrics.update(_acceptance_metrics(methods, bootstrap))
    if is_baseline:
        metrics.update(speedup=1.0, speedup_total_time=1.0, identical_fraction=1.0)
        metrics["baseline_tokens_per_s"] = metrics["tokens_per_s"]
    elif baselines is not None:
        metrics.update(_baseline_metrics(methods, baselines, identical, bootstrap))
    return metrics


def sample_metrics(
    records: Sequence[SampleRecord], is_baseline: bool, bootstrap: BootstrapConfig
) -> dict[str, Any]:
    """`decoding_metrics` of a run's samples (all with a baseline decode, or none), and the method's cycles
    per draft source (`draft_sources`, `draft_source_counts`)."""
    with_baseline = [record.baseline is not None for record in records]
    if any(with_baseline) and not all(with_baseline):
        raise ValueError("some samples have a baseline decode and some do not; rerun with force=true")
    baselines = [record.baseline for record in records] if records and all(with_baseline) else None
    identical = [bool(record.identical) for record in records] if baselines is not None else None
    methods = [record.method for record in records]
    metrics = decoding_metrics(methods, baselines, identical, is_baseline, bootstrap)
    metrics["draft_sources"] = draft_source_counts(methods)
    return metrics


def first_difference(tokens: Sequence[int], reference: Sequence[int]) -> int | None:
    """First position where two token lists differ (a length difference counts), or None if equal."""
    for position, (a, b) in enumerate(zip(tokens, reference)):
        if a != b:
            return position
    return None if len(tokens) == len(reference) else min(len(tokens), len(reference))


def post_eos_tokens(tokens: Sequence[int], accepted: Sequence[int], prefill_cycle: bool = False) -> int:
    """Tokens after EOS that the authors' loop would have kept in a decode's last block: it appends a whole
    verified block (accepted drafts + the full model's token) and only then looks for EOS, while this
    project stops at the EOS. A cycle here commits accepted + 1 tokens (its drafts never exceed the token
    budget), so the prefill token plus every cycle's block, minus what was committed, is what the stop at
    EOS dropped (0 for autoregressive decoding). A lower bound of the authors' count: their draft also runs
    past a drafted EOS, and every agreeing draft after it would be kept too. `prefill_cycle`: the prefill
    pass was the first cycle's verification (prompt lookup), so it yields no token of its own."""
    if not accepted:
        return 0
    return (0 if prefill_cycle else 1) + sum(count + 1 for count in accepted) - len(tokens)


def draft_source_counts(methods: Sequence[DecodeRecord]) -> dict[str, int] | None:
    """Cycles per draft source over decodes (`DecodeResult.draft_sources`); None when none records any."""
    counts: dict[str, int] = {}
    for run in methods:
        for source in run.draft_sources:
            counts[source] = counts.get(source, 0) + 1
    return counts or None


# Explicit mantissa bits of each model dtype: one unit in the last place of x is 2^(floor(log2|x|) - bits).
MANTISSA_BITS = {"float32": 23, "bfloat16": 7, "float16": 10}


def unit_in_last_place(value: float, dtype: str) -> float:
    """The spacing of `dtype`'s numbers at |value| (its resolution there); subnormals are not modelled."""
    if dtype not in MANTISSA_BITS:
        raise ValueError(f"no resolution known for dtype {dtype!r}; known: {', '.join(MANTISSA_BITS)}")
    magnitude = abs(value)
    if magnitude == 0.0 or not math.isfinite(magnitude):
        raise ValueError(f"the resolution at logit {value!r} is undefined (zero or not finite)")
    return 2.0 ** (math.floor(math.log2(magnitude)) - MANTISSA_BITS[dtype])


def divergence_verdict(record: SampleRecord, dtype: str, near_tie_ulps: float) -> str:
    """`identical`, `near_tie` (the baseline's top-two logit margin at the first difference is at most
    `near_tie_ulps` units in the last place of `dtype` at its top logit: a flip numerics alone can cause) or
    `unexplained` (a larger margin, or a difference with no margin recorded, e.g. a length difference)."""
    if record.identical is None:
        raise ValueError(f"sample {record.id} has no baseline decode: its divergence cannot be judged")
    if record.identical:
        return "identical"
    margin, top = record.baseline_margin, record.baseline_top_logit
    if margin is None or top is None or top == 0.0:
        return "unexplained"
    return "near_tie" if margin <= near_tie_ulps * unit_in_last_place(top, dtype) else "unexplained"


def divergence_counts(
    records: Sequence[SampleRecord], dtype: str, near_tie_ulps: float
) -> dict[str, Any] | None:
    """metrics.json `divergences`: how many samples are identical to the baseline, differ at a near-tie, or
    differ unexplained, and the rule (None without a baseline to compare with)."""
    if not records or any(record.identical is None for record in records):
        return None
    verdicts = [divergence_verdict(record, dtype, near_tie_ulps) for record in records]
    return {
        **{verdict: verdicts.count(verdict) for verdict in ("identical", "near_tie", "unexplained")},
        "margin_threshold": {
            "ulps": near_tie_ulps,
            "dtype": dtype,
            "rule": f"margin <= {near_tie_ulps:g} * 2^(floor(log2|top logit|) - {MANTISSA_BITS[dtype]})",
        },
    }
