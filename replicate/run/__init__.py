"""One run of a method on a task (`replicate run`), and its records; never imports report/.

Modules: `runner` (the run: typed config, task and data, resume, model, decoders, per-sample records,
metrics.json), `metrics` (every statistic of a run: speedup, acceptance, identity, intervals), `scoring`
(scoring after decoding, rescore), `exclusions` (the paper's baseline filter, applied visibly), `replay`
(the top-two logits where a greedy method first differs), `rundir` (the run directory's files, fingerprint,
resume), `environment` (versions, device, git commit); `__main__` is the Hydra app."""
