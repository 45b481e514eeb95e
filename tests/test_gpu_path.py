"""The GPU-meant code paths, run on the CPU with only the CUDA calls themselves swapped out: dtype from config
(bf16), synchronization, memory accounting, the static KV cache, the no-sync draft path, attention switching,
the clear errors without CUDA, the nested-Hydra CLI path, and the gpu-check rehearsal (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import replicate
from replicate.bench import memory as memory_module
from replicate.bench.gpu import require_device
from replicate.bench.profiles import free_device_memory
from replicate.config import ConfigError, compose_config
from replicate.core import passes
from replicate.core.attention import attention_implementation, installed
from replicate.core.decoding import DecodeSettings, Speculation, self_speculative_decode, synchronize
from replicate.core.draft_exit import StaticThreshold
from replicate.core.kv_cache import CacheCapacityError, PreallocatedLayer, StaticSkipAwareCache, make_cache
from replicate.core.model_config import model_config
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import truncate_cache
from replicate.gpu_check.syncs import count_host_reads
from replicate.lossless.matrix import method_of, run_matrix, summarize_matrix
from replicate.lossless.reference import MODELS

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_synchronize_drains_cuda_and_mps_and_nothing_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize(torch.device("cuda", 1))
    synchronize(torch.device("mps"))
    synchronize(torch.device("cpu"))
    assert calls == [("cuda", torch.device("cuda", 1)), ("mps", None)]
    assert passes.synchronize is synchronize  # one function, re-exported by decoding


def test_peak_memory_reads_the_cuda_allocator_of_every_gpu(monkeypatch):
    """The CUDA branch with the allocator's counters faked: two GPUs (a device_map), summed."""
    allocated = {0: 100, 1: 50}
    peaks = {0: 100, 1: 50}
    resets = []

    def run_decode():
        peaks[0], peaks[1] = 180, 90

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: resets.append(device.index))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: allocated[device.index])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: peaks[device.index])
    measured = memory_module.peak_memory(run_decode, torch.device("cuda"))
    assert measured == {"resident_bytes": 150, "peak_bytes": 270, "extra_bytes": 120} and resets == [0, 1]
    assert "max_memory_allocated" in memory_module.memory_method(torch.device("cuda"))


def test_free_device_memory_empties_the_cuda_cache_only_on_cuda(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    free_device_memory(torch.device("cpu"))
    free_device_memory(torch.device("cuda"))
    assert emptied == [True]


def test_host_read_counter_uses_cuda_sync_debug_mode_on_cuda(monkeypatch):
    """The CUDA branch of count_host_reads with torch's sync debug mode faked: it is switched to warn inside
    the block, the synchronizing-call warnings are counted, and the previous mode comes back."""
    import warnings

    modes = ["default"]
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: modes.append(mode))
    with count_host_reads(torch.device("cuda")) as counts:
        assert modes[-1] == "warn"
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
        torch.ones(2).sum().item()
    assert counts.cuda_syncs == 1 and counts.python_reads == 1 and modes[-1] == "default"


def test_gpu_environment_records_the_gpu(monkeypatch):
    """The CUDA branch of the environment (device name, driver, memory, capability) with the calls faked."""
    from types import SimpleNamespace

    from replicate.gpu_check import environment as gpu_environment_module

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake H200")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    properties = SimpleNamespace(total_memory=141 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: properties)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    monkeypatch.setattr(gpu_environment_module, "driver_version", lambda: ("570.1", "nvidia-smi"))
    info = gpu_environment_module.gpu_environment(torch.device("cuda"), ["eager", "flash_attention_2"])
    assert info["gpu"] == "Fake H200" and info["driver"] == "570.1" and info["compute_capability"] == "9.0"
    assert info["gpu_memory_bytes"] == 141 * 2**30 and info["attention_implementations"]["eager"]["installed"]
    assert set(info["tf32"]) == {"matmul", "cudnn", "float32_matmul_precision"}


def test_driver_version_without_nvidia_smi_says_why(monkeypatch):
    from replicate.gpu_check import environment as gpu_environment_module

    monkeypatch.setattr(gpu_environment_module.shutil, "which", lambda name: None)
    assert gpu_environment_module.driver_version() == (None, "nvidia-smi not found on PATH")


def test_peak_memory_falls_back_to_rss_on_cpu():
    if memory_module.memory_method(torch.device("cpu")) is None:
        pytest.skip("this kernel cannot reset the peak RSS")
    measured = memory_module.peak_memory(lambda: torch.ones(8 << 20).sum(), torch.device("cpu"))
    assert measured["peak_bytes"] >= measured["resident_bytes"] > 0 and measured["extra_bytes"] >= 0


def test_a_bf16_model_from_config_decodes_on_cpu():
    loaded = replicate.load("tiny_llama", dtype="bfloat16", kv_cache="static")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16 and loaded.identity["kv_cache"] == "static"
    out = replicate.generate(loaded, "def f(x):", method="self_speculative", max_new_tokens=12)
    assert len(out.result.tokens) == 12 and sum(out.result.drafted) > 0


