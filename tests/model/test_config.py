"""The shipped full-size architecture directory and the architecture facts table; with an engine (marked
`engine`), the directory loads in vLLM with dummy weights and generates (vLLM imported only there)."""
from __future__ import annotations

import gc
import json
import os

import pytest

from bitcpm_validation.model.config import architecture_rows, read_config
from bitcpm_validation.model.writer import LONG_FACTOR, full_size_config
from bitcpm_validation.paths import MODELS_DIR

FULL = MODELS_DIR / "bitcpm4-0.5b"


def test_full_size_config_is_the_facts_sheet():
    raw = json.loads((FULL / "config.json").read_text())
    assert raw == full_size_config()
    assert "model_type" not in raw and "tie_word_embeddings" not in raw
    assert raw["auto_map"]["AutoConfig"] == "configuration_minicpm.MiniCPMConfig"
    assert raw["rope_scaling"]["short_factor"] == raw["rope_scaling"]["long_factor"] == LONG_FACTOR
    assert len(LONG_FACTOR) == 32
    for f in ("configuration_minicpm.py", "modeling_minicpm.py", "generation_config.json", "tokenizer.model",
              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "README.md"):
        assert (FULL / f).is_file(), f
    assert not list(FULL.glob("*.safetensors"))


def test_architecture_rows_derive_the_facts():
    rows = {r["key"]: r for r in architecture_rows(FULL)}
    assert rows["parameters"]["value"] == 433_873_920
    assert rows["bf16_bytes"]["value"] == 867_747_840 and rows["bf16_bytes"]["unit"] == "bytes"
    assert rows["head_dim"]["value"] == 64
    assert rows["gqa_ratio"]["value"] == "8:1"
    assert rows["residual_scale"]["value"] == pytest.approx(0.28577, abs=1e-5)
    assert rows["logit_divisor"]["value"] == 4.0
    assert rows["rope_mscale"]["value"] == 1.0
    assert rows["rope_short_equals_long"]["value"] is True
    assert rows["tie_word_embeddings"]["value"] is True and rows["tie_word_embeddings"]["source"] == "class default"
    assert rows["model_type"]["value"] == "— (auto_map)"
    assert rows["rope_theta"]["value"] == 10000.0
    for r in rows.values():
        assert set(r) == {"key", "name_en", "name_zh", "value", "unit", "source"}


def test_config_class_loads_through_auto_map():
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(FULL, trust_remote_code=True)
    assert type(c).__name__ == "MiniCPMConfig"
    assert c.tie_word_embeddings is True and c.scale_emb == 12 and c.dim_model_base == 256
    assert read_config(FULL)["head_dim"] == 64


def test_untied_flag_counts_lm_head(tmp_path):
    from bitcpm_validation.model.writer import write_tiny_random_model

    d = write_tiny_random_model(tmp_path / "m", lm_head=True, num_hidden_layers=1)
    rows = {r["key"]: r for r in architecture_rows(d)}
    assert rows["lm_head_tensor"]["value"] is True
    cfg = read_config(d)
    assert rows["parameters"]["value"] == sum(
        v.numel() for v in __import__("bitcpm_validation.model.reference", fromlist=["x"]).load_state_dict(d).values())
    assert rows["parameters"]["value"] > cfg["vocab_size"] * cfg["hidden_size"] * 2


# -- the directory in vLLM (engine) ------------------------------------------------------------------------------
@pytest.mark.engine
def test_full_size_dummy_load_and_generate():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(FULL), load_format="dummy", trust_remote_code=True,
              dtype="bfloat16", max_model_len=2048, enforce_eager=True, seed=0, max_num_seqs=4)
    try:
        cfg = llm.llm_engine.model_config.hf_config
        assert cfg.vocab_size == 73448 and cfg.num_hidden_layers == 24 and cfg.tie_word_embeddings
        o = llm.generate([{"prompt_token_ids": [1, 100, 200, 300]}],
                         SamplingParams(temperature=0, max_tokens=8, ignore_eos=True), use_tqdm=False)[0]
        assert len(o.outputs[0].token_ids) == 8
        assert all(0 <= t < 73448 for t in o.outputs[0].token_ids)
    finally:
        del llm
        gc.collect()
