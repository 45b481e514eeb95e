"""Self-speculative decoding for `model.generate(custom_generate=<path>, trust_remote_code=True)`.

transformers loads this file from `<path>/custom_generate/generate.py` (`<path>` is
`replicate.hf.CUSTOM_GENERATE_PATH`, or a hub repo holding a copy of this directory) and calls `generate` with
every argument of the user's `generate` call. It hands them back to transformers' own `generate` with the
project's decoding method as a callable `custom_generate`, so the GenerationConfig, warpers, stopping criteria
and streamer are prepared exactly as for any other decoding method. Needs the `replicate-ssd` package
(this repository) installed.
"""

from transformers.generation.utils import GenerationMixin

from replicate.hf.generate import self_speculative_generate


def generate(model, **generate_arguments):
    """`model.generate(**generate_arguments)` decoded self-speculatively (see `replicate.hf.generate`)."""
    # GenerationMixin.generate, not model.generate: a model loaded with trust_remote_code may have this very
    # function bound as its `generate`.
    return GenerationMixin.generate(model, custom_generate=self_speculative_generate, **generate_arguments)
