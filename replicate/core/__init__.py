"""The decoding core: skipping sub-blocks, sampling and acceptance math, draft exit, the decoding loops,
the method registry and model loading. Imports nothing from run/, bench/, report/ or search/."""
