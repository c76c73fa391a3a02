"""The fp32 reference MiniCPM: internal consistency, every directory layout, and agreement with an
independent implementation (transformers' LlamaForCausalLM with the MiniCPM scales folded in) and with vLLM (CPU
build) in fp32 (marked `engine`, one vLLM engine for the module): on a LongRoPE config with short != long factors and
max_position_embeddings > original, top-5 log-probabilities agree to 1e-3. vLLM is imported only where an engine
test runs, so the other tests need no engine build."""
from __future__ import annotations

import gc
import json
import math
import os
import random

import pytest
import torch

from bitcpm_validation.model.config import read_config
from bitcpm_validation.model.reference import ReferenceModel, load_state_dict
from bitcpm_validation.model.writer import write_tiny_random_model

torch.set_num_threads(2)

# LongRoPE fully exercised: short != long, max_position_embeddings > original (mscale != 1).
ORIG, MAXPOS, HD = 32, 128, 64
_rng = random.Random(1)
SHORT = [round(1 + 3 * _rng.random(), 4) for _ in range(HD // 2)]
LONG = [round(1 + 30 * _rng.random(), 4) for _ in range(HD // 2)]
LONGROPE = {"rope_type": "longrope", "short_factor": SHORT, "long_factor": LONG, "original_max_position_embeddings": ORIG}


@pytest.fixture(scope="module")
def longrope_dir(tmp_path_factory):
    return write_tiny_random_model(tmp_path_factory.mktemp("lr"), dtype="float32", seed=3, num_hidden_layers=2,
                                   max_position_embeddings=MAXPOS, rope_scaling=LONGROPE)


def _ids(n, vocab, seed=0):
    g = random.Random(seed)
    return [1] + [g.randrange(3, vocab - 8) for _ in range(n - 1)]


def test_kv_cache_greedy_equals_full_forward(longrope_dir):
    ref = ReferenceModel.from_pretrained(longrope_dir)
    ids = _ids(20, ref.cfg["vocab_size"])
    new, steps = ref.greedy(ids, 12, top_k=5, stop_ids=[])
    lp = ref.logprobs(ids + new[:-1])
    for j, s in enumerate(steps):
        row = lp[len(ids) - 1 + j]
        assert s.token_id == int(row.argmax())
        v, i = row.topk(5)
        assert s.top_ids == i.tolist()
        assert max(abs(a - b) for a, b in zip(s.top_logprobs, v.tolist())) < 1e-4


def test_greedy_with_rows_is_greedy_plus_the_teacher_forced_rows(longrope_dir):
    ref = ReferenceModel.from_pretrained(longrope_dir)
    ids = _ids(20, ref.cfg["vocab_size"])
    new, steps = ref.greedy(ids, 12, top_k=5, stop_ids=[])
    new2, steps2, rows = ref.greedy_with_rows(ids, 12, top_k=5, stop_ids=[], chunk=7)  # 19 prompt rows: 3 chunks
    assert new2 == new and steps2 == steps  # the same prefill and steps: bit-equal
    full = ref.logprobs(ids + new)[:-1]
    assert rows.dtype == torch.float32 and rows.shape == full.shape == (len(ids) + 12 - 1, ref.cfg["vocab_size"])
    # within float32 rounding, not bit-equal: a prefill plus one-token KV steps vs one forward over the whole
    # sequence are the same arithmetic on different matmul shapes
    assert (rows - full).abs().max() < 1e-5
    for j, s in enumerate(steps):  # the generated positions' rows are the steps' own distributions
        assert rows[len(ids) - 1 + j, s.top_ids].tolist() == s.top_logprobs


def test_greedy_with_rows_stops_with_greedy_and_takes_no_new_tokens(longrope_dir):
    ref = ReferenceModel.from_pretrained(longrope_dir)
    ids = _ids(15, ref.cfg["vocab_size"], seed=4)
    free, _ = ref.greedy(ids, 10, top_k=3, stop_ids=[])
    stop = free[3]
    new, steps = ref.greedy(ids, 10, top_k=3, stop_ids=[stop])
    new2, steps2, rows = ref.greedy_with_rows(ids, 10, top_k=3, stop_ids=[stop])
    assert new2 == new and steps2 == steps and new[-1] == stop and len(new) <= 4
    assert rows.shape[0] == len(ids) + len(new) - 1
    assert (rows - ref.logprobs(ids + new)[:-1]).abs().max() < 1e-5
    none, no_steps, prompt_rows = ref.greedy_with_rows(ids, 0, top_k=3)
    assert none == [] and no_steps == [] and prompt_rows.shape[0] == len(ids) - 1
    assert (prompt_rows - ref.logprobs(ids)[:-1]).abs().max() < 1e-5


def test_precision_golden_items_take_the_rows_from_the_greedy_prefill(longrope_dir, monkeypatch):
    """chapters.precision._golden_items (here beside the reference it calls): with ReferenceImpl.greedy_with_rows,
    the same bundle items as the two-call path (greedy, then score_full on prompt + new) that other goldens take."""
    import numpy as np

    from bitcpm_validation.chapters import precision as P

    impl = P.ReferenceImpl(longrope_dir)

    class TwoCalls:  # the reference without greedy_with_rows, as TransformersImpl
        label = impl.label
        greedy, score_full = impl.greedy, impl.score_full

    vocab = impl.ref.cfg["vocab_size"]
    items = [P.FamilyItem("a", "short", "short", _ids(9, vocab, seed=1), True),
             P.FamilyItem("b", "long-40", "long", _ids(40, vocab, seed=2), True)]
    two, two_full = P._golden_items(TwoCalls(), items, 5, 6, keep_full=True)

    def no_second_forward(seqs):
        raise AssertionError("score_full called: the rows should come from greedy_with_rows")

    monkeypatch.setattr(impl, "score_full", no_second_forward)
    one, one_full = P._golden_items(impl, items, 5, 6, keep_full=True)
    assert [it["id"] for it in one] == ["a", "b"]
    for a, b in zip(one, two):
        assert a["tf_ids"] == b["tf_ids"] and a["gen_ids"] == b["gen_ids"] and a["gen_rows"] == b["gen_rows"]
        assert len(a["tf_rows"]) == len(b["tf_rows"]) == len(a["tf_ids"]) - 1
        for ra, rb in zip(a["tf_rows"], b["tf_rows"]):
            assert [t for t, _ in ra] == [t for t, _ in rb]
            assert max(abs(x - y) for (_, x), (_, y) in zip(ra, rb)) < 1e-5
        assert one_full[a["id"]].shape == two_full[a["id"]].shape
        assert np.abs(one_full[a["id"]] - two_full[a["id"]]).max() < 1e-5


def test_logprobs_are_fp32_log_softmax(longrope_dir):
    ref = ReferenceModel.from_pretrained(longrope_dir)
    lp = ref.logprobs(_ids(10, ref.cfg["vocab_size"]))
    assert lp.dtype == torch.float32 and lp.shape == (10, ref.cfg["vocab_size"])
    assert torch.allclose(lp.exp().sum(-1), torch.ones(10), atol=1e-5)


def test_longrope_selection_and_mscale(longrope_dir):
    from bitcpm_validation.model.config import longrope

    cfg = read_config(longrope_dir)
    assert longrope(cfg, max_model_len=ORIG)["factors"] == SHORT
    assert longrope(cfg, max_model_len=ORIG + 1)["factors"] == LONG
    assert longrope(cfg)["factors"] == LONG  # HF MiniCPM code: cache built at max_position_embeddings
    assert longrope(cfg)["mscale"] == pytest.approx(math.sqrt(1 + math.log(MAXPOS / ORIG) / math.log(ORIG)))
    a = ReferenceModel.from_pretrained(longrope_dir, max_model_len=ORIG).logprobs(_ids(16, cfg["vocab_size"]))
    b = ReferenceModel.from_pretrained(longrope_dir, max_model_len=MAXPOS).logprobs(_ids(16, cfg["vocab_size"]))
    assert (a - b).abs().max() > 1e-3  # the factors matter


@pytest.mark.parametrize("variant", ["bf16_single_no_model_type", "fp32_sharded_model_type", "bf16_sharded_lm_head"])
def test_every_layout_loads(tmp_path, variant):
    kw = dict(seed=5, num_hidden_layers=2)
    base = write_tiny_random_model(tmp_path / "base", dtype="bfloat16", **kw)
    if variant == "bf16_single_no_model_type":
        d = base
    elif variant == "fp32_sharded_model_type":
        d = write_tiny_random_model(tmp_path / "v", dtype="float32", shards=3, model_type="minicpm", **kw)
    else:
        d = write_tiny_random_model(tmp_path / "v", dtype="bfloat16", shards=2, lm_head=True, **kw)
    raw = json.loads((d / "config.json").read_text())
    assert ("model_type" in raw) == (variant == "fp32_sharded_model_type")
    names = set(load_state_dict(d))
    assert ("lm_head.weight" in names) == (variant == "bf16_sharded_lm_head")
    if "sharded" in variant:
        assert (d / "model.safetensors.index.json").is_file()
    ids = _ids(12, raw["vocab_size"])
    lp = ReferenceModel.from_pretrained(d).logprobs(ids)
    if variant == "fp32_sharded_model_type":  # same seed: fp32 weights vs their bf16 rounding
        lp0 = ReferenceModel.from_pretrained(base).logprobs(ids)
        assert (lp - lp0).abs().max() < 0.2 and (lp - lp0).abs().max() > 0
    if variant == "bf16_sharded_lm_head":  # untied head initialised like the embeddings? no: own tensor
        sd = load_state_dict(d)
        assert not torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])
        ref = ReferenceModel.from_pretrained(d)
        assert ref.module.lm_head is not None


def _llama_from(d, max_model_len):
    """transformers LlamaForCausalLM with the MiniCPM scales folded into the weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = read_config(d)
    sd = {k: v.float() for k, v in load_state_dict(d).items()}
    L = cfg["num_hidden_layers"]
    rs = cfg["scale_depth"] / math.sqrt(L)
    div = cfg["hidden_size"] / cfg["dim_model_base"]
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    folded = dict(sd)
    folded["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"] * cfg["scale_emb"]
    folded["lm_head.weight"] = head / div
    for i in range(L):
        for p in ("self_attn.o_proj", "mlp.down_proj"):
            k = f"model.layers.{i}.{p}.weight"
            folded[k] = sd[k] * rs
    rope = dict(cfg["rope_scaling"] or {"rope_type": "default"})
    rope["rope_theta"] = cfg["rope_theta"]
    lc = LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=L, num_attention_heads=cfg["num_attention_heads"], num_key_value_heads=cfg["num_key_value_heads"],
        head_dim=cfg["head_dim"], rms_norm_eps=cfg["rms_norm_eps"], max_position_embeddings=cfg["max_position_embeddings"],
        rope_parameters=rope, tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
    )
    m = LlamaForCausalLM(lc).float().eval()
    missing, unexpected = m.load_state_dict(folded, strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k], (missing, unexpected)
    return m


@pytest.mark.parametrize("length", [24, 80], ids=["short_factors", "long_factors"])
def test_matches_transformers_llama_folded(longrope_dir, length):
    """transformers picks long factors per sequence (len > original): the reference gets the same
    choice through max_model_len; mscale applies to both."""
    llama = _llama_from(longrope_dir, length)
    ref = ReferenceModel.from_pretrained(longrope_dir, max_model_len=length)
    ids = _ids(length, ref.cfg["vocab_size"], seed=length)
    with torch.no_grad():
        lp_t = torch.log_softmax(llama(torch.tensor([ids])).logits[0].float(), -1)
    lp_r = ref.logprobs(ids)
    top = lp_r.topk(5, dim=-1).indices
    delta = (lp_r.gather(1, top) - lp_t.gather(1, top)).abs().max().item()
    print(f"max |Δ logprob| over top-5, reference vs transformers Llama (folded), len {length}: {delta:.2e}")
    assert torch.equal(top, lp_t.topk(5, dim=-1).indices)
    assert delta < 1e-3


def test_matches_project_remote_code(longrope_dir):
    """The shipped modeling_minicpm.py through AutoModelForCausalLM(trust_remote_code) agrees."""
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(longrope_dir, trust_remote_code=True, dtype=torch.float32).eval()
    ref = ReferenceModel.from_pretrained(longrope_dir)
    ids = _ids(40, ref.cfg["vocab_size"], seed=7)
    with torch.no_grad():
        lp_m = torch.log_softmax(m(torch.tensor([ids])).logits[0].float(), -1)
    assert (lp_m - ref.logprobs(ids)).abs().max() < 1e-3


# -- agreement with vLLM (CPU build) in fp32 (engine) -----------------------------------------------------------
VLLM_ORIG, VLLM_MAXPOS = 64, 256  # HD as above
_vllm_rng = random.Random(2)
VLLM_LONGROPE = {
    "rope_type": "longrope",
    "short_factor": [round(1 + 3 * _vllm_rng.random(), 4) for _ in range(HD // 2)],
    "long_factor": [round(1 + 30 * _vllm_rng.random(), 4) for _ in range(HD // 2)],
    "original_max_position_embeddings": VLLM_ORIG,
}
VLLM_MAX_MODEL_LEN = VLLM_MAXPOS  # > VLLM_ORIG: vLLM uses the long factors (chosen once per engine)


def _vllm_prompts(vocab):
    g = random.Random(11)
    return [[1] + [g.randrange(3, vocab - 8) for _ in range(n)] for n in (20, 90, 150)]


@pytest.fixture(scope="module")
def vllm_fp32(tmp_path_factory):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    d = write_tiny_random_model(tmp_path_factory.mktemp("vllm_fp32"), dtype="float32", seed=4,
                                max_position_embeddings=VLLM_MAXPOS, rope_scaling=VLLM_LONGROPE, std=0.08)
    from vllm import LLM

    llm = LLM(model=str(d), dtype="float32", max_model_len=VLLM_MAX_MODEL_LEN, enforce_eager=True,
              trust_remote_code=True, seed=0, max_num_seqs=4)
    yield d, llm
    del llm
    gc.collect()


@pytest.mark.engine
def test_prompt_logprobs_agree(vllm_fp32):
    from vllm import SamplingParams

    d, llm = vllm_fp32
    ref = ReferenceModel.from_pretrained(d, max_model_len=VLLM_MAX_MODEL_LEN)
    prompts = _vllm_prompts(ref.cfg["vocab_size"])
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


@pytest.mark.engine
def test_greedy_logprobs_agree(vllm_fp32):
    from vllm import SamplingParams

    d, llm = vllm_fp32
    ref = ReferenceModel.from_pretrained(d, max_model_len=VLLM_MAX_MODEL_LEN)
    prompts = _vllm_prompts(ref.cfg["vocab_size"])
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
