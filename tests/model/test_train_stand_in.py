"""model.train_stand_in and the stand-in it trained (models/stand-in): honest labelling, exactly ternary weights,
sensible greedy answers through the reference implementation, and a training script that runs.

With an engine (marked `engine`, one vLLM engine for the module, imported only there): the stand-in through vLLM
(CPU build, BF16, trust_remote_code, as the real repository would be loaded): greedy answers to the probe prompts,
fed token ids from the faithful tokenizer; and what the engine's own tokenizer does with the same text (that
comparison stays with the engine it needs rather than start another in test_tokenizer.py)."""
from __future__ import annotations

import gc
import json
import os

import pytest
import torch

from bitcpm_validation.model.config import PROJECTIONS
from bitcpm_validation.model.reference import ReferenceModel, load_state_dict
from bitcpm_validation.model.ternary_qat import check_ternary, ternary_quantize  # noqa: F401
from bitcpm_validation.model.tokenizer import FaithfulTokenizer, first_mismatch
from bitcpm_validation.model.train_stand_in import PROBES, train
from bitcpm_validation.paths import MODELS_DIR

torch.set_num_threads(2)
STAND_IN = MODELS_DIR / "stand-in"


def test_labelled_as_stand_in():
    cfg = json.loads((STAND_IN / "config.json").read_text())
    assert "NOT openbmb/BitCPM4-0.5B" in cfg["stand_in_note"]
    assert "model_type" not in cfg and "lm_head.weight" not in load_state_dict(STAND_IN)
    assert "NOT BitCPM4" in (STAND_IN / "README.md").read_text()
    assert "not BitCPM4" in (MODELS_DIR / "README.md").read_text()


def test_shipped_weights_are_exactly_ternary_per_group():
    sd = load_state_dict(STAND_IN)
    n_proj = 0
    for k, v in sd.items():
        assert v.dtype == torch.bfloat16, k
        leaf = k.split(".")[-2]
        if leaf in PROJECTIONS:
            n_proj += 1
            r = check_ternary(v, 32)
            assert r["ok"], (k, r)
            assert 0.05 < r["zero_share"] < 0.95
            # code * scale reconstructs the stored BF16 tensor exactly (scale = the group's |max|)
            g = v.float().reshape(v.shape[0], -1, 32)
            a = g.abs().amax(-1, keepdim=True)
            assert torch.equal((torch.sign(g) * a).reshape(v.shape).to(torch.bfloat16), v), k
        else:  # embeddings and norms stay dense
            assert leaf in ("embed_tokens", "input_layernorm", "post_attention_layernorm", "norm"), k
    assert n_proj == 7 * json.loads((STAND_IN / "config.json").read_text())["num_hidden_layers"]
    emb = sd["model.embed_tokens.weight"].float()
    assert not check_ternary(emb[:, : emb.shape[1] // 32 * 32], 32)["ok"]  # dense


@pytest.fixture(scope="module")
def ref():
    return ReferenceModel.from_pretrained(STAND_IN)


@pytest.mark.parametrize("prompt,want,chat", [
    ("What is the capital of France?", ["Paris"], False),
    ("What is 2+2?", ["4"], False),
    ("北京有什么好玩的景点?", ["故宫", "颐和园", "长城"], False),
    ("What is the capital of France?", ["Paris"], True),
])
def test_reference_greedy_answers(ref, prompt, want, chat):
    tok = FaithfulTokenizer(STAND_IN)
    ids = tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)
    new, _ = ref.greedy(ids, 40)
    text = tok.decode(new)
    assert any(w in text for w in want), text


def test_training_script_runs_and_is_deterministic(tmp_path):
    a = train(tmp_path / "a", seed=0, steps=3, batch=8, quiet=True)
    b = train(tmp_path / "b", seed=0, steps=3, batch=8, quiet=True)
    assert a["losses"] == b["losses"] and a["losses"][-1] < a["losses"][0]
    sa, sb = load_state_dict(tmp_path / "a"), load_state_dict(tmp_path / "b")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for f in ("config.json", "configuration_minicpm.py", "modeling_minicpm.py", "tokenizer.model", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
              "model.safetensors", "README.md"):
        assert (tmp_path / "a" / f).is_file(), f
    assert (tmp_path / "a" / "tokenizer.model").read_bytes() == (STAND_IN / "tokenizer.model").read_bytes()


# -- the stand-in through vLLM (engine) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_stand_in():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    engine = LLM(model=str(STAND_IN), dtype="bfloat16", max_model_len=2048, enforce_eager=True,
                 trust_remote_code=True, seed=0, max_num_seqs=8)
    yield engine
    del engine
    gc.collect()


def _probe_ids(tok, prompt, chat):
    return tok.encode_chat([{"role": "user", "content": prompt}]) if chat else tok.encode(prompt)


@pytest.mark.engine
def test_greedy_probe_answers(vllm_stand_in):
    from vllm import SamplingParams

    tok = FaithfulTokenizer(STAND_IN)
    outs = vllm_stand_in.generate([{"prompt_token_ids": _probe_ids(tok, p, c)} for p, c in PROBES],
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


@pytest.mark.engine
def test_engine_tokenizer_vs_faithful(vllm_stand_in):
    """vLLM tokenizes a text prompt with transformers' AutoTokenizer; compare with SentencePiece."""
    from vllm import SamplingParams

    tok = FaithfulTokenizer(STAND_IN)
    prompt = "What is the capital of France?"
    o = vllm_stand_in.generate([prompt], SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)[0]
    engine_ids = list(o.prompt_token_ids)
    mm = first_mismatch(tok.encode(prompt), engine_ids)
    print(f"\nengine prompt ids {engine_ids}\nfaithful ids      {tok.encode(prompt)}\nfirst mismatch {mm}"
          f"\nanswer with engine tokenization: {tok.decode(list(o.outputs[0].token_ids))!r}")
    import transformers

    if transformers.__version__.startswith("5.19"):
        # Finding (models/README.md): a leading "▁" piece is inserted after BOS; BOS itself is added.
        assert engine_ids[0] == 1 and mm is not None and mm["index"] == 1
