"""Every config composes; unknown names and bad values are clear errors naming the value."""

from __future__ import annotations

import pytest
import yaml
from hydra.errors import MissingConfigException

from replicate.config import CONF_DIR, compose_config, options
from replicate.core.methods import build_draft_exit
from replicate.core.models import resolve_device

REFERENCE = CONF_DIR.parent.parent / "shared" / "paper" / "reference.yaml"


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
    with pytest.raises(MissingConfigException, match=name):
        compose_config([f"{group}={name}"])


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/paper/reference.yaml not present")
@pytest.mark.parametrize("model", ["llama2_13b", "llama2_13b_chat", "llama2_70b", "codellama_13b"])
def test_published_skip_sets_match_the_paper(model):
    published = yaml.safe_load(REFERENCE.read_text())["skip_layers"][model]
    cfg = compose_config([f"model={model}"])
    assert list(cfg.model.skip.attention) == published["attention"]
    assert list(cfg.model.skip.mlp) == published["mlp"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("method=self_speculative method.max_draft_tokens=0", "max_draft_tokens must be >= 1, got 0"),
        ("method=self_speculative method.threshold=1.5", "threshold must be in \\[0, 1\\], got 1.5"),
        ("method=adaptive_draft_exit method.initial_threshold=-0.1", "initial_threshold must be in"),
    ],
)
def test_bad_method_values_are_named(override, message):
    cfg = compose_config(override.split())
    with pytest.raises(ValueError, match=message):
        build_draft_exit(cfg.method)


def test_missing_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")
