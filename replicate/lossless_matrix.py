"""The lossless matrix: every greedy method against `model.generate(do_sample=False)` on tiny random Llamas.

One definition, run in two places: `tests/test_lossless.py` demands token identity on every cell in fp32 on
the CPU, and `python -m replicate.gpu_check` runs the same cells on the GPU in fp32 (identity demanded) and in
bf16, where a multi-token verification pass and one-token decoding use different kernels, so near-ties may
flip: there every divergence is reported with the reference's top-two logit margin at the first differing
token (near 0: a numerical near-tie; large: a bug).

Models (`MODELS`): depths 2-8, full and grouped-query attention, vocabularies 258-1000, eager and SDPA
attention, skip sets from empty to everything; the skipped sub-blocks' output projections are damped so
that drafts are accepted sometimes and rejected sometimes. Methods (`method_settings`): fixed K = 1..12,
static thresholds 0.3-1.0, and two adaptive draft-exit settings; plus autoregressive decoding; and the methods
beyond the paper (`new_method_settings`): prompt lookup, hybrid n-gram / layer-skipped drafting and on-the-fly
skip-set selection, each in several settings (the last two on both KV caches like the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    forward,
    self_speculative_decode,
)
from replicate.core.draft_exit import AdaptiveThreshold, DraftExit, StaticThreshold
from replicate.core.kv_cache import make_cache
from replicate.core.models import _random_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.records import DecodeResult

GREEDY = SamplingConfig()
TINY_SIZES = {"hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 512}
# (layers, heads, kv heads, vocab, attention impl, skipped attention, skipped mlp)
MODELS = [
    (2, 4, 4, 258, "sdpa", (), ()),
    (2, 4, 2, 320, "eager", (0,), ()),
    (4, 4, 2, 320, "sdpa", (0,), (2,)),
    (4, 4, 1, 1000, "eager", (1, 3), (0,)),
    (6, 8, 8, 512, "sdpa", (1, 3), (0, 5)),
    (6, 4, 2, 320, "eager", (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4)),
    (8, 4, 2, 400, "sdpa", (0, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5, 6, 7)),
]
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
NewMethodDecode = Callable[[nn.Module, torch.Tensor, int, SkipPlan, str], DecodeResult]


def new_method_settings() -> list[tuple[str, NewMethodDecode]]:
    """(label, decode(model, prompt, max_new_tokens, plan, kv_cache)) of every cell of the methods beyond
    the paper, greedy, with the cache check on."""
    from replicate.core.ngram import NgramSettings
    from replicate.methods.hybrid import hybrid_decode
    from replicate.methods.on_the_fly import OnTheFly, SkipSetSearch, on_the_fly_decode
    from replicate.methods.prompt_lookup import prompt_lookup_decode

    def settings(tokens: int, kv_cache: str) -> DecodeSettings:
        return DecodeSettings(tokens, GREEDY, frozenset(), kv_cache)

    cells: list[tuple[str, NewMethodDecode]] = []
    for k, n in PROMPT_LOOKUP_SETTINGS:
        cells.append((
            f"prompt_lookup,K={k},ngram={n}",
            lambda model, prompt, tokens, plan, kv, k=k, n=n: prompt_lookup_decode(
                model, prompt, settings(tokens, kv), NgramSettings(k, n), check_cache=True
            ),
        ))  # fmt: skip
    for k, ngram_k, initial, target in HYBRID_SETTINGS:
        cells.append((
            f"hybrid,K={k},ngram_K={ngram_k},gamma0={initial},alpha={target}",
            lambda model, prompt, tokens, plan, kv, k=k, g=ngram_k, i=initial, t=target: hybrid_decode(
                model, prompt, settings(tokens, kv), Speculation(plan, k, adaptive(i, t), check_cache=True),
                NgramSettings(g, 2),
            ),
        ))  # fmt: skip
    for k, threshold, fraction in ON_THE_FLY_SETTINGS:
        cells.append((
            f"on_the_fly,K={k},threshold={threshold},skip_fraction={fraction}",
            lambda model, prompt, tokens, plan, kv, k=k, th=threshold, f=fraction: on_the_fly_decode(
                model, prompt, settings(tokens, kv),
                OnTheFly(SkipSetSearch(th, f, 8, 2, 16, 0), k, check_cache=True),
            ),
        ))  # fmt: skip
    return cells


def tiny_model(
    layers: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    attention: str,
    plan: SkipPlan,
    seed: int = 0,
    output_scale: float = 0.1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """A random Llama whose skipped sub-blocks are damped (so drafts are accepted sometimes); built in fp32
    and then cast, so the fp32 and bf16 matrices decode the same weights up to rounding."""
    cfg = {
        **TINY_SIZES,
        "vocab_size": vocab,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "attn_implementation": attention,
        "seed": seed,
        "skip_output_scale": output_scale,
    }
    model, _ = _random_model(cfg, torch.float32, plan)
    return model.to(device=device, dtype=dtype).eval()


def reference_tokens(
    model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int, eos: int | None
) -> list[int]:
    """The library's greedy output: the ground truth every method must reproduce."""
    output = model.generate(
        input_ids=prompt_ids,
        attention_mask=torch.ones_like(prompt_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return output[0, prompt_ids.shape[1] :].tolist()


@torch.inference_mode()
def reference_margin(
    model: nn.Module, prompt_ids: torch.Tensor, reference: Sequence[int], position: int
) -> float:
    """The reference's gap between its top two logits at new-token `position` (from one pass over the
    prompt and the reference's first `position` tokens)."""
    ids = torch.cat([prompt_ids, torch.tensor([list(reference[:position])], device=prompt_ids.device)], dim=1)
    logits = forward(model, ids, make_cache("dynamic", model.config, ids.shape[1]), 0, last_only=True)[0]
    top_two = torch.topk(logits.float(), 2).values
    return float(top_two[0] - top_two[1])


def first_difference(tokens: Sequence[int], reference: Sequence[int]) -> int | None:
    for position, (a, b) in enumerate(zip(tokens, reference)):
        if a != b:
            return position
    return None if len(tokens) == len(reference) else min(len(tokens), len(reference))


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
    ngram_cycles: int = 0


def _cell(model, prompt, expected, label, prompt_seed, method, kv_cache, result: DecodeResult) -> dict:
    position = first_difference(result.tokens, expected)
    margin = None
    if position is not None and position < len(expected):
        margin = reference_margin(model, prompt, expected, position)
    cell = Cell(
        label, prompt_seed, method, kv_cache, position is None, len(result.tokens), position, margin,
        result.cache_lengths_ok, sum(result.drafted), sum(result.accepted), result.draft_sources.count("ngram"),
    )  # fmt: skip
    return asdict(cell)


def run_matrix(
    dtype: torch.dtype,
    device: torch.device,
    kv_caches: Sequence[str],
    num_prompts: int = 2,
    max_new_tokens: int = 40,
    models: Sequence[tuple] = tuple(MODELS),
) -> list[dict[str, Any]]:
    """Decode every cell; returns one `Cell` (as a dict) per decode, identical or not."""
    cells: list[dict[str, Any]] = []
    for layers, heads, kv_heads, vocab, attention, skip_attention, skip_mlp in models:
        plan = SkipPlan(skip_attention, skip_mlp)
        seed = layers * 7 + vocab
        model = tiny_model(layers, heads, kv_heads, vocab, attention, plan, seed, dtype=dtype, device=device)
        label = (
            f"L{layers}-H{heads}/{kv_heads}-V{vocab}-{attention}-skip{list(skip_attention)}/{list(skip_mlp)}"
        )
        for prompt_seed in range(num_prompts):
            generator = torch.Generator().manual_seed(prompt_seed)
            prompt = torch.randint(0, vocab, (1, 5 + 6 * prompt_seed), generator=generator).to(device)
            expected = reference_tokens(model, prompt, max_new_tokens, eos=None)
            where = (model, prompt, expected, label, prompt_seed)
            for kv_cache in kv_caches:
                settings = DecodeSettings(max_new_tokens, GREEDY, frozenset(), kv_cache)
                result = autoregressive_decode(model, prompt, settings)
                cells.append(_cell(*where, "autoregressive", kv_cache, result))
                for method, max_draft_tokens, draft_exit in method_settings():
                    speculation = Speculation(plan, max_draft_tokens, draft_exit(), check_cache=True)
                    result = self_speculative_decode(model, prompt, settings, speculation)
                    cells.append(_cell(*where, method, kv_cache, result))
                for method, decode in new_method_settings():
                    result = decode(model, prompt, max_new_tokens, plan, kv_cache)
                    cells.append(_cell(*where, method, kv_cache, result))
    return cells


def summarize_matrix(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Identity rate and every divergence (with its margin) of a matrix run."""
    divergent = [cell for cell in cells if not cell["identical"] or not cell["cache_lengths_ok"]]
    return {
        "decodes": len(cells),
        "identical": sum(cell["identical"] for cell in cells),
        "identity_rate": sum(cell["identical"] for cell in cells) / len(cells) if cells else None,
        "cache_lengths_ok": all(cell["cache_lengths_ok"] for cell in cells),
        "divergences": divergent,
    }
