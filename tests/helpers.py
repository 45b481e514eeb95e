"""Small builders shared by the tests."""

from __future__ import annotations

from replicate.lossless_matrix import TINY_SIZES, tiny_model

__all__ = ["TINY_SIZES", "tiny_model"]
