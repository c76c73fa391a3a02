"""The full-size BitCPM4-0.5B architecture loads in vLLM with dummy weights and generates."""
from __future__ import annotations

import gc
import os

import pytest

from bitcpm_validation.paths import MODELS_DIR

pytestmark = pytest.mark.engine


def test_full_size_dummy_load_and_generate():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(MODELS_DIR / "bitcpm4-0.5b"), load_format="dummy", trust_remote_code=True,
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
