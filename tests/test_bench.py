"""The benchmark end to end on the tiny model, its pieces, and the clear error of --gpu-shapes without CUDA."""

from __future__ import annotations

import json

import pytest
import torch

from replicate.bench.gpu import (
    build_shape_model,
    gpu_shapes_config,
    proportional_skip_plan,
    reference_skip_plan,
    shape_section,
    shape_skip_plan,
)
from replicate.bench.run import compose_bench_config, profile_context_length, run_bench
from replicate.core.decoding import forward
from replicate.core.skipping import SkipAwareCache
from replicate.metrics_record import RunMetrics
from replicate.schema import ConfigError

TINY = [
    "model=tiny_llama", "n_prompts=2", "max_new_tokens=8", "method.max_draft_tokens=4", "profile.repeats=1",
    "profile.warmup=0", "warmup.max_new_tokens=2", "memory.repeats=1", "peers.prompt_lookup_num_tokens=4",
    "threads=1",  # a 64-wide model runs fastest on one thread, and a busy machine does not stall it
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; run_bench also sets it (the `threads` option): give the
    other tests their thread count back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bench_runs_end_to_end_and_writes_every_section(tmp_path):
    result = run_bench(compose_bench_config(TINY), tmp_path)
    written = json.loads((tmp_path / "bench_tiny_llama.json").read_text())
    assert (tmp_path / "bench_tiny_llama.png").stat().st_size > 0
    for section in (
        "profile", "speed", "cost_model", "forward_clock", "parity", "peers", "memory", "targets", "environment",
        "kv_cache", "attention",
    ):  # fmt: skip
        assert section in written, section
    # The race is recorded in the shape of a run's metrics.json (one RunMetrics for runs and bench).
    race = RunMetrics.from_dict(written["cost_model"], "bench cost_model")
    assert race.cost_model.predicted_speedup == result["cost_model"]["cost_model"]["predicted_speedup"]
    assert race.identical_fraction == 1.0 and race.decoder_state == result["cost_model"]["decoder_state"]
    assert set(written["speed"]) == {
        "ours_autoregressive", "ours_adaptive_draft_exit", "hf_generate", "hf_early_exit", "hf_prompt_lookup",
        "ours_autoregressive@static_cache", "ours_adaptive_draft_exit@static_cache",
    }  # fmt: skip
    # fp32 on CPU: every greedy contender reproduces generate's tokens exactly.
    for name, row in written["speed"].items():
        assert row["identical_to_hf_generate"] == 1.0, name
        assert 0.0 < row["forward_fraction"] <= 1.0
    assert written["parity"]["identical_fraction"] == 1.0 and written["parity"]["tokens_per_s_ratio"] > 0
    assert len(written["profile"]["verify_s"]) == 5 and len(written["profile"]["break_even_acceptance"]) == 4
    assert race.cost_model.efficiency > 0 and race.acceptance_rate is not None
    # Profiles interleaved with the race: one before each of the 2 rounds and one after; each decode is
    # priced with its neighbours, and efficiency comes with a bootstrap interval over the 2 samples.
    assert len(written["profile"]["interleaved_full_step_s"]) == 3 and race.cost_model.profiles_per_sample
    low, high = race.cost_model.efficiency_ci
    assert low <= race.cost_model.efficiency <= high and race.cost_model.speedup_efficiency_ci is not None
    kv_cache = written["kv_cache"]
    assert kv_cache["configured"] == "dynamic" and set(kv_cache["rows"]) == {"dynamic", "static"}
    assert all(row["identical_to_configured"] for row in kv_cache["rows"].values())
    assert set(kv_cache["profiles"]) == {"dynamic", "static"}
    attention = written["attention"]["rows"]
    assert attention["eager"]["available"] and attention["sdpa"]["predicted_speedup_of_race_trace"] > 0
    if not torch.cuda.is_available():
        assert (
            not attention["flash_attention_2"]["available"]
            and "CUDA" in attention["flash_attention_2"]["reason"]
        )
    assert written["peers"]["hf_early_exit"]["settings"]["generate"]["assistant_early_exit"] == 3
    memory = written["memory"]
    if memory["method"] is not None:
        assert memory["rows"]["ours_autoregressive"]["peak_ratio_to_reference"] == 1.0
        assert memory["method_peak_ratio"] > 0
    assert set(written["targets"]) and all("passed" in check for check in written["targets"].values())


def test_sections_can_be_chosen(tmp_path):
    result = run_bench(compose_bench_config([*TINY, "sections=[parity]", "plot=false"]), tmp_path)
    assert set(result["speed"]) == {"ours_autoregressive", "hf_generate"} and "cost_model" not in result
    with pytest.raises(ConfigError, match=r"sections\[0\]='speedy' is not one of 'profile'"):
        run_bench(compose_bench_config([*TINY, "sections=[speedy]"]), tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bootstrap.resamples=0", r"bootstrap.resamples=0 is not allowed: must be >= 1"),
        ("gpu_shapes=true gpu.max_draft_tokens=0", r"gpu.max_draft_tokens=0 is not allowed"),
    ],
)
def test_bad_settings_fail_before_anything_is_measured(tmp_path, monkeypatch, override, message):
    def no_model(*_):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr("replicate.bench.run.load_bench_model", no_model)
    with pytest.raises(ConfigError, match=message):
        run_bench(compose_bench_config([*TINY, *override.split()]), tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_shapes_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA"):
        run_bench(compose_bench_config([*TINY, "gpu_shapes=true"]), tmp_path)
    assert not list(tmp_path.iterdir())  # failed before measuring anything


def test_shape_models_materialise_from_the_meta_device():
    shape = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}
    model = build_shape_model({**shape, "vocab_size": 300}, torch.float32, torch.device("cpu"))
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    rotary = model.model.rotary_emb.inv_freq
    head_dim = 64 // 4
    expected = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    torch.testing.assert_close(rotary, expected)
    logits = forward(
        model, torch.tensor([[1, 2, 3]]), SkipAwareCache(config=model.config), 0, last_only=False
    )
    assert logits.shape == (3, 300) and torch.isfinite(logits).all()


