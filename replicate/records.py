"""The records of the project, one type each, built in one place and read everywhere.

- `DecodeResult`: what one call of a decoding loop returns (`replicate.core.decoding`).
- `DecodeRecord`: one decode as `samples.jsonl` stores it (a `DecodeResult` plus its text, prediction and
  scores); built by `DecodeRecord.from_result`.
- `SampleRecord`: one line of `samples.jsonl`: a sample decoded by the method and, when the run has one, by
  the autoregressive baseline; built by `replicate.run.runner`.
- `CostModelStats` and `RunMetrics` (`metrics.json`): in `replicate.metrics_record`, on the same helpers.
- The columns tables show of a `RunMetrics` are defined once, in `replicate.columns`.

Every record carries `schema_version`; a file written under another version is refused with a message
naming the file, instead of being misread. Definitions of the statistics: `replicate/run/metrics.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from replicate.errors import DataError

SCHEMA_VERSION = 2

DraftSource = Literal["model", "ngram", "none"]
DRAFT_SOURCES: tuple[str, ...] = ("model", "ngram", "none")


class RecordError(DataError):
    """A stored record that cannot be read (other schema version, missing or unknown keys)."""


def from_mapping(cls, data: Mapping[str, Any], where: str, nested: Mapping[str, Any] | None = None):
    """`cls(**data)`, refusing unknown and missing keys with a message naming `where`."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown, missing = sorted(set(data) - names), sorted(required - set(data))
    if unknown or missing:
        raise RecordError(
            f"{where}: not a {cls.__name__} of schema version {SCHEMA_VERSION} "
            f"(unknown keys {unknown}, missing keys {missing})"
        )
    values = dict(data)
    for key, reader in (nested or {}).items():
        if values.get(key) is not None:
            values[key] = reader(values[key], f"{where}.{key}")
    return cls(**values)


def check_version(data: Mapping[str, Any], where: str) -> None:
    version = data.get("schema_version") if isinstance(data, Mapping) else None
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{where}: schema_version {version!r}, but this version of the project reads {SCHEMA_VERSION}; "
            "rerun it (force=true) or read it with the project version that wrote it"
        )


@dataclass
class DecodeResult:
    """What one call of a decoding loop decoded and how.

    tokens: the new token ids (EOS included when hit). drafted/accepted: per verification cycle, the number
    of drafted tokens and how many the full model accepted (empty for autoregressive decoding).
    thresholds: the draft-exit threshold each cycle drafted under. full_forwards: full-model passes,
    prefill included. Times are seconds of wall clock after device synchronization. cache_lengths_ok: every
    layer's KV cache held exactly the committed length after every cycle (checked only when asked).
    draft_sources: per cycle, where its drafts came from (`DRAFT_SOURCES`: `model` = the layer-skipped draft
    model, `ngram` = copied from the prompt and the text so far, `none` = no draft); empty means every cycle
    drafted with the model (the paper's methods, and records older than the field). prefill_cycle: the first
    cycle was verified in the prefill pass itself (prompt lookup, as transformers does), so its drafts are
    in `drafted[0]` but it cost no pass of its own. search_forwards: passes run to choose a skip set during
    decoding (on-the-fly layer selection), neither drafts nor verifications.
    """

    tokens: list[int]
    prefill_time: float
    total_time: float
    full_forwards: int
    draft_forwards: int = 0
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    cache_lengths_ok: bool = True
    draft_sources: list[DraftSource] = field(default_factory=list)
    prefill_cycle: bool = False
    search_forwards: int = 0

    @property
    def num_new_tokens(self) -> int:
        return len(self.tokens)


@dataclass
class DecodeRecord:
    """One decode in `samples.jsonl`: the loop's result, the decoded text, the task's prediction and scores
    (text, prediction and scores are None where nothing was decoded to text, e.g. in the bench; scores are
    None until the run scores its samples, after decoding). score_detail: why it scored so, where the task
    says (HumanEval: the execution record: status, reason, exception, exit status, sandboxed).
    post_eos_tokens: tokens after EOS the authors' loop would have kept
    (`replicate.run.metrics.post_eos_tokens`; None in records older than the field). paper_text / paper_prediction / paper_scores: the authors' scoring
    (`task.paper_postprocess`): the text without the first generated token, post-processed and scored as their
    notebooks do (None when off)."""

    tokens: list[int]
    new_tokens: int
    prefill_time: float
    total_time: float
    full_forwards: int
    draft_forwards: int
    drafted: list[int]
    accepted: list[int]
    thresholds: list[float]
    text: str | None = None
    prediction: str | None = None
    scores: dict[str, float] | None = None
    score_detail: dict[str, Any] | None = None
    post_eos_tokens: int | None = None
    paper_text: str | None = None
    paper_prediction: str | None = None
    paper_scores: dict[str, float] | None = None
    draft_sources: list[DraftSource] = field(default_factory=list)
    prefill_cycle: bool = False
    search_forwards: int = 0

    @classmethod
    def from_result(
        cls,
        result: DecodeResult,
        text: str | None = None,
        prediction: str | None = None,
        scores: Mapping[str, float] | None = None,
    ) -> DecodeRecord:
        return cls(
            tokens=list(result.tokens),
            new_tokens=result.num_new_tokens,
            prefill_time=result.prefill_time,
            total_time=result.total_time,
            full_forwards=result.full_forwards,
            draft_forwards=result.draft_forwards,
            drafted=list(result.drafted),
            accepted=list(result.accepted),
            thresholds=list(result.thresholds),
            draft_sources=list(result.draft_sources),
            prefill_cycle=result.prefill_cycle,
            search_forwards=result.search_forwards,
            text=text,
            prediction=prediction,
            scores=None if scores is None else dict(scores),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> DecodeRecord:
        return from_mapping(cls, data, where)

    @property
    def time_per_token(self) -> float:
        if self.new_tokens < 1:
            raise ValueError("a decode produced no tokens; its time per token is undefined")
        return self.total_time / self.new_tokens


@dataclass
class SampleRecord:
    """One line of `samples.jsonl`.

    identical / first_difference: whether the method's tokens equal the baseline's, and the first position
    where they differ (None when equal or without a baseline). baseline_margin: the baseline's gap between
    its top-two logits at that position (near 0: a numerical near-tie; large: a bug), baseline_top_logit the
    top logit there (the scale of the dtype's resolution, `replicate.run.metrics.divergence_verdict`).
    decoder_state: the
    method's carried state after this sample (`Decoder.state_dict()`, e.g. the adaptive threshold), from
    which a resumed run continues.
    """

    index: int
    id: str
    seed: int
    prompt_tokens: int
    prompt_truncated: bool
    method: DecodeRecord
    baseline: DecodeRecord | None
    identical: bool | None
    first_difference: int | None
    baseline_margin: float | None
    decoder_state: dict[str, Any]
    baseline_top_logit: float | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def threshold_after(self) -> float | None:
        """The draft-exit threshold the method carries to the next sample (None without one)."""
        return self.decoder_state.get("threshold")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> SampleRecord:
        check_version(data, where)
        return from_mapping(
            cls, data, where, {"method": DecodeRecord.from_dict, "baseline": DecodeRecord.from_dict}
        )
