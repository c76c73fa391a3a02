"""The reference against vLLM (CPU build) in fp32 on a LongRoPE config with short != long factors
and max_position_embeddings > original: top-5 log-probabilities agree to 1e-3."""
from __future__ import annotations

import gc
import os
import random

import pytest
import torch

from bitcpm_validation.model.reference import ReferenceModel
from bitcpm_validation.model.writer import write_tiny_random_model

pytestmark = pytest.mark.engine
torch.set_num_threads(2)

ORIG, MAXPOS, HD = 64, 256, 64
_rng = random.Random(2)
LONGROPE = {
    "rope_type": "longrope",
    "short_factor": [round(1 + 3 * _rng.random(), 4) for _ in range(HD // 2)],
    "long_factor": [round(1 + 30 * _rng.random(), 4) for _ in range(HD // 2)],
    "original_max_position_embeddings": ORIG,
}
MAX_MODEL_LEN = MAXPOS  # > ORIG: vLLM uses the long factors (chosen once per engine)


def _prompts(vocab):
    g = random.Random(11)
    return [[1] + [g.randrange(3, vocab - 8) for _ in range(n)] for n in (20, 90, 150)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    d = write_tiny_random_model(tmp_path_factory.mktemp("vllm_fp32"), dtype="float32", seed=4,
                                max_position_embeddings=MAXPOS, rope_scaling=LONGROPE, std=0.08)
    from vllm import LLM

    llm = LLM(model=str(d), dtype="float32", max_model_len=MAX_MODEL_LEN, enforce_eager=True,
              trust_remote_code=True, seed=0, max_num_seqs=4)
    yield d, llm
    del llm
    gc.collect()


def test_prompt_logprobs_agree(setup):
    from vllm import SamplingParams

    d, llm = setup
    ref = ReferenceModel.from_pretrained(d, max_model_len=MAX_MODEL_LEN)
    prompts = _prompts(ref.cfg["vocab_size"])
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts],
                        SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=5), use_tqdm=False)
    worst, n = 0.0, 0
    for p, o in zip(prompts, outs):
        lp = ref.logprobs(p)
        for t in range(1, len(p)):
            got = o.prompt_logprobs[t]
            v, i = lp[t - 1].topk(5)
            for tok, val in zip(i.tolist(), v.tolist()):
                assert tok in got, (t, tok, sorted(got))
                worst = max(worst, abs(got[tok].logprob - val))
                n += 1
    print(f"\nvLLM fp32 vs reference, teacher-forced top-5: max |Δ logprob| = {worst:.2e} over {n} values")
    assert worst < 1e-3


def test_greedy_logprobs_agree(setup):
    from vllm import SamplingParams

    d, llm = setup
    ref = ReferenceModel.from_pretrained(d, max_model_len=MAX_MODEL_LEN)
    prompts = _prompts(ref.cfg["vocab_size"])
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts],
                        SamplingParams(temperature=0, max_tokens=24, logprobs=5, ignore_eos=True), use_tqdm=False)
    worst = 0.0
    for p, o in zip(prompts, outs):
        new, steps = ref.greedy(p, 24, top_k=5, stop_ids=[])
        got_ids = list(o.outputs[0].token_ids)
        assert got_ids == new
        for s, lpd in zip(steps, o.outputs[0].logprobs):
            for tok, val in zip(s.top_ids, s.top_logprobs):
                assert tok in lpd
                worst = max(worst, abs(lpd[tok].logprob - val))
    print(f"\nvLLM fp32 vs reference, greedy 24 tokens, top-5: max |Δ logprob| = {worst:.2e}")
    assert worst < 1e-3
