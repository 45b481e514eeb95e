"""The lossless check, in one package: the runner-based check of `make check-lossless`, the users' gate, and
the matrix of tiny models that the tests and gpu-check run.

`python -m replicate.lossless` runs every greedy self-speculative method (fixed K, static threshold, adaptive
draft-exit) through the real runner on a few HumanEval prompts, on the random tiny model and on SmolLM2-135M
(`runs`); it fails (exit status 1) on any difference from autoregressive decoding in fp32, on an unexplained
one in bf16/fp16. Run directories are kept under --out for inspection.

`python -m replicate.lossless --decoder my_package.module:decode` gates your own decoder instead (a decode
function, a `custom_generate` callable, or a path holding `custom_generate/generate.py`) over the tiny-model
matrix and SmolLM2; in Python and pytest: `replicate.lossless.check(decoder)` and the `lossless_check`
fixture (`pytest_plugins = ["replicate.testing"]`).

Modules: `reference` (generate's tokens, the top-two logit margin, the tiny models and their one builder),
`matrix` (every greedy method on the tiny models: tests/test_lossless.py and gpu-check), `gate` (`check`:
anyone's decoder against generate), `runs` (the runner-based check), `cli` (`main`, the command line).
"""

from __future__ import annotations

from replicate.lossless.cli import main
from replicate.lossless.gate import LosslessError, check
from replicate.lossless.runs import check_methods, fails_lossless, first_divergence

__all__ = ["LosslessError", "check", "check_methods", "fails_lossless", "first_divergence", "main"]
