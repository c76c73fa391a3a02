"""Architecture facts read from, and derived from, a model directory (config.json + weights index).

`read_config(path)` applies the MiniCPMConfig defaults for absent fields (facts sheet §1);
`architecture_rows(path)` gives the table the loading chapter shows: plain dict rows with units and
the source of each value (`config.json`, `derived`, `weights`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bitcpm_validation.files import safetensors_header, safetensors_files

# Defaults of MiniCPMConfig for fields a config.json may omit (facts sheet §1).
CONFIG_DEFAULTS: dict[str, Any] = {
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "sparse_config": None,
    "rope_scaling": None,
    "scale_emb": 1,
    "dim_model_base": 1,
    "scale_depth": 1,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def read_config(path: str | Path) -> dict:
    """config.json of a model directory (or the file itself) with the class defaults filled in."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    raw = json.loads(p.read_text(encoding="utf-8"))
    cfg = dict(CONFIG_DEFAULTS)
    cfg.update(raw)
    if cfg.get("num_key_value_heads") is None:
        cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    if cfg["head_dim"] is None:
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg


def longrope(cfg: dict, max_model_len: int | None = None) -> dict:
    """LongRoPE parameters: which factors apply, and mscale.

    With `max_model_len` given, factors are chosen as vLLM does (once per engine: long iff
    max_model_len > original_max_position_embeddings). Without it, as openbmb's MiniCPMLongRoPE
    does: its cos/sin cache is built for max_position_embeddings at init, so long iff
    max_position_embeddings > original. mscale = sqrt(1 + ln(max_pos/orig)/ln(orig)), 1.0 when
    max_pos <= orig. Returns {} for plain RoPE.
    """
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) != "longrope":
        return {}
    orig = int(rs["original_max_position_embeddings"])
    maxp = int(cfg["max_position_embeddings"])
    length = maxp if max_model_len is None else int(max_model_len)
    use_long = length > orig
    scale = maxp / orig
    mscale = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig))
    short, long_ = list(rs["short_factor"]), list(rs["long_factor"])
    return {
        "original_max_position_embeddings": orig,
        "use_long": use_long,
        "factors": long_ if use_long else short,
        "short_factor": short,
        "long_factor": long_,
        "short_equals_long": short == long_,
        "mscale": mscale,
    }


def weight_names(path: str | Path) -> list[str]:
    """Tensor names in the directory's safetensors (index file, or header of each file)."""
    d = Path(path)
    idx = d / "model.safetensors.index.json"
    if idx.is_file():
        return sorted(json.loads(idx.read_text())["weight_map"])
    return sorted(name for f in safetensors_files(d) for name in safetensors_header(f))


def parameter_count(cfg: dict, lm_head_tensor: bool | None = None) -> int:
    """Parameters of the dense MiniCPM described by cfg (lm_head counted only when untied)."""
    h, i, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
    emb = cfg["vocab_size"] * h
    untied = (not cfg["tie_word_embeddings"]) if lm_head_tensor is None else lm_head_tensor
    return emb + L * per_layer + h + (emb if untied else 0)


def derived(cfg: dict) -> dict:
    """The derived architecture facts (facts sheet §1), as a flat dict."""
    rope = longrope(cfg)
    return {
        "head_dim": cfg["head_dim"],
        "gqa_ratio": cfg["num_attention_heads"] // cfg["num_key_value_heads"],
        "residual_scale": cfg["scale_depth"] / math.sqrt(cfg["num_hidden_layers"]),
        "logit_divisor": cfg["hidden_size"] / cfg["dim_model_base"],
        "rope": rope,
    }


