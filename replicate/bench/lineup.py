"""Who races in a bench run: our two loops (and both again with the other KV cache kind), transformers'
`generate`, and its built-in speculative modes as peers, each as a `Contender` for `race`."""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from replicate.bench.contenders import Contender, hf_generate, ours
from replicate.bench.summary import AUTOREGRESSIVE, GENERATE, kv_cache_name, other_kv_cache
from replicate.core.methods import AUTOREGRESSIVE as AUTOREGRESSIVE_METHOD
from replicate.core.methods import build_decoder
from replicate.core.models import LoadedModel
from replicate.core.sampling import SamplingConfig


def early_exit_layer(cfg: DictConfig, loaded: LoadedModel) -> int:
    """The configured early-exit layer, or one that keeps the share of sub-blocks our plan keeps."""
    num_layers = loaded.model.config.num_hidden_layers
    if cfg.peers.assistant_early_exit is not None:
        return int(cfg.peers.assistant_early_exit)
    kept_share = 1 - loaded.plan.num_skipped / (2 * num_layers)
    return min(num_layers - 1, max(1, round(num_layers * kept_share)))


def build_contenders(cfg: DictConfig, loaded: LoadedModel, sections: set[str]) -> tuple[list[Contender], str]:
    sampling = SamplingConfig()  # greedy: every contender must reproduce generate's tokens
    method_name = f"ours_{cfg.method.name}"
    contenders = [ours(AUTOREGRESSIVE, build_decoder(AUTOREGRESSIVE_METHOD, loaded, sampling))]
    if sections & {"cost_model", "peers", "memory", "kv_cache", "attention"}:
        contenders.append(ours(method_name, build_decoder(cfg.method, loaded, sampling)))
    if "kv_cache" in sections:  # both loops again with the other cache kind, in the same race
        other = dataclasses.replace(loaded, kv_cache=other_kv_cache(loaded.kv_cache))
        contenders.append(
            ours(
                kv_cache_name(AUTOREGRESSIVE, other.kv_cache),
                build_decoder(AUTOREGRESSIVE_METHOD, other, sampling),
            )
        )
        contenders.append(
            ours(kv_cache_name(method_name, other.kv_cache), build_decoder(cfg.method, other, sampling))
        )
    if sections & {"parity", "peers", "memory"}:
        contenders.append(hf_generate(GENERATE, loaded, {}, {}))
    if sections & {"peers", "memory"}:
        assistant = OmegaConf.to_container(cfg.peers.assistant)
        early_exit = {"assistant_early_exit": early_exit_layer(cfg, loaded)}
        contenders.append(hf_generate("hf_early_exit", loaded, early_exit, assistant))
        lookup = {
            "prompt_lookup_num_tokens": cfg.peers.prompt_lookup_num_tokens,
            "max_matching_ngram_size": cfg.peers.max_matching_ngram_size,
        }
        contenders.append(hf_generate("hf_prompt_lookup", loaded, lookup, {}))
    return contenders, method_name
