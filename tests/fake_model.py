"""Tiny fake MiniCPM model directories for bad-input tests: real file formats, no torch, no engine.

    d = fake_model_dir(tmp_path / "m")                     # valid: modelcheck and engine.check_model_dir accept it
    d = fake_model_dir(tmp_path / "m", hidden_size=65)     # any config key overridden (None removes it)
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Optional

DTYPE = {"F32": 4, "BF16": 2}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: Optional[dict] = None) -> Path:
    """A valid safetensors file with zero-filled tensors: {name: (dtype, shape)}."""
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    off = 0
    for name, (dt, shape) in tensors.items():
        n = math.prod(shape) * DTYPE[dt]
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * off)
    return path


def config(**overrides: Any) -> dict[str, Any]:
    cfg = {
        "architectures": ["MiniCPMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMConfig",
                     "AutoModelForCausalLM": "modeling_minicpm.MiniCPMForCausalLM"},
        "bos_token_id": 1, "eos_token_id": [2, 32],
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "vocab_size": 40, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_scaling": {"rope_type": "longrope", "long_factor": [1.0] * 8, "short_factor": [1.0] * 8,
                         "original_max_position_embeddings": 4096},
        "torch_dtype": "float32", "scale_emb": 12, "dim_model_base": 64, "scale_depth": 1.4,
    }
    for k, v in overrides.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def tensors(cfg: dict[str, Any]) -> dict[str, tuple[str, list[int]]]:
    h = cfg.get("hidden_size", 64)
    t = {"model.embed_tokens.weight": ("F32", [cfg.get("vocab_size", 40), h]), "model.norm.weight": ("F32", [h])}
    for i in range(cfg.get("num_hidden_layers", 2)):
        t[f"model.layers.{i}.input_layernorm.weight"] = ("F32", [h])
    return t


def fake_model_dir(path: Path, *, weights: bool = True, tokenizer: bool = True, n_tokens: int = 40,
                   **overrides: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = config(**overrides)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "configuration_minicpm.py").write_text("# remote code: configuration\nCONFIG = 1\n")
    (path / "modeling_minicpm.py").write_text("# remote code: modeling\nMODEL = 2\n")
    if tokenizer:
        base = n_tokens - 8
        tok = {"version": "1.0", "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(base)}, "merges": []},
               "added_tokens": [{"id": base + i, "content": f"<|a{i}|>", "special": True} for i in range(8)]}
        (path / "tokenizer.json").write_text(json.dumps(tok))
        (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    if weights:
        write_safetensors(path / "model.safetensors", tensors(cfg))
    return path


def accelerator_profile(tmp: Path, model: Path, **model_keys: Any) -> Path:
    """A minimal params profile on `model` (platform auto, dtype auto, the real architecture as dummy_config):
    tmp/pN.yaml, a new file per call."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    y = {"profile": "acc", "platform": "auto", "prompts": str(root / "params/prompts.yaml"),
         "model": {"path": str(model), "dummy_config": str(root / "models/bitcpm4-0.5b"), **model_keys},
         "engine": {"dtype": "auto", "max_model_len": 256}}
    p = tmp / f"p{len(list(tmp.glob('p*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(y), encoding="utf-8")
    return p