def test_the_lossless_matrix_in_bf16_reports_identity_and_margins():
    """bf16 is not demanded to be identical: the matrix reports its identity rate and every divergence with
    the reference's logit margin (gpu-check runs the same on the GPU)."""
    cells = run_matrix(torch.bfloat16, torch.device("cpu"), ["static"], 1, 12, [MODELS[2]])
    summary = summarize_matrix(cells)
    # 1 model x 1 prompt x 1 cache: autoregressive decoding, the 9 self-speculative settings and the 7
    # settings of the methods beyond the paper (3 prompt lookup, 2 hybrid, 2 on-the-fly)
    assert summary["decodes"] == len(cells) == 10 + 7 and cells[0]["method"] == "autoregressive"
    identical = [cell for cell in cells if cell["identical"]]
    assert summary["identical"] == len(identical) and summary["identity_rate"] == len(identical) / (10 + 7)
    assert summary["divergences"] == [cell for cell in cells if not cell["identical"]]
    # gpu-check's one line per method: the decodes of each registered method, counted by hand from the matrix
    decodes = {name: summary["by_method"][name]["decodes"] for name in summary["by_method"]}
    assert decodes == {
        "autoregressive": 1,
        "self_speculative": 7,  # fixed K with static thresholds
        "adaptive_draft_exit": 2,
        "prompt_lookup": 3,
        "hybrid": 2,
        "on_the_fly": 2,
    }
    for name, counts in summary["by_method"].items():
        same = sum(cell["identical"] for cell in cells if method_of(cell["method"]) == name)
        assert counts["identical"] == same, name
    for cell in cells:  # each cell's verdict is its first difference from generate's tokens, with its margin
        assert cell["identical"] == (cell["first_difference"] is None) and cell["cache_lengths_ok"]
        assert (cell["reference_margin"] is None) == cell["identical"]
        assert cell["new_tokens"] == 12


def test_static_layer_writes_in_place_and_crops_by_moving_its_length():
    layer = PreallocatedLayer(capacity=6)
    keys = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)
    first_keys, first_values = layer.update(keys, keys + 1)
    assert (
        first_keys.shape == (1, 2, 3, 4) and layer.keys.shape == (1, 2, 6, 4) and layer.get_seq_length() == 3
    )
    storage = layer.keys.data_ptr()
    layer.crop(-2)
    assert layer.get_seq_length() == 1
    second_keys, _ = layer.update(keys[:, :, :2], keys[:, :, :2])
    assert layer.keys.data_ptr() == storage and second_keys.shape == (1, 2, 3, 4)  # no reallocation
    torch.testing.assert_close(second_keys[:, :, 1:], keys[:, :, :2])
    with pytest.raises(CacheCapacityError, match="holds 6 positions but a pass needs 7"):
        layer.update(keys[:, :, :3].repeat(1, 1, 2, 1)[:, :, :4], keys[:, :, :4])
    with pytest.raises(ValueError, match="negative"):
        layer.crop(1)


def test_static_cache_sizes_the_mask_from_its_longest_layer():
    cache = StaticSkipAwareCache(num_layers=3, capacity=10)
    states = torch.zeros(1, 1, 4, 2)
    for layer_index in range(3):
        cache.update(states, states, layer_index)
    cache.update(states[:, :, :2], states[:, :, :2], 0)  # a drafting pass: layer 0 attends, the others skip
    assert cache.layer_lengths() == [6, 4, 4] and cache.get_seq_length() == 6
    assert cache.get_mask_sizes(3) == (9, 0) and cache.get_query_offset() == 6
    truncate_cache(cache, 4)
    assert cache.layer_lengths() == [4, 4, 4]
    with pytest.raises(ValueError, match="kv_cache='paged'"):
        make_cache("paged", None, 4)


def test_kv_cache_is_a_validated_config_value():
    cfg = compose_config(["model=tiny_llama", "model.kv_cache=paged"]).model
    with pytest.raises(ConfigError, match=r"model.kv_cache='paged'.*'dynamic', 'static'"):
        model_config(cfg)


def test_fixed_length_drafting_reads_the_host_once_per_cycle():
    """Threshold 0 and greedy: drafts are fed back on the device; a cycle's only host read is the one that
    fetches drafts and verifier tokens together (plus one for the prefill). A threshold reads every draft."""
    loaded = replicate.load("tiny_llama")
    prompt = torch.tensor([loaded.encode("def f(x):")])
    reads = {}
    for threshold in (0.0, 0.5):
        with count_host_reads(torch.device("cpu")) as counts:
            settings = DecodeSettings(32, SamplingConfig(), loaded.eos_token_ids)
            result = self_speculative_decode(
                loaded.model, prompt, settings, Speculation(loaded.plan, 4, StaticThreshold(threshold))
            )
        reads[threshold] = (counts.python_reads, len(result.drafted), sum(result.drafted))
    reads_fixed, cycles_fixed, _ = reads[0.0]
    assert reads_fixed == cycles_fixed + 1
    reads_threshold, _, drafted_threshold = reads[0.5]
    assert reads_threshold >= 2 * drafted_threshold  # a token and its confidence per draft


