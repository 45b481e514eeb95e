"""The lossless matrix: every greedy method against `model.generate(do_sample=False)` on the tiny models.

One definition, run in two places: `tests/test_lossless.py` demands token identity on every cell in fp32 on
the CPU, and `python -m replicate.gpu_check` runs the same cells on the GPU in fp32 (identity demanded) and in
bf16, where a multi-token verification pass and one-token decoding use different kernels, so near-ties may
flip: there every divergence is reported with the reference's top-two logit margin at the first differing
token (near 0: a numerical near-tie; large: a bug).

Models: `replicate.lossless.reference.MODELS`. Methods (`method_settings`): fixed K = 1..12, static
thresholds 0.3-1.0, and two adaptive draft-exit settings; plus autoregressive decoding; and the methods beyond
the paper (`new_method_settings`, `replicate.methods`): prompt lookup, hybrid n-gram / layer-skipped drafting
and on-the-fly skip-set selection, each in several settings, on every KV cache like the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import AdaptiveThreshold, DraftExit, StaticThreshold
from replicate.core.ngram import NgramSettings
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.lossless.reference import MODELS, TinyModel, reference_tokens, tiny_model, top_two_margin
from replicate.methods.hybrid import hybrid_decode
from replicate.methods.on_the_fly import OnTheFly, SkipSetSearch, on_the_fly_decode
from replicate.methods.prompt_lookup import prompt_lookup_decode
from replicate.records import DecodeResult
from replicate.run.metrics import first_difference

GREEDY = SamplingConfig()
# (max_draft_tokens, static threshold); threshold 0 drafts exactly K (the no-sync path)
DRAFT_SETTINGS = [(1, 0.0), (2, 0.0), (4, 0.3), (6, 0.0), (12, 0.0), (12, 0.5), (8, 1.0)]
# (max_draft_tokens, initial threshold, target acceptance) of the adaptive draft-exit cells
ADAPTIVE_SETTINGS = [(12, 0.6, 0.8), (5, 0.9, 0.5)]


def adaptive(initial: float = 0.6, target: float = 0.8) -> AdaptiveThreshold:
    return AdaptiveThreshold(initial, target, 0.01, 0.5, 0.9, reset_per_sample=False)


def method_settings() -> list[tuple[str, int, Callable[[], DraftExit]]]:
    """(label, max_draft_tokens, fresh draft-exit rule) of every self-speculative cell."""
    cells = [
        (f"K={k},threshold={threshold}", k, lambda threshold=threshold: StaticThreshold(threshold))
        for k, threshold in DRAFT_SETTINGS
    ]
    cells += [
        (f"adaptive,K={k},gamma0={initial},alpha={target}", k, lambda i=initial, t=target: adaptive(i, t))
        for k, initial, target in ADAPTIVE_SETTINGS
    ]
    return cells


# prompt_lookup: (max_draft_tokens, max_matching_ngram_size)
PROMPT_LOOKUP_SETTINGS = [(10, 2), (3, 1), (4, 3)]
# hybrid: (max_draft_tokens, ngram_draft_tokens, initial threshold, target acceptance)
HYBRID_SETTINGS = [(12, 10, 0.6, 0.8), (4, 3, 0.9, 0.5)]
# on_the_fly: (max_draft_tokens, static threshold, skip fraction); 8 search cycles, 2 candidates, window 16
ON_THE_FLY_SETTINGS = [(6, 0.0, 0.25), (12, 0.5, 0.5)]
# decode(model, prompt_ids (1, seq), settings, the model's skip plan), greedy, with the cache check on
NewMethodDecode = Callable[[torch.nn.Module, torch.Tensor, DecodeSettings, SkipPlan], DecodeResult]


def _prompt_lookup(k: int, n: int) -> NewMethodDecode:
    def decode(model, prompt_ids, settings, plan):
        return prompt_lookup_decode(model, prompt_ids, settings, NgramSettings(k, n), check_cache=True)

    return decode


def _hybrid(k: int, ngram_k: int, initial: float, target: float) -> NewMethodDecode:
    def decode(model, prompt_ids, settings, plan):
        speculation = Speculation(plan, k, adaptive(initial, target), check_cache=True)
        return hybrid_decode(model, prompt_ids, settings, speculation, NgramSettings(ngram_k, 2))

    return decode


def _on_the_fly(k: int, threshold: float, fraction: float) -> NewMethodDecode:
    def decode(model, prompt_ids, settings, plan):  # searches its own skip set: the model's plan is unused
        search = SkipSetSearch(threshold, fraction, 8, 2, 16, 0)
        return on_the_fly_decode(model, prompt_ids, settings, OnTheFly(search, k, check_cache=True))

    return decode


def new_method_settings() -> list[tuple[str, NewMethodDecode]]:
    """(label, decode) of every cell of the methods beyond the paper (`replicate.methods`)."""
    cells = [(f"prompt_lookup,K={k},ngram={n}", _prompt_lookup(k, n)) for k, n in PROMPT_LOOKUP_SETTINGS]
    cells += [
        (f"hybrid,K={k},ngram_K={g},gamma0={i},alpha={t}", _hybrid(k, g, i, t))
        for k, g, i, t in HYBRID_SETTINGS
    ]
    cells += [
        (f"on_the_fly,K={k},threshold={th},skip_fraction={f}", _on_the_fly(k, th, f))
        for k, th, f in ON_THE_FLY_SETTINGS
    ]
    return cells


@dataclass
class Cell:
    """One decode of the matrix and how it compares with generate's tokens."""

    model: str
    prompt: int
    method: str
    kv_cache: str
    identical: bool
    new_tokens: int
    first_difference: int | None
    reference_margin: float | None
    cache_lengths_ok: bool
    drafted: int
    accepted: int
    ngram_cycles: int = 0  # cycles whose drafts came from n-gram lookup (prompt lookup, hybrid)


