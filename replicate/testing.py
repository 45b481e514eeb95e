"""pytest support for gating your own decoder: the `lossless_check` fixture.

In your `conftest.py`:

    pytest_plugins = ["replicate.testing"]

then in a test:

    def test_my_decoder_is_lossless(lossless_check):
        lossless_check(my_package.decode)                       # tiny-model matrix and SmolLM2
        lossless_check(my_package.decode, models=["tiny_llama"], options={"max_draft_tokens": 4})

The fixture is `replicate.lossless.check` (`replicate.lossless.gate`): it fails the test with the first divergence
(case, position, both tokens, the full model's top-2 logit margin there) as an AssertionError.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from replicate.lossless.gate import LosslessError, check

__all__ = ["LosslessError", "lossless_check"]


@pytest.fixture
def lossless_check() -> Callable[..., object]:
    """`check(decoder, models=..., options=..., kind=...)` from `replicate.lossless.gate`."""
    return check