def test_attention_implementations_are_detected_and_switched_back():
    loaded = replicate.load("tiny_llama")
    assert installed("eager", torch.device("cpu"))[0] and installed("sdpa", torch.device("cpu"))[0]
    available, reason = installed("flash_attention_2", torch.device("cpu"))
    assert not available and "CUDA" in reason
    # On a CUDA device the answer is transformers' own check of the installed package (no hub download).
    from transformers.utils import import_utils

    expected = import_utils.is_flash_attn_2_available()
    available, reason = installed("flash_attention_2", torch.device("cuda"))
    assert available == expected and "is_flash_attn_2_available" in reason
    with pytest.raises(ValueError, match="unknown attention implementation"):
        installed("fastest", torch.device("cpu"))
    with pytest.raises(RuntimeError), attention_implementation(loaded.model, "eager"):
        assert loaded.model.config._attn_implementation == "eager"
        raise RuntimeError("restored even on error")
    assert loaded.model.config._attn_implementation == "sdpa"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors raised without CUDA")
def test_without_cuda_the_gpu_paths_say_what_to_do(capsys):
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        require_device("cuda")
    assert require_device("cpu").type == "cpu"
    from replicate.gpu_check.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "CUDA" in message and "--rehearse" in message and "REHEARSE=1" in message


def _environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def test_bench_cli_reaches_the_placeholder_skip_set_inside_its_hydra_app(tmp_path):
    """`python -m replicate.bench` with an empty skip set composes the 13B config for the placeholder from
    inside its running Hydra app (this used to die with `GlobalHydra is already initialized`)."""
    command = [
        sys.executable, "-m", "replicate.bench", "model=tiny_llama", "model.skip.attention=[]",
        "model.skip.mlp=[]", "n_prompts=1", "max_new_tokens=4", "method.max_draft_tokens=2", "profile.repeats=1",
        "profile.warmup=0", "warmup.runs=0", "sections=[profile,cost_model]", "plot=false", "threads=1",
        f"output_dir={tmp_path}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=_environment(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GlobalHydra" not in done.stderr and "PLACEHOLDER" in done.stdout
    written = json.loads((tmp_path / "bench_tiny_llama.json").read_text())
    assert written["skip"]["source"].startswith("PLACEHOLDER") and written["skip"]["attention"]


@pytest.mark.slow
def test_gpu_check_rehearsal(tmp_path):
    """`make gpu-check REHEARSE=1`: the GPU check's own code on the CPU with tiny shapes, end to end. The
    budget is raised so that a busy machine cannot fail it; the wall time is in results.json."""
    command = [
        sys.executable,
        "-m",
        "replicate.gpu_check",
        "--rehearse",
        f"output_dir={tmp_path}",
        "budget_s=3600",
    ]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=_environment(), capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["rehearsal"] and results["passed"]
    expected = {"lossless_float32", "lossless_bfloat16", "host_syncs", "shapes", "end_to_end"}
    assert set(results["sections"]) == expected
    assert all(section["status"] == "ok" for section in results["sections"].values())
    shapes = results["sections"]["shapes"]
    assert shapes["headline"]["llama2_13b"]["skip_source"].startswith("paper")
    assert results["environment"]["attention_implementations"]["sdpa"]["installed"]
    report = (tmp_path / "report.md").read_text()
    assert "REHEARSAL" in report and "Lossless matrix, bfloat16" in report and "paper's measured" in report


def test_gpu_check_config_is_typed_and_checked():
    from replicate.gpu_check.config import gpu_check_config

    cfg, settings = gpu_check_config(rehearse=True)
    assert cfg.device == "cpu" and cfg.shapes.device == "cpu" and settings["budget_s"] == cfg.budget_s
    assert cfg.shapes.shapes["llama2_13b"].num_hidden_layers == 40  # the paper's skip set applies
    full, _ = gpu_check_config()
    assert full.device == "cuda" and full.shapes.shapes["llama2_13b"].hidden_size == 5120
    with pytest.raises(ConfigError, match="sections"):
        gpu_check_config(["sections=[lossless_float64]"])
    with pytest.raises(ConfigError, match="end_to_end.methods"):
        gpu_check_config(["end_to_end.methods=[autoregressive]"])


def test_a_failing_or_late_section_is_recorded_not_hidden():
    from replicate.gpu_check.run import _section

    results = {"sections": {}}

    def broken():
        raise RuntimeError("out of memory")

    _section(results, "broken", started=0.0, budget_s=1e12, function=broken)
    _section(results, "late", started=time.perf_counter(), budget_s=60.0, function=dict, estimate_s=61.0)
    assert (
        results["sections"]["broken"]["status"] == "failed"
        and "out of memory" in results["sections"]["broken"]["error"]
    )
    assert (
        results["sections"]["late"]["status"] == "skipped"
        and "budget" in results["sections"]["late"]["reason"]
    )
