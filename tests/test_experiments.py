"""The paper-table experiments: every job of every sweep composes and resolves, carries the paper's numbers and
settings, and can be instantiated; every run records what it takes to reproduce it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from replicate.config import CONF_DIR, compose_config, options
from replicate.core.methods import build_decoder, build_draft_exit
from replicate.core.models import load_model
from replicate.core.sampling import SamplingConfig
from replicate.experiment import SMOKE_OVERRIDES, experiments, grid, job_configs, missing_requirements
from replicate.run.runner import run
from tasks import load_task

# A copy of ../shared/paper/reference.yaml (the paper's numbers and published skip sets), shipped so that a
# clone with nothing beside it checks the experiment files against the paper.
REFERENCE = Path(__file__).resolve().parent / "data" / "paper_reference.yaml"
JOBS = {"table1": 12, "table2": 2, "table3": 5, "table4": 5, "table10": 5}
ADAPTIVE_SETTINGS = {
    "initial_threshold": 0.6,
    "threshold_step": 0.01,
    "acceptance_ema": 0.5,
    "threshold_ema": 0.9,
}


def reference() -> dict:
    return yaml.safe_load(REFERENCE.read_text())


@pytest.fixture(scope="module")
def configs() -> dict[str, list]:
    return {name: job_configs(name) for name in JOBS}


def test_the_paper_tables_are_the_experiments():
    assert set(JOBS) <= set(experiments())


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_job_composes_resolves_and_builds(name, configs):
    jobs = configs[name]
    assert len(jobs) == JOBS[name] == len(grid(name))
    for cfg in jobs:
        resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert resolved["experiment"]["name"] == name
        assert (resolved["max_new_tokens"], resolved["n_samples"]) == (512, 164 if name == "table2" else 1000)
        build_draft_exit(cfg.method)
        SamplingConfig(**cfg.sampling)
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_") and "python -m replicate -m experiment=" in text
    assert f"make replicate{'-' if name in ('table1', 'table2') else ' EXP='}" in text


@pytest.mark.parametrize("name", sorted(JOBS))
def test_paper_numbers_and_settings_match_the_reference(name, configs):
    paper = reference()
    cfg = configs[name][0]
    assert OmegaConf.to_container(cfg.paper.rows) == paper[name]["rows"]
    decoding = paper["decoding"]
    for job in configs[name]:
        method = OmegaConf.to_container(job.method, resolve=True)
        if method["name"] != "adaptive_draft_exit":
            assert method["threshold"] in (0.0, 0.2, 0.4, 0.6, 0.8)
            continue
        assert {key: method[key] for key in ADAPTIVE_SETTINGS} == ADAPTIVE_SETTINGS
        assert method["initial_threshold"] == decoding["initial_threshold"] and not method["reset_per_sample"]
        expected_alpha = paper["target_acceptance"][job.task.name][job.model.name]
        assert method["target_acceptance"] == expected_alpha, (job.model.name, job.task.name)
        if name != "table10":
            assert method["max_draft_tokens"] == decoding["max_draft_tokens"]


def test_the_grids_are_the_papers(configs):
    table1 = {
        (c.model.name, c.task.name, c.sampling.temperature, c.sampling.top_p) for c in configs["table1"]
    }
    assert len(table1) == 12 and all(top_p == 0.85 for *_, top_p in table1)
    pass_at_10 = next(c for c in configs["table2"] if c.task.metric == "pass@10")
    assert pass_at_10.task.samples_per_problem == 10
    assert OmegaConf.to_container(pass_at_10.sampling) == {"temperature": 0.6, "top_p": 0.95, "top_k": 0}
    fixed = [c.method.max_draft_tokens for c in configs["table3"] if c.method.name == "self_speculative"]
    assert fixed == [2, 4, 6, 8] and all(c.method.get("threshold", 0.0) == 0.0 for c in configs["table3"])
    assert [c.method.get("threshold") for c in configs["table4"]] == [0.2, 0.4, 0.6, 0.8, None]
    assert [c.method.max_draft_tokens for c in configs["table10"]] == [10, 12, 14, 16, 18]


def test_smoke_runs_the_same_grid_on_the_embedded_model():
    jobs = job_configs("table1", SMOKE_OVERRIDES)
    assert len(jobs) == 4 and {job.model.name for job in jobs} == {"smollm2_135m"}
    assert {(job.n_samples, job.max_new_tokens) for job in jobs} == {(2, 32)}
    assert all(job.method.target_acceptance == 0.9 for job in jobs)  # the fallback alpha
    assert missing_requirements(jobs) == []


def test_every_task_and_method_instantiates_on_the_tiny_model():
    loaded = load_model(compose_config(["model=tiny_llama"]).model)
    for task_name in options("task"):
        task = load_task(compose_config([f"task={task_name}"]).task)
        assert len(task.samples(1)) == 1
        for method in options("method"):
            cfg = compose_config(["model=tiny_llama", f"task={task_name}", f"method={method}"])
            assert build_decoder(cfg.method, loaded, SamplingConfig(**cfg.sampling)).name == method


def test_every_run_records_what_reproduces_it(tmp_path):
    overrides = ["model=tiny_llama", "task=humaneval", "method=adaptive_draft_exit", "seed=7"]
    run(compose_config([*overrides, "n_samples=1", "max_new_tokens=4", "warmup.runs=0"]), tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["seed"] == 7 and config["sampling"] and config["method"]["target_acceptance"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["selection"]["problem_ids"] == ["HumanEval/0"]
    assert {"source", "seed", "dtype", "attn_implementation"} <= set(metrics["model_identity"])
    environment = metrics["environment"]
    assert {"date", "python", "device", "git_commit", "cpu", "torch_threads"} <= set(environment)
    assert environment["versions"]["torch"] and environment["versions"]["transformers"]
    # The summarization tasks record the data file (or hub revision) and the exact sample ids.
    task = load_task(compose_config(["task=cnndm"]).task)
    ids = [sample.id for sample in task.samples(2)]
    selection = task.selection()
    assert selection["sample_ids"] == ids and (
        selection.get("file_sha256") or selection.get("resolved_revision")
    )