@dataclass(frozen=True)
class _Prompt:
    """One prompt of one matrix model and generate's tokens for it."""

    spec: TinyModel
    model: torch.nn.Module
    prompt_ids: torch.Tensor
    seed: int
    expected: list[int]

    def cell(self, method: str, kv_cache: str, result: DecodeResult) -> dict[str, Any]:
        position = first_difference(result.tokens, self.expected)
        margin = None
        if position is not None and position < len(self.expected):
            margin = top_two_margin(self.model, self.prompt_ids, self.expected[:position])
        cell = Cell(
            self.spec.label, self.seed, method, kv_cache, position is None, len(result.tokens), position, margin,
            result.cache_lengths_ok, sum(result.drafted), sum(result.accepted),
            result.draft_sources.count("ngram"),
        )  # fmt: skip
        return asdict(cell)


def _prompts(
    spec: TinyModel, dtype: torch.dtype, device: torch.device, num_prompts: int, max_new_tokens: int
):
    model = tiny_model(spec, spec.layers * 7 + spec.vocab, dtype=dtype, device=device)
    for prompt_seed in range(num_prompts):
        generator = torch.Generator().manual_seed(prompt_seed)
        prompt = torch.randint(0, spec.vocab, (1, 5 + 6 * prompt_seed), generator=generator).to(device)
        expected = reference_tokens(model, prompt, max_new_tokens)
        yield _Prompt(spec, model, prompt, prompt_seed, expected)


def run_matrix(
    dtype: torch.dtype,
    device: torch.device,
    kv_caches: Sequence[str],
    num_prompts: int = 2,
    max_new_tokens: int = 40,
    models: Sequence[TinyModel] = tuple(MODELS),
) -> list[dict[str, Any]]:
    """Decode every cell; returns one `Cell` (as a dict) per decode, identical or not."""
    cells: list[dict[str, Any]] = []
    for spec in models:
        for prompt in _prompts(TinyModel(*spec), dtype, device, num_prompts, max_new_tokens):
            for kv_cache in kv_caches:
                settings = DecodeSettings(max_new_tokens, GREEDY, frozenset(), kv_cache)
                result = autoregressive_decode(prompt.model, prompt.prompt_ids, settings)
                cells.append(prompt.cell("autoregressive", kv_cache, result))
                for method, max_draft_tokens, draft_exit in method_settings():
                    speculation = Speculation(
                        prompt.spec.plan, max_draft_tokens, draft_exit(), check_cache=True
                    )
                    result = self_speculative_decode(prompt.model, prompt.prompt_ids, settings, speculation)
                    cells.append(prompt.cell(method, kv_cache, result))
                for method, decode in new_method_settings():
                    result = decode(prompt.model, prompt.prompt_ids, settings, prompt.spec.plan)
                    cells.append(prompt.cell(method, kv_cache, result))
    return cells


def method_of(label: str) -> str:
    """The registered method a cell label decodes with ("K=4,threshold=0.5" is fixed-K self-speculation)."""
    family = label.split(",")[0]
    return {"adaptive": "adaptive_draft_exit"}.get(
        family, "self_speculative" if family.startswith("K=") else family
    )


def summarize_matrix(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Identity rate, identical / decodes per method, and every divergence (with its margin) of a matrix run."""
    divergent = [cell for cell in cells if not cell["identical"] or not cell["cache_lengths_ok"]]
    by_method: dict[str, list[int]] = {}
    for cell in cells:
        counts = by_method.setdefault(method_of(cell["method"]), [0, 0])
        counts[0] += bool(cell["identical"])
        counts[1] += 1
    return {
        "decodes": len(cells),
        "by_method": {name: {"identical": a, "decodes": b} for name, (a, b) in by_method.items()},
        "identical": sum(cell["identical"] for cell in cells),
        "identity_rate": sum(cell["identical"] for cell in cells) / len(cells) if cells else None,
        "cache_lengths_ok": all(cell["cache_lengths_ok"] for cell in cells),
        "divergences": divergent,
    }
