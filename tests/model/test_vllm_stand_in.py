"""The stand-in through vLLM (CPU build, BF16, trust_remote_code, as the real repository would be
loaded): greedy answers to the probe prompts, fed token ids from the faithful tokenizer; and what the
engine's own tokenizer does with the same text."""
from __future__ import annotations

import gc
import json
import os

import pytest
import torch

from bitcpm_validation.model.tokenizer import FaithfulTokenizer, first_mismatch
from bitcpm_validation.model.train_stand_in import PROBES
from bitcpm_validation.paths import MODELS_DIR

pytestmark = pytest.mark.engine
torch.set_num_threads(2)
STAND_IN = MODELS_DIR / "stand-in"


@pytest.fixture(scope="module")
def llm():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    engine = LLM(model=str(STAND_IN), dtype="bfloat16", max_model_len=2048, enforce_eager=True,
                 trust_remote_code=True, seed=0, max_num_seqs=8)
    yield engine
    del engine
    gc.collect()


def _ids(tok, prompt, chat):
    return tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)


def test_greedy_probe_answers(llm):
    from vllm import SamplingParams

    tok = FaithfulTokenizer(STAND_IN)
    outs = llm.generate([{"prompt_token_ids": _ids(tok, p, c)} for p, c in PROBES],
                        SamplingParams(temperature=0, max_tokens=48), use_tqdm=False)
    answers = {}
    for (p, c), o in zip(PROBES, outs):
        text = tok.decode(list(o.outputs[0].token_ids))
        answers[("chat: " if c else "") + p] = text
    print("\n" + json.dumps(answers, ensure_ascii=False, indent=1))
    assert "Paris" in answers["What is the capital of France?"]
    assert "4" in answers["What is 2+2?"]
    assert "Paris" in answers["chat: What is the capital of France?"]
    assert any(s in answers["北京有什么好玩的景点？"] for s in ("故宫", "颐和园", "长城"))


def test_engine_tokenizer_vs_faithful(llm):
    """vLLM tokenizes a text prompt with transformers' AutoTokenizer; compare with SentencePiece."""
    from vllm import SamplingParams

    tok = FaithfulTokenizer(STAND_IN)
    prompt = "What is the capital of France?"
    o = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)[0]
    engine_ids = list(o.prompt_token_ids)
    mm = first_mismatch(tok.encode(prompt), engine_ids)
    print(f"\nengine prompt ids {engine_ids}\nfaithful ids      {tok.encode(prompt)}\nfirst mismatch {mm}"
          f"\nanswer with engine tokenization: {tok.decode(list(o.outputs[0].token_ids))!r}")
    import transformers

    if transformers.__version__.startswith("5.19"):
        # Finding (models/README.md): a leading "▁" piece is inserted after BOS; BOS itself is added.
        assert engine_ids[0] == 1 and mm is not None and mm["index"] == 1
