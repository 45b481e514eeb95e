"""Every config composes; unknown names and bad values are clear errors naming the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from replicate.config import ConfigError, compose_config, options, run_config
from replicate.core.methods import build_draft_exit
from replicate.core.models import resolve_device
from replicate.search.config import search_run_config

# A copy of ../shared/paper/reference.yaml (the paper's numbers and published skip sets), shipped so that a
# clone with nothing beside it checks the experiment files against the paper.
REFERENCE = Path(__file__).resolve().parent / "data" / "paper_reference.yaml"


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("task", options("task"))
@pytest.mark.parametrize("method", options("method"))
def test_every_combination_composes(model, task, method):
    cfg = compose_config([f"model={model}", f"task={task}", f"method={method}"])
    assert (cfg.model.name, cfg.task.name, cfg.method.name) == (model, task, method)
    assert cfg.n_samples == cfg.task.n_samples and cfg.max_new_tokens == cfg.task.max_new_tokens
    build_draft_exit(cfg.method)
    for key in ("source", "dtype", "device", "attn_implementation", "max_context"):
        assert key in cfg.model, f"model/{model}.yaml lacks {key}"
    assert set(cfg.model.skip) >= {"attention", "mlp", "source"}


@pytest.mark.parametrize("group,name", [("model", "llama3_8b"), ("task", "gsm8k"), ("method", "medusa")])
def test_unknown_names_list_the_options(group, name):
    with pytest.raises(ConfigError, match=f"unknown {group} '{name}'.*options: "):
        compose_config([f"{group}={name}"])


@pytest.mark.parametrize("model", ["llama2_13b", "llama2_13b_chat", "llama2_70b", "codellama_13b"])
def test_published_skip_sets_match_the_paper(model):
    published = yaml.safe_load(REFERENCE.read_text())["skip_layers"][model]
    cfg = compose_config([f"model={model}"])
    assert list(cfg.model.skip.attention) == published["attention"]
    assert list(cfg.model.skip.mlp) == published["mlp"]


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "method=self_speculative method.max_draft_tokens=0",
            r"method.max_draft_tokens=0 is not allowed: must be >= 1",
        ),
        (
            "method=self_speculative method.threshold=1.5",
            r"method.threshold=1.5 is not allowed: must be in \[0.0, 1.0\]",
        ),
        (
            "method=adaptive_draft_exit method.initial_threshold=-0.1",
            r"method.initial_threshold=-0.1 is not allowed",
        ),
        # every bad value of issue #10, refused before any model loads, naming key, value and what is allowed
        ("n_samples=-1", r"n_samples=-1 is not allowed: must be >= 1"),
        ("n_samples=0", r"n_samples=0 is not allowed: must be >= 1"),
        ("n_samples=abc", r"n_samples must be an integer, got 'abc'"),
        ("seed=abc", r"seed must be an integer, got 'abc'"),
        ("method.max_draft_tokens=2.5", r"method.max_draft_tokens must be an integer, got 2.5"),
        ("model.skip.attention=[1.7]", r"model.skip.attention\[0\] must be an integer, got 1.7"),
        ("model.skip.attention=[a]", r"model.skip.attention\[0\] must be an integer, got 'a'"),
        (
            "model.skip.attention=[30]",
            r"skip attention ids \[30\] are out of range for a model with 30 layers",
        ),
        ("method.threshold_step=nan", r"method.threshold_step must be a finite number, got nan"),
        ("sampling.temperature=nan", r"sampling.temperature must be a finite number, got nan"),
        ("sampling.temperature=inf", r"sampling.temperature must be a finite number, got inf"),
        ("sampling.top_p=0", r"sampling.top_p=0.0 is not allowed: must be in \(0, 1\]"),
        (
            "+method.max_draft_token=4",
            r"unknown key method.max_draft_token .*did you mean method.max_draft_tokens",
        ),
        ("+sampling.temprature=0.2", r"unknown key sampling.temprature .*did you mean sampling.temperature"),
        ("model.dtype=float64", r"model.dtype='float64' is not allowed: must be one of"),
        ("model.device=gpu", r"model.device='gpu' is not allowed"),
        ("max_new_tokens=8190", r"max_new_tokens=8190 is not allowed: leaves no room for a prompt"),
        ("task.metric=pass@10", r"task.metric='pass@10' is not allowed: must be pass@k"),
        ("task=cnndm task.metric=bleu", r"task.metric='bleu' is not allowed: must be one of rouge.types"),
        ("run_baseline=maybe", r"run_baseline must be true or false, got 'maybe'"),
        ("bootstrap.resamples=0", r"bootstrap.resamples=0 is not allowed: must be >= 1"),
        ("bootstrap.confidence=1.5", r"bootstrap.confidence=1.5 is not allowed: must be in \(0, 1\)"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        run_config(compose_config(override.split()))


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_into_a_valid_run_config(name):
    """As lightning-hydra-template's sweep test: a broken experiment file fails here, not on a GPU."""
    config = run_config(compose_config([f"experiment={name}"]))
    assert config.experiment["name"] == name


def test_bad_values_end_the_cli_with_one_clear_line(tmp_path):
    """Through the real CLI: no traceback, the last line names the key, and nothing is written."""
    command = [
        sys.executable,
        "-m",
        "replicate",
        "model=tiny_llama",
        "n_samples=-1",
        f"hydra.run.dir={tmp_path}/r",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: n_samples=-1 is not allowed: must be >= 1"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r" / "config.yaml").exists()


def test_missing_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize("preset", options("search"))
def test_every_search_preset_is_a_valid_search_config(preset):
    checked = search_run_config(compose_config([f"search={preset}"], "search_config"))
    assert checked.search.name == preset


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.iterations=-1", r"search.iterations=-1 is not allowed: must be >= 0"),
        ("search.iterations=2.5", r"search.iterations must be an integer, got 2.5"),
        ("search.skip_threshold=nan", r"search.skip_threshold must be a finite number, got nan"),
        ("search.skip_threshold=1.0", r"search.skip_threshold=1.0 is not allowed: must be in \[0, 1\)"),
        ("+search.iteration=3", r"unknown key search.iteration .*did you mean search.iterations\?"),
        ("search.strategy=knapsak", r"search.strategy='knapsak' is not allowed: must be one of 'bayesian'"),
        ("search.acceptance_estimate=teacher_forced", r"search.objective='tokens_per_s' is not allowed"),
        ("search.knapsack.acceptance_floors=[1.5]", r"acceptance_floors=1.5 is not allowed: each floor"),
        ("search.min_skipped=5 search.max_skipped=2", r"search.max_skipped=2 is not allowed: must be >= min"),
        ("search.cost_profile.source=guess", r"search.cost_profile.source='guess' is not allowed"),
        ("search.time_budget_minutes=0", r"search.time_budget_minutes=0.0 is not allowed: must be > 0"),
        ("method.max_draft_tokens=0", r"method.max_draft_tokens=0 is not allowed"),
        ("sampling.temperature=-1", r"sampling.temperature=-1"),
    ],
)
def test_bad_search_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        search_run_config(compose_config(override.split(), "search_config"))


def test_the_search_cli_refuses_a_typo_in_one_line_before_loading(tmp_path):
    command = [sys.executable, "-m", "replicate.search", "model=tiny_llama", "search.iterations=-3"]
    result = subprocess.run(
        [*command, f"hydra.run.dir={tmp_path}/s"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: search.iterations=-3 is not allowed: must be >= 0")
    assert not (tmp_path / "s" / "trials.jsonl").exists()
