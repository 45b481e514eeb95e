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
PAPER_ALPHA = {
    ("table2", "codellama_13b", "humaneval"): 0.90,
    ("table1_cpu", "qwen2_5_coder_1_5b", "cnndm"): 0.90,  # LLaMA-2-13B's alpha (Table 6), the stand-in's
}
# Rows that change K on purpose: table2_cpu's speedup-optimal K of this CPU (conf/experiment/table2_cpu.yaml).
K_OVERRIDES = {("table2_cpu", "adaptive_cpu_k"): {"max_draft_tokens": 3}}


# The rows that run self-speculative decoding without the adaptive exit, each with its whole method written
# here by hand: Table 3 (fixed K, no draft exit: threshold 0), Table 4 (static gamma, K = 12), and
# table2_cpu's fixed row at the CPU's K.
def _fixed(max_draft_tokens: int, threshold: float) -> dict:
    return {
        "name": "self_speculative",
        "max_draft_tokens": max_draft_tokens,
        "threshold": threshold,
        "draft_confidence": "paper",
    }


SELF_SPECULATIVE_ROWS = {
    **{("table3", f"fixed_{k}"): _fixed(k, 0.0) for k in (2, 4, 6, 8)},
    **{("table4", f"static_0_{g}"): _fixed(12, g / 10) for g in (2, 4, 6, 8)},
    ("table2_cpu", "fixed_cpu_k"): _fixed(3, 0.0),
    ("table1_cpu", "fixed_cpu_k"): _fixed(3, 0.0),
}


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
            assert method == SELF_SPECULATIVE_ROWS[(name, row)], (name, row)
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


def test_every_fixed_row_is_proven():
    """Each hand-written row above is a row of its experiment (a renamed row cannot leave its check behind)."""
    assert {(name, row) for name, row in SELF_SPECULATIVE_ROWS} <= {
        (name, row) for name in EXPERIMENTS for row in _rows(name)
    }


def test_experiment_rows_compose_the_method_group():
    """A row names no method and restates no setting of the group: its method comes from a defaults entry
    `/method@experiment.rows.<row>: <method>`, and the row sets only what differs (K, gamma or alpha)."""
    for name in EXPERIMENTS:
        raw = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())
        entries = {
            next(iter(entry)).removeprefix("/method@experiment.rows.")
            for entry in raw.get("defaults", [])
            if isinstance(entry, dict) and next(iter(entry)).startswith("/method@experiment.rows.")
        }
        for row, settings in raw["experiment"].get("rows", {}).items():
            if not ({"max_draft_tokens", "threshold", "target_acceptance", "name"} & set(settings)):
                continue  # a row of something else than the method (table2: metric and sampling)
            assert row in entries, f"{name}: row {row} does not compose the method group"
            assert not {"name", "draft_confidence"} & set(settings), f"{name}: row {row} restates the method"


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


# ------------------------------------------------------------------ one bootstrap

# conf/bootstrap/default.yaml, written here by hand.
BOOTSTRAP = {"resamples": 1000, "confidence": 0.95, "seed": 0}
# Experiments that change the bootstrap on purpose: (experiment, dotted path) -> its settings. None today.
BOOTSTRAP_OVERRIDES: dict[tuple[str, str], dict] = {}
ROOT_CONFIGS = ("config", "bench", "gpu_check", "gpu_check_rehearse", "search_config")


def _bootstraps(node, path: str = "") -> dict[str, dict]:
    """Every `bootstrap` section of a composed config, by dotted path."""
    if not isinstance(node, dict):
        return {}
    found = {path: node} if path.rsplit(".", 1)[-1] == "bootstrap" else {}
    for key, value in node.items():
        found.update(_bootstraps(value, f"{path}.{key}" if path else str(key)))
    return found


def _composed(name: str, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(overrides, name=name), resolve=True)


@pytest.mark.parametrize(
    "name,overrides",
    [(name, []) for name in ROOT_CONFIGS]
    + [
        ("config", [f"experiment={path.stem}"])
        for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))
    ]
    + [("config", [f"task={task}"]) for task in ("cnndm", "xsum")],
    ids=lambda value: value if isinstance(value, str) else " ".join(value) or "-",
)
def test_every_composed_config_uses_the_one_bootstrap(name, overrides):
    """Runs, tasks (a run's task and each of a search's tasks), bench (and its GPU section) and the GPU check
    all compose conf/bootstrap/default.yaml; only a listed experiment may differ."""
    found = _bootstraps(_composed(name, overrides))
    expected_paths = {
        "config": {"bootstrap", "task.bootstrap"},
        "bench": {"bootstrap", "task.bootstrap", "gpu.bootstrap"},
        "gpu_check": {"shapes.bootstrap"},
        "gpu_check_rehearse": {"shapes.bootstrap"},
        "search_config": {"tasks.cnndm.bootstrap", "tasks.xsum.bootstrap", "tasks.humaneval.bootstrap"},
    }[name]
    assert set(found) == expected_paths, found  # the walk found every section it should (the check can fail)
    experiment = overrides[0].removeprefix("experiment=") if overrides else None
    for path, settings in found.items():
        assert settings == BOOTSTRAP_OVERRIDES.get((experiment, path), BOOTSTRAP), (name, overrides, path)


def test_the_bootstrap_is_written_once_and_an_override_reaches_it():
    """Only conf/bootstrap/ writes bootstrap settings (a restated block would drift unnoticed); overriding
    the group's value on the command line moves every section composed from it in that config."""
    writers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "conf").rglob("*.yaml")
        if any(
            line.split("#")[0].strip().startswith(("resamples:", "confidence:", "bootstrap: {"))
            for line in path.read_text().splitlines()
        )
    )
    assert writers == ["conf/bootstrap/default.yaml"], writers
    cfg = _composed("config", ["bootstrap.resamples=50", "task.bootstrap.resamples=60"])
    assert (cfg["bootstrap"]["resamples"], cfg["task"]["bootstrap"]["resamples"]) == (50, 60)
