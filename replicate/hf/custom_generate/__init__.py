"""The `custom_generate/` directory transformers loads from a path or hub repo (`generate.py` inside it);
`replicate.hf.CUSTOM_GENERATE_PATH` is the directory that holds this one."""
