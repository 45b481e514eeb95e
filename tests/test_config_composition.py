"""Config defined once: the paper's adaptive draft-exit settings live in conf/method/adaptive_draft_exit.yaml,
and every experiment row that runs the method composes to exactly those settings (expected values written
here by hand from the paper's Table 6 / section 4.1), with only alpha (target_acceptance) set per model and
task by the experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from replicate.config import compose_config
from replicate.schema import plain

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("table*.yaml"))
PAPER_ADAPTIVE = {
    "name": "adaptive_draft_exit",
    "max_draft_tokens": 12,  # K
    "initial_threshold": 0.6,  # gamma_0
    "threshold_step": 0.01,  # epsilon
    "acceptance_ema": 0.5,  # beta_1
    "threshold_ema": 0.9,  # beta_2
    "reset_per_sample": False,  # gamma carries over from sample to sample
    "draft_confidence": "paper",
}
PAPER_ALPHA = {("table2", "codellama_13b", "humaneval"): 0.90}
# Rows that change K on purpose: table2_cpu's speedup-optimal K of this CPU (conf/experiment/table2_cpu.yaml).
K_OVERRIDES = {("table2_cpu", "adaptive_cpu_k"): {"max_draft_tokens": 2}}


def _rows(name: str) -> list[str | None]:
    experiment = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["experiment"]
    return sorted(experiment.get("rows", {})) or [None]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_adaptive_row_composes_to_the_papers_settings(name):
    adaptive_rows = 0
    for row in _rows(name):
        cfg = plain(compose_config([f"experiment={name}", *([f"experiment.row={row}"] if row else [])]))
        method = cfg["method"]
        if method["name"] != "adaptive_draft_exit":
            assert method["name"] == "self_speculative" and method["draft_confidence"] == "paper", (name, row)
            continue
        adaptive_rows += 1
        expected = {
            **PAPER_ADAPTIVE,
            "target_acceptance": cfg["experiment"]["target_acceptance"],
            **K_OVERRIDES.get((name, row), {}),
        }
        assert method == expected, (name, row)
        alpha = PAPER_ALPHA.get((name, cfg["model"]["name"], cfg["task"]["name"]))
        if alpha is not None:
            assert method["target_acceptance"] == alpha
    assert adaptive_rows >= 1, f"{name}: no row runs the paper's method"


def test_only_the_method_group_writes_the_papers_hyperparameters():
    """gamma_0, epsilon, beta_1 and beta_2 are written once, in conf/method/ (an experiment restating them would
    drift from it unnoticed)."""
    keys = ("initial_threshold:", "threshold_step:", "acceptance_ema:", "threshold_ema:")
    writers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "conf").rglob("*.yaml")
        if any(key in line.split("#")[0] for line in path.read_text().splitlines() for key in keys)
    )
    assert writers == ["conf/method/adaptive_draft_exit.yaml"], writers


def test_hybrid_drafts_with_the_papers_adaptive_settings_composed_not_restated():
    """hybrid's layer-skipped drafts take the paper's method's settings from conf/method/adaptive_draft_exit.yaml
    (Hydra defaults), plus its own n-gram keys; the values expected here are the paper's, written by hand."""
    method = plain(compose_config(["method=hybrid"]))["method"]
    assert method == {
        **PAPER_ADAPTIVE,
        "name": "hybrid",
        "target_acceptance": 0.9,  # the method group's alpha (experiments set it per model and task)
        "ngram_draft_tokens": 10,
        "max_matching_ngram_size": 2,
    }
