"""The users' lossless gate, kept at this import path: it lives in `replicate.lossless.gate`
(`replicate.lossless.check(decoder)`); the contract of `decoder` is that module's docstring."""

from replicate.lossless.gate import (
    Case,
    Divergence,
    GateSummary,
    LosslessError,
    cases,
    check,
    decoder_kind,
    divergence,
    run_decoder,
    smollm2_cases,
    tiny_cases,
)
from replicate.lossless.reference import reference_tokens, top_two_margin

__all__ = [
    "Case",
    "Divergence",
    "GateSummary",
    "LosslessError",
    "cases",
    "check",
    "decoder_kind",
    "divergence",
    "reference_tokens",
    "run_decoder",
    "smollm2_cases",
    "tiny_cases",
    "top_two_margin",
]
