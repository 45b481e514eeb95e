"""`python -m replicate.gpu_check` (`make gpu-check`): one command that checks a CUDA machine in ten minutes.

It writes `outputs/gpu-check/report.md` and `results.json` with: the environment (GPU, driver, CUDA, torch,
transformers, the attention implementations installed); the lossless matrix of tests/test_lossless.py on the
GPU in fp32 (identity demanded) and bf16 (identity rate, every divergence with its margin); host reads per
cycle of the fixed-length draft loop; the cost profiles of LLaMA-2-7B- and 13B-shaped random models in bf16
under each attention implementation and KV cache kind, with the implementation's efficiency (each decode
priced with profiles measured next to it) and the speedup the paper's acceptance would reach on them beside
the paper's 1.57x; and SmolLM2 end to end through the runner. `--rehearse` runs the same code on the CPU with
tiny shapes (conf/gpu_check_rehearse.yaml; `make gpu-check REHEARSE=1`, run by `make test-slow`).

Modules: config (typed config), environment, lossless matrix and host syncs and shapes and end to end in
sections, syncs (counting host reads), run (budget, results.json), report (report.md). docs/gpu.md explains
what to expect and how to read a deviation from the paper.
"""