def test_skip_sets_for_the_gpu_shapes():
    assert proportional_skip_plan(40) == reference_skip_plan()  # mapping onto 40 layers changes nothing
    assert shape_skip_plan(40) == (reference_skip_plan(), "paper (llama2_13b, conf/model/llama2_13b.yaml)")
    assert shape_skip_plan(8)[1].startswith("PLACEHOLDER")
    seven_b = compose_bench_config().gpu.shapes.llama2_7b.num_hidden_layers
    for layers in (seven_b, 30):
        plan = proportional_skip_plan(layers)
        plan.validate(layers)
        assert abs(len(plan.attention) / layers - 0.6) < 0.05 and abs(len(plan.mlp) / layers - 0.25) < 0.05


def test_profile_context_follows_the_prompts_when_auto():
    prompts = [torch.zeros(1, 100, dtype=torch.long), torch.zeros(1, 200, dtype=torch.long)]
    assert profile_context_length("auto", prompts, 64) == 182
    assert profile_context_length(512, prompts, 64) == 512


def test_default_bench_config_targets_smollm2():
    cfg = compose_bench_config()
    assert cfg.model.name == "smollm2_135m" and cfg.output_dir == "outputs/bench" and not cfg.gpu_shapes
    assert cfg.profile.max_draft_tokens == cfg.method.max_draft_tokens == 12


TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "vocab_size": 300,
}


def test_gpu_shape_section_runs_on_a_tiny_shape_on_cpu():
    """The whole --gpu-shapes path except CUDA itself: build, interleaved profile and race, attention and KV
    cache profiles, the paper's acceptance priced on the profile, efficiency with its interval, memory."""
    cfg = gpu_shapes_config(
        {
            "device": "cpu", "shapes": {"tiny_shape": TINY_SHAPE}, "dtype": "bfloat16", "attn_implementation": "eager",
            "attention": ["eager", "sdpa", "flash_attention_2"], "kv_cache": "static", "kv_caches": ["dynamic", "static"],
            "context_length": 16, "max_draft_tokens": 4, "profile_repeats": 1, "profile_warmup": 0, "n_prompts": 2,
            "max_new_tokens": 6, "seed": 0, "bootstrap": {"resamples": 200, "confidence": 0.95, "seed": 0},
        }
    )  # fmt: skip
    section = shape_section("tiny_shape", cfg.shapes["tiny_shape"], cfg, torch.device("cpu"))
    assert section["skip"]["source"].startswith("PLACEHOLDER") and section["skip"]["attention"]
    predictions = section["paper_acceptance_predictions"]
    assert [row["max_draft_tokens"] for row in predictions["fixed_k"]] == [2, 4]
    assert all(row["predicted_speedup"] > 0 for row in predictions["fixed_k"])
    assert (
        len(predictions["adaptive"]["predicted_speedup_per_k"]) == 4
        and 1 <= predictions["adaptive"]["best_k"] <= 4
    )
    efficiency = section["random_weight_efficiency"]
    assert efficiency["efficiency"] > 0 and efficiency["efficiency_ci"] is not None
    assert section["profile"]["dtype"] == "bfloat16" and section["profile"]["kv_cache"] == "static"
    assert section["identical"] == [True, True]  # the bf16 loops agree with each other here (not demanded)
    assert section["attention"]["rows"]["sdpa"]["available"] and set(section["kv_cache_profiles"]) == {
        "dynamic",
        "static",
    }
    assert len(section["profile"]["verify_s"]) == 5 and json.dumps(section)


def test_gpu_shapes_through_run_bench_on_cpu(tmp_path):
    """gpu.device=cpu reaches the section's body from the bench's own entry point (a rehearsal)."""
    shape = "{hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, vocab_size: 300}"
    overrides = [
        *TINY, "sections=[]", "gpu_shapes=true", "gpu.device=cpu", "~gpu.shapes", f"+gpu.shapes={{tiny: {shape}}}",
        "gpu.context_length=8", "gpu.max_draft_tokens=2", "gpu.profile_repeats=1", "gpu.profile_warmup=0",
        "gpu.n_prompts=1", "gpu.max_new_tokens=4", "gpu.attention=[sdpa]", "gpu.kv_caches=[static]",
    ]  # fmt: skip
    result = run_bench(compose_bench_config(overrides), tmp_path)
    assert (tmp_path / "bench_gpu_shapes.json").exists() and result["gpu_shapes"]["device"] == "cpu"
    assert set(result["gpu_shapes"]["shapes"]) == {"tiny"}
