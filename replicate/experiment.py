"""The paper's tables as Hydra experiments (`conf/experiment/table*.yaml`): list them, expand their sweep grid,
check that this machine can run them, and run one end to end (sweep, then report).

    python -m replicate.experiment list
    python -m replicate.experiment plan  table1 [overrides...]    # the jobs of the sweep, one per line
    python -m replicate.experiment check table1 [overrides...]    # what is missing here (exit 2 if anything)
    python -m replicate.experiment run   table1 [--smoke] [--sweep-dir DIR] [overrides...]

`run` checks first and stops at once, naming what is missing (no CUDA device, weights neither in the Hugging
Face cache nor downloadable, too few offline items, an empty skip set, no HumanEval sandbox), before any job
starts. It then runs
`python -m replicate -m experiment=<name> hydra.sweep.dir=<dir> [overrides]` (Hydra multirun: every job is a
run directory under the sweep directory; rerunning the same command resumes unfinished runs) and writes the
report (`python -m replicate.report <dir>`). `--smoke` runs the same grid on the embedded default model
(SmolLM2-135M on the CPU) with few samples and tokens, so the whole pipeline runs offline.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from omegaconf import DictConfig

from replicate.arguments import experiment_parser
from replicate.cli import user_errors
from replicate.overrides import did_you_mean, job_config, sweep_jobs
from replicate.paths import CONF_DIR
from replicate.schema import ConfigError

logger = logging.getLogger(__name__)

SMOKE_OVERRIDES = ("model=smollm2_135m", "n_samples=2", "max_new_tokens=32")
OUTPUT_ROOT = Path("outputs") / "experiments"


def experiments() -> list[str]:
    """Experiment files that reproduce a paper table (they carry the paper's numbers under `paper`) or
    compare methods (`experiment.name: methods`)."""
    names = []
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        content = yaml.safe_load(path.read_text()) or {}
        if "paper" in content or (content.get("experiment") or {}).get("name") == "methods":
            names.append(path.stem)
    return sorted(names, key=lambda name: (len(name), name))  # table2 before table10


def _check_name(name: str) -> None:
    known = experiments()
    if name not in known:
        raise ConfigError(
            f"unknown experiment {name!r}{did_you_mean(name, known)} (known: {', '.join(known)})"
        )


def grid(name: str, overrides: Sequence[str] = ()) -> list[list[str]]:
    """The override list of every job `python -m replicate -m experiment=<name> <overrides>` launches, expanded
    exactly as Hydra's basic sweeper does (a command-line override of a swept key replaces its sweep)."""
    _check_name(name)
    return sweep_jobs([f"experiment={name}", *overrides])


def job_configs(name: str, overrides: Sequence[str] = ()) -> list[DictConfig]:
    """The composed config of every job of the experiment's sweep (without Hydra's own node), each typed and
    checked (`replicate.config.run_config`): a bad value is a ConfigError naming the job, before any job runs."""
    from replicate.config import run_config

    jobs = grid(name, overrides)
    configs = []
    for number, job in enumerate(jobs):
        try:
            cfg = job_config(job)
            run_config(cfg)
        except ConfigError as error:
            raise ConfigError(
                f"experiment {name}, job {number} of {len(jobs)} ({' '.join(job)}): {error}"
            ) from None
        configs.append(cfg)
    return configs


def _hub_weights_problem(repo_id: str, revision: str) -> str | None:
    """None when the checkpoint is complete in the local Hugging Face cache or can be downloaded."""
    import json

    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        return found if isinstance(found, str) else None

    if cached("config.json"):
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            index = cached(index_name)
            if index:
                shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
                absent = [shard for shard in shards if not cached(shard)]
                if not absent:
                    return None
                break
        else:
            if cached("model.safetensors") or cached("pytorch_model.bin"):
                return None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return (
            f"the weights of {repo_id} (revision {revision}) are not (completely) in the Hugging Face cache and "
            "HF_HUB_OFFLINE=1 forbids downloading them: download them once with hub access "
            f"(HF_HUB_OFFLINE=0 hf download {repo_id}), or point HF_HOME at a cache that has them"
        )
    try:
        from huggingface_hub import auth_check

        auth_check(repo_id)
    except Exception as error:  # any failure here means the run would fail on loading
        return (
            f"the weights of {repo_id} are not cached and the hub refused them ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); log in (hf auth login) and accept "
            "the model's licence on the hub"
        )
    return None


def missing_requirements(configs: Sequence[DictConfig]) -> list[str]:
    """What this machine lacks to run these job configs: each entry names the job's model or task and says
    what to do. Only cheap checks (no model is loaded, no dataset downloaded); each model, skip set, task
    selection and sandbox is checked once."""
    from replicate.core.methods import method_config

    problems: list[str] = []
    seen: set[tuple] = set()

    def first(key: tuple) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    for cfg in configs:
        model = cfg.model
        if first(("model", model.name)):
            problems += _model_problems(model)
        drafts = method_config(cfg.method).drafts
        if drafts and not (model.skip.attention or model.skip.mlp) and first(("skip", model.name)):
            problems.append(
                f"model {model.name}: empty skip set, so {cfg.method.name} cannot run; run the layer "
                "search (python -m replicate.search) and put its result in conf/model/"
            )
        problems += _task_problems(cfg, first)
    return problems


def _model_problems(model: DictConfig) -> list[str]:
    """What the machine lacks for one model config: a CUDA GPU, or its weights."""
    import torch

    from replicate.core.gguf_parts import require_gguf_parts
    from replicate.core.model_config import model_config
    from replicate.core.models import gguf_path

    problems = []
    if str(model.device).startswith("cuda") and not torch.cuda.is_available():
        spread = (
            "; with device_map=auto it spreads over every visible GPU (the paper ran 70B on two A100-80GB)"
            if model.get("device_map")
            else ""
        )
        problems.append(
            f"model {model.name}: needs a CUDA GPU (model.device={model.device}) and this machine has none{spread}"
        )
    if model.source == "hub":
        problem = _hub_weights_problem(model.repo_id, model.revision)
        if problem:
            problems.append(f"model {model.name}: {problem}")
    elif model.source == "gguf":
        try:
            gguf_path(model.gguf_package, model.gguf_file)
        except FileNotFoundError as error:
            problems.append(f"model {model.name}: {error}")
    elif model.source == "gguf_parts":
        try:
            require_gguf_parts(model_config(model))
        except FileNotFoundError as error:
            problems.append(str(error))
    return problems


def _task_problems(cfg: DictConfig, first: Callable[[tuple], bool]) -> list[str]:
    """What the machine lacks for a job's task: its offline selection, or HumanEval's sandbox (`first(key)`
    says whether that check is still to be made)."""
    from tasks import SandboxSettings, SandboxUnavailableError, describe_sandbox, load_task
    from tasks.summarization import hub_is_offline

    task, problems = cfg.task, []
    if task.name in ("cnndm", "xsum") and hub_is_offline() and first(("task", task.name, cfg.n_samples)):
        try:
            load_task(task).samples(cfg.n_samples)
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"task {task.name}: {error}")
    if task.name == "humaneval" and first(("sandbox", task.name)):
        try:  # a probe program: scoring runs every completion in this sandbox
            describe_sandbox(SandboxSettings.from_config(task.execution))
        except SandboxUnavailableError as error:
            problems.append(f"task {task.name}: the execution sandbox is unavailable: {error}")
    return problems


