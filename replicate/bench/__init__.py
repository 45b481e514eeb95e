"""`python -m replicate.bench` (`replicate bench`): speed you can trust and explain (docs/benchmarks.md).

Modules: `run` (the benchmark's sections, JSON and plot), `config` (its typed config), `lineup` (who races),
`contenders` (the decoders raced, the race, the forward-pass clock), `profiles` (cost profiles interleaved
with the race, per attention implementation and KV cache), `summary` (from race outcomes to the JSON's
numbers), `memory` (peak memory of a decode), `gpu` and `gpu_config` (the GPU-shapes section), `plot`,
`pick_k` (the speedup-optimal K from a cost profile)."""
