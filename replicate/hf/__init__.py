"""transformers integration: self-speculative decoding through `model.generate`.

    import replicate.hf
    out = model.generate(**inputs, custom_generate=replicate.hf.self_speculative_generate, max_new_tokens=64,
                         model_name="smollm2_135m")
    out = model.generate(**inputs, custom_generate=replicate.hf.CUSTOM_GENERATE_PATH, trust_remote_code=True,
                         skip_attention=[9], skip_mlp=[3], max_new_tokens=64)

Details: `replicate.hf.generate` (what is honoured and refused), `replicate.hf.settings` (where the skip set
and method settings come from).
"""

from __future__ import annotations

from pathlib import Path

from replicate.hf.generate import self_speculative_generate

# The directory transformers' `custom_generate=<path>` expects: it holds `custom_generate/generate.py`.
CUSTOM_GENERATE_PATH = str(Path(__file__).resolve().parent)

__all__ = ["CUSTOM_GENERATE_PATH", "self_speculative_generate"]
