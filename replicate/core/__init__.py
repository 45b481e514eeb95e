"""The decoding core; imports nothing from run/, bench/, report/ or search/.

Modules: `skipping` (SkipPlan, skipping sub-blocks, restored on exit), `sampling` (sampling and acceptance
math) and `sampling_config` (its typed settings, no torch), `draft_exit` (static and adaptive thresholds),
`passes` (the one forward pass), `kv_cache`, `attention` (attention implementations), `cycle` (one
draft-then-verify cycle), `decoding` (one loop per method), `methods` (the method registry, `Decoder`),
`model_config` (typed model configs), `models` (loading), `architectures`, `gguf_parts`, `prompts`."""