def architecture_rows(path: str | Path) -> list[dict]:
    """Rows {key, name_en, name_zh, value, unit, source} for the loading chapter's table."""
    d = Path(path)
    cfg = read_config(d)
    raw = json.loads((d / "config.json").read_text(encoding="utf-8"))
    names = weight_names(d) if d.is_dir() else []
    has_weights = bool(names)
    lm_head = "lm_head.weight" in names
    dv = derived(cfg)
    n_params = parameter_count(cfg, lm_head if has_weights else None)

    def src(k):
        return "config.json" if k in raw else "class default"

    rows = [
        ("architectures", "Architecture", "架构", ",".join(cfg.get("architectures") or []), "", src("architectures")),
        ("model_type", "model_type in config.json", "config.json 中的 model_type", raw.get("model_type", "— (auto_map)"), "", "config.json"),
        ("hidden_size", "Hidden size", "隐藏维度", cfg["hidden_size"], "", src("hidden_size")),
        ("intermediate_size", "MLP intermediate size", "MLP 中间维度", cfg["intermediate_size"], "", src("intermediate_size")),
        ("num_hidden_layers", "Layers", "层数", cfg["num_hidden_layers"], "", src("num_hidden_layers")),
        ("num_attention_heads", "Query heads", "查询头数", cfg["num_attention_heads"], "", src("num_attention_heads")),
        ("num_key_value_heads", "KV heads", "KV 头数", cfg["num_key_value_heads"], "", src("num_key_value_heads")),
        ("head_dim", "Head dim", "头维度", dv["head_dim"], "", "derived"),
        ("gqa_ratio", "GQA ratio (query:KV)", "GQA 比例（查询:KV）", f"{dv['gqa_ratio']}:1", "", "derived"),
        ("vocab_size", "Vocabulary size", "词表大小", cfg["vocab_size"], "tokens", src("vocab_size")),
        ("max_position_embeddings", "Max positions", "最大位置数", cfg["max_position_embeddings"], "tokens", src("max_position_embeddings")),
        ("rope_theta", "RoPE theta", "RoPE 基频 θ", cfg["rope_theta"], "", src("rope_theta")),
        ("scale_emb", "Embedding scale", "嵌入缩放", cfg["scale_emb"], "×", src("scale_emb")),
        ("residual_scale", "Residual scale scale_depth/√L", "残差缩放 scale_depth/√L", round(dv["residual_scale"], 6), "×", "derived"),
        ("logit_divisor", "Logit divisor hidden/dim_model_base", "对数几率除数 hidden/dim_model_base", dv["logit_divisor"], "÷", "derived"),
        ("rms_norm_eps", "RMSNorm eps", "RMSNorm ε", cfg["rms_norm_eps"], "", src("rms_norm_eps")),
    ]
    rope = dv["rope"]
    if rope:
        rows += [
            ("rope_type", "RoPE scaling", "RoPE 缩放", "longrope", "", "config.json"),
            ("rope_original_max", "LongRoPE original max positions", "LongRoPE 原始最大位置", rope["original_max_position_embeddings"], "tokens", "config.json"),
            ("rope_short_equals_long", "short_factor == long_factor", "short_factor 与 long_factor 相同", rope["short_equals_long"], "", "derived"),
            ("rope_factor_range", "LongRoPE factor range", "LongRoPE 因子范围", f"{min(rope['factors']):.4f} … {max(rope['factors']):.4f}", "", "derived"),
            ("rope_mscale", "LongRoPE mscale", "LongRoPE 注意力缩放因子", round(rope["mscale"], 6), "×", "derived"),
        ]
    rows += [
        ("tie_word_embeddings", "tie_word_embeddings flag", "tie_word_embeddings 标志", cfg["tie_word_embeddings"], "", src("tie_word_embeddings")),
        ("lm_head_tensor", "lm_head.weight tensor present", "存在 lm_head.weight 张量", lm_head if has_weights else "—", "", "weights" if has_weights else "no weights"),
        ("parameters", "Parameters", "参数量", n_params, "params", "derived"),
        ("bf16_bytes", "Size in BF16", "BF16 大小", n_params * 2, "bytes", "derived"),
        ("bf16_gib", "Size in BF16", "BF16 大小", round(n_params * 2 / 2**30, 3), "GiB", "derived"),
    ]
    return [dict(key=k, name_en=en, name_zh=zh, value=v, unit=u, source=s) for k, en, zh, v, u, s in rows]
