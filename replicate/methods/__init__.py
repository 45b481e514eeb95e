"""The methods beyond the paper, one module each: `prompt_lookup` (prompt lookup decoding in the project's
loop), `hybrid` (an n-gram draft when the context has one, else the paper's layer-skipped draft), `on_the_fly`
(the skip set chosen during decoding, a simplified SWIFT) and `transformers_prompt_lookup` (transformers' own
prompt lookup, hosted as a peer). Each module holds its method's config dataclass, entered in the registry
with `replicate.core.methods.register_method`, and its decoding loop; `load_method_modules` imports every
module here the first time the registry is used, and `conf/method/<name>.yaml` holds each method's values."""
