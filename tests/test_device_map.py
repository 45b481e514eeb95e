"""`device_map` sharding rehearsed on the CPU: a tiny checkpoint loaded through `load_model` (the hub path the
70B/34B configs take) with some layers on "cpu" and some offloaded to "disk", so accelerate attaches its
AlignDevicesHook to the modules (weights of the offloaded layers live on the meta device and are loaded for
each call). Skipping swaps hooked `self_attn` / `mlp` modules for stand-ins; decoding must stay lossless."""

from __future__ import annotations

import pytest
import torch

from replicate.config import compose_config
from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    forward,
    self_speculative_decode,
)
from replicate.core.draft_exit import StaticThreshold
from replicate.core.kv_cache import KV_CACHES, make_cache
from replicate.core.models import load_model
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan, decoder_layers, skip_sublayers
from replicate.lossless_matrix import adaptive, reference_tokens
from tests.helpers import tiny_model

PLAN = SkipPlan((1, 3), (2,))
DEVICE_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "cpu",
    "model.layers.3": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}


def _save_checkpoint(directory) -> torch.nn.Module:
    """A tiny random Llama with a word-level tokenizer, saved as a local checkpoint directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = tiny_model(4, 4, 2, 320, "sdpa", PLAN, seed=5)
    model.save_pretrained(directory)
    vocabulary = {f"t{i}": i for i in range(320)}
    word_level = Tokenizer(models.WordLevel(vocabulary, unk_token="t0"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, unk_token="t0", bos_token="t256", eos_token="t257"
    )
    tokenizer.save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory):
    """(the plain model, the same checkpoint loaded by load_model with a cpu + disk device_map)."""
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    plain = _save_checkpoint(directory)
    overrides = [
        "model=llama2_13b", "model.name=tiny_dispatched", f"model.repo_id={directory}", "model.device=cpu",
        "model.dtype=float32", "model.attn_implementation=sdpa", "model.num_hidden_layers=4",
        "model.max_context=512", "model.skip.attention=[1,3]", "model.skip.mlp=[2]",
        f"model.offload_folder={directory / 'offload'}",
    ]  # fmt: skip
    cfg = compose_config(overrides).model
    cfg.device_map = DEVICE_MAP
    return plain, load_model(cfg)


def test_layers_are_dispatched_through_accelerate_hooks(dispatched):
    _, loaded = dispatched
    layers = decoder_layers(loaded.model)
    assert loaded.model.hf_device_map == DEVICE_MAP
    # Offloaded layers: every weight sits on the meta device and a hook loads it for each call.
    for index in (1, 3):
        assert hasattr(layers[index].self_attn.q_proj, "_hf_hook")
        assert layers[index].self_attn.q_proj.weight.device.type == "meta"
        assert layers[index].mlp.down_proj.weight.device.type == "meta"
    assert layers[0].self_attn.q_proj.weight.device.type == "cpu"


def test_skipping_swaps_hooked_modules_and_restores_them(dispatched):
    plain, loaded = dispatched
    layers = decoder_layers(loaded.model)
    hooked_attention = layers[1].self_attn
    prompt = torch.tensor([[256, 11, 12, 13, 14]])
    with torch.inference_mode():
        with skip_sublayers(loaded.model, PLAN):
            assert layers[1].self_attn is not hooked_attention  # the hooked module is out of the call path
            draft = forward(loaded.model, prompt, make_cache("dynamic", loaded.model.config, 8), 0, False)
        with skip_sublayers(plain, PLAN):
            expected = forward(plain, prompt, make_cache("dynamic", plain.config, 8), 0, False)
    assert layers[1].self_attn is hooked_attention and hasattr(layers[1].self_attn.q_proj, "_hf_hook")
    assert layers[1].self_attn.q_proj.weight.device.type == "meta"  # offloaded again after the call
    torch.testing.assert_close(draft, expected, rtol=0, atol=0)  # same weights, same kernels: bit-equal


@pytest.mark.parametrize("kv_cache", KV_CACHES)
def test_lossless_through_the_hooks(dispatched, kv_cache):
    """Every loop on the dispatched model equals generate on the plain one (which the dispatched model's own
    generate also reproduces): fixed K (the on-device draft path), a confidence threshold, adaptive."""
    plain, loaded = dispatched
    greedy = SamplingConfig()
    prompt = torch.tensor([[256, 40, 41, 42, 43, 44, 45]])
    expected = reference_tokens(plain, prompt, 16, eos=None)
    assert reference_tokens(loaded.model, prompt, 16, eos=None) == expected
    assert (
        autoregressive_decode(loaded.model, prompt, DecodeSettings(16, greedy, frozenset(), kv_cache)).tokens
        == expected
    )
    accepted = 0
    for max_draft_tokens, draft_exit in (
        (4, StaticThreshold(0.0)),
        (12, StaticThreshold(0.5)),
        (12, adaptive()),
    ):
        settings = DecodeSettings(16, greedy, frozenset(), kv_cache)
        speculation = Speculation(PLAN, max_draft_tokens, draft_exit, check_cache=True)
        result = self_speculative_decode(loaded.model, prompt, settings, speculation)
        assert result.tokens == expected and result.cache_lengths_ok, (max_draft_tokens, draft_exit)
        accepted += sum(result.accepted)
    assert accepted > 0  # the draft path ran through the hooks and agreed sometimes
