"""The decoders the benchmark races against each other and the forward-pass clock (memory: `bench.memory`).

A contender decodes one prompt greedily and returns its tokens (and, for the project's own loops, the
`DecodeRecord` that samples.jsonl stores, so the cost model can read its cycle trace).
`race` runs all contenders over the same prompts in a rotating order, so that slow drift of the machine
(frequency, other processes) hits every contender alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from replicate.core.methods import Decoder
from replicate.core.models import LoadedModel
from replicate.core.passes import synchronize
from replicate.records import DecodeRecord


@dataclass
class Outcome:
    """One timed decode. seconds: wall clock around the call (device drained before and after);
    forward_seconds: the part spent inside calls of the model (see `forward_clock`)."""

    tokens: list[int]
    seconds: float
    forward_seconds: float
    forward_calls: int
    record: DecodeRecord | None = None


@dataclass
class Contender:
    """A named greedy decoder: `decode(prompt_ids (1, seq), max_new_tokens) -> (tokens, record or None)`.
    `warm` decodes without touching carried state (the adaptive threshold)."""

    name: str
    decode: Callable[[torch.Tensor, int], tuple[list[int], DecodeRecord | None]]
    warm: Callable[[torch.Tensor, int], Any]
    settings: dict[str, Any] = field(default_factory=dict)
    state: Callable[[], dict[str, Any]] = dict  # the decoder's carried state after the race (ours only)


def ours(name: str, decoder: Decoder) -> Contender:
    """One of the project's own loops (autoregressive or self-speculative), through its Decoder."""

    def decode(prompt_ids: torch.Tensor, max_new_tokens: int) -> tuple[list[int], DecodeRecord]:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(0)
        result = decoder(prompt_ids, max_new_tokens, generator)
        return result.tokens, DecodeRecord.from_result(result)

    def warm(prompt_ids: torch.Tensor, max_new_tokens: int) -> None:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(0)
        decoder.detached_copy()(prompt_ids, max_new_tokens, generator)

    settings = {"method": decoder.name, "max_draft_tokens": decoder.max_draft_tokens}
    return Contender(name, decode, warm, settings, decoder.state_dict)


@contextmanager
def _generation_defaults(model: torch.nn.Module, overrides: Mapping[str, Any]) -> Iterator[None]:
    """Assisted generation reads num_assistant_tokens & co. from the *assistant's* own generation_config
    (here the model itself), not from the config passed to generate: set them there for the call."""
    saved = {key: getattr(model.generation_config, key, None) for key in overrides}
    for key, value in overrides.items():
        setattr(model.generation_config, key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(model.generation_config, key, value)


def hf_generate(
    name: str, loaded: LoadedModel, extra: Mapping[str, Any], assistant_defaults: Mapping[str, Any]
) -> Contender:
    """transformers' `model.generate(do_sample=False, **extra)`: plain greedy decoding, or one of its
    built-in speculative modes (`assistant_early_exit=N`, `prompt_lookup_num_tokens=M`)."""
    eos = sorted(loaded.eos_token_ids)
    pad = getattr(loaded.tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else (eos[0] if eos else None)

    def decode(prompt_ids: torch.Tensor, max_new_tokens: int) -> tuple[list[int], None]:
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos or None,
            pad_token_id=pad,
            **extra,
        )
        with _generation_defaults(loaded.model, assistant_defaults), torch.inference_mode():
            output = loaded.model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), generation_config=config
            )
        return output[0, prompt_ids.shape[1] :].tolist(), None

    settings = {
        "generate": {"do_sample": False, **extra},
        "assistant_generation_config": dict(assistant_defaults),
    }
    return Contender(name, decode, decode, settings)


class ForwardClock:
    """Accumulates the seconds spent inside calls of a model (device drained at entry and exit), through
    forward hooks so that no decoding code is changed. The drains cost nothing extra on CPU and little on
    GPU, where every loop here syncs right after a forward anyway (it reads the chosen token)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device, self.seconds, self.calls, self._start = device, 0.0, 0, 0.0
        self._handles = [
            model.register_forward_pre_hook(self._enter),
            model.register_forward_hook(self._exit),
        ]

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def _exit(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def timed_decode(
    contender: Contender, prompt_ids: torch.Tensor, max_new_tokens: int, clock: ForwardClock
) -> Outcome:
    device = prompt_ids.device
    clock.seconds, clock.calls = 0.0, 0
    synchronize(device)
    start = time.perf_counter()
    tokens, record = contender.decode(prompt_ids, max_new_tokens)
    synchronize(device)
    return Outcome(tokens, time.perf_counter() - start, clock.seconds, clock.calls, record)


@dataclass(frozen=True)
class RaceSettings:
    """How long each decode of a race is and how often it runs: `repeats` passes over the prompts, after
    `warmup_runs` untimed decodes of `warmup_tokens` tokens by every contender."""

    max_new_tokens: int
    repeats: int
    warmup_runs: int
    warmup_tokens: int


def race(
    contenders: Sequence[Contender],
    prompts: Sequence[torch.Tensor],
    settings: RaceSettings,
    clock: ForwardClock,
    between: Callable[[int], Any] | None = None,
) -> dict[str, list[Outcome]]:
    """Every contender decodes every prompt `settings.repeats` times. Decode j (over repeats x prompts)
    starts with contender j mod n and goes round, so no contender always runs first or after the same one.
    `between(j)`, when given, runs before round j and once after the last (j = number of rounds), e.g. to
    measure a cost profile next to every round. Returns, per contender name, the outcomes in prompt-major
    order (repeat r of prompt i at r * len(prompts) + i)."""
    for _ in range(settings.warmup_runs):
        for contender in contenders:
            contender.warm(prompts[0], settings.warmup_tokens)
    outcomes: dict[str, list[Outcome]] = {contender.name: [] for contender in contenders}
    num_rounds = settings.repeats * len(prompts)
    for run_index in tqdm(range(num_rounds), desc="race (prompt x repeat)", unit="decode round"):
        if between is not None:
            between(run_index)
        prompt_ids = prompts[run_index % len(prompts)]
        shift = run_index % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            outcomes[contender.name].append(
                timed_decode(contender, prompt_ids, settings.max_new_tokens, clock)
            )
    if between is not None:
        between(num_rounds)
    return outcomes