def default_sweep_dir(name: str, smoke: bool) -> Path:
    return OUTPUT_ROOT / (f"{name}-smoke" if smoke else name)


def run_experiment(name: str, overrides: Sequence[str], smoke: bool, sweep_dir: Path | None) -> int:
    """Check, sweep, report. Returns the exit status (0 when every job finished)."""
    given = [override for override in overrides if override.startswith("hydra.sweep.dir=")]
    if given:  # the sweep directory as a Hydra override: the report must go where the runs go
        sweep_dir = Path(given[-1].split("=", 1)[1])
    overrides = [*(SMOKE_OVERRIDES if smoke else ()), *(o for o in overrides if o not in given)]
    sweep_dir = Path(sweep_dir or default_sweep_dir(name, smoke))
    configs = job_configs(name, overrides)
    problems = missing_requirements(configs)
    if problems:
        print(
            f"cannot run experiment {name} on this machine ({len(configs)} jobs); missing:", file=sys.stderr
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            f"nothing was started. A CPU smoke run of the same grid: make replicate EXP={name} SMOKE=1",
            file=sys.stderr,
        )
        return 2
    logger.info("experiment %s: %d jobs into %s", name, len(configs), sweep_dir)
    command = [
        sys.executable, "-m", "replicate", "run", "-m", f"experiment={name}", f"hydra.sweep.dir={sweep_dir}", *overrides,
    ]  # fmt: skip
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        logger.warning(
            "experiment %s: the sweep exited with status %d; reporting what finished", name, status
        )
    from replicate.report.write import write_report

    paths = write_report(sweep_dir)
    print(f"report: {paths['markdown']} and {paths['csv']}")
    return status


@user_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = experiment_parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    overrides = args.overrides
    if args.command == "list":
        if args.name or overrides:
            raise ConfigError(
                f"`experiment list` takes no arguments, got {' '.join([args.name, *overrides])}"
            )
        print("\n".join(experiments()))
        return 0
    if not args.name:
        raise ConfigError(
            f"name an experiment: replicate experiment {args.command} <{'|'.join(experiments())}>"
        )
    if "=" in args.name:
        raise ConfigError(
            f"name the experiment before the overrides: replicate experiment {args.command} <name> {args.name}"
        )
    _check_name(args.name)
    if args.command == "run":
        return run_experiment(args.name, overrides, args.smoke, args.sweep_dir)
    overrides = [*(SMOKE_OVERRIDES if args.smoke else ()), *overrides]
    if args.command == "plan":
        job_configs(args.name, overrides)  # every job's config checked, as `run` checks it
        for job in grid(args.name, overrides):
            print(" ".join(job))
        return 0
    problems = missing_requirements(job_configs(args.name, overrides))
    for problem in problems:
        print(f"missing: {problem}")
    print("ready" if not problems else f"{len(problems)} missing requirement(s)")
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
