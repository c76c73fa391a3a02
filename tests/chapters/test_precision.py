"""The precision chapter (chapters/precision.py).

Without an engine: agreement math on hand-made rows with known answers (exact KL, no fill bias), the check
functions' pass and fail paths, the golden choice, and three-way bundles from real implementations (reference,
transformers with the directory's remote code) and a fake engine.

With an engine (marked `engine`): the chapter notebook on its own (papermill, as the runner runs it; no run's
shared server, so an engine of its own) on a copy of the stand-in whose modeling code does not load with
transformers, with the paths the default report does not take: the transformers pairs not run, a baseline at a
missing directory and one at the run itself, precision.full_shape off. The model is models/stand-in when it has
weights, else a tiny random MiniCPM fake-quantized like BitCPM (ternary absmean, groups of 32, BF16) built here.

End to end (marked `e2e`), on the session's default report (its shared server's path): the three implementations
and every pair, the prompt families and engine features through the shared server (block size from /metrics, the
chat path's ids, chunked prefill, prefix-cache hits, the mixed batch), the full 0.5B shape, the quantization
chapter, and comparing the run with a copy of itself.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from bitcpm_validation.chapters import precision as P
from bitcpm_validation.model import agreement as A
from bitcpm_validation.model.writer import write_tiny_random_model
from bitcpm_validation.params import PrecisionParams, load_prompts
from bitcpm_validation.report import compare as C
from bitcpm_validation.report import results as R
from bitcpm_validation.report import runner

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models" / "stand-in"
PP = PrecisionParams()


def rows(*dicts):
    return [dict(d) for d in dicts]


# -- KL ---------------------------------------------------------------------------------------------------------
def test_kl_identical_is_zero_and_known_value():
    p = {1: math.log(0.5), 2: math.log(0.3), 3: math.log(0.2)}
    assert A.kl_topk(p, dict(p), 3) == pytest.approx(0.0, abs=1e-12)
    q = {1: math.log(0.25), 2: math.log(0.25), 3: math.log(0.5)}
    want = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert A.kl_topk(p, q, 3) == pytest.approx(want, rel=1e-9)


def test_kl_topk_renormalises_and_never_fills_a_missing_token():
    p = {1: math.log(0.6), 2: math.log(0.2), 9: math.log(0.01)}
    q = {1: math.log(0.3), 2: math.log(0.1), 7: math.log(0.5)}
    assert A.kl_topk(p, q, 2) == pytest.approx(0.0, abs=1e-12)  # same ratios on P's top-2
    assert A.kl_topk(p, {1: math.log(0.3), 7: math.log(0.5), 8: math.log(0.1)}, 2) is None  # token 2 unknown in Q


def test_old_fill_bias_is_gone():
    """Q's true probability of P's second token is 0.001, below Q's smallest *listed* value (0.05): the old
    fill (Q's smallest listed logprob) made KL look small; scored rows and whole rows give the true value."""
    vocab = 6
    p_full = np.log(np.array([0.5, 0.45, 0.02, 0.01, 0.01, 0.01]))
    q_full = np.log(np.array([0.9, 0.001, 0.05, 0.019, 0.015, 0.015]))
    k = 2
    p_row = A.row_from_full(p_full, k)
    q_topk_only = A.row_from_full(q_full, k)  # what prompt_logprobs=k returns: tokens 0 and 2
    assert 1 not in q_topk_only
    floor = min(q_topk_only.values())
    s = A.topk_ids(p_row, k)
    lp = A.log_normalise([p_row[t] for t in s])  # the old formula, reproduced here
    lq = A.log_normalise([q_topk_only.get(t, floor) for t in s])
    old = sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
    # scored for the golden's top-k tokens (what follower_bundle stores): exact top-k KL
    q_scored = A.row_from_full(q_full, k, also=A.full_topk(p_full, k))
    exact_topk = A.kl_topk(p_row, q_scored, k)
    pn = np.exp(p_full[:2]) / np.exp(p_full[:2]).sum()
    qn = np.exp(q_full[:2]) / np.exp(q_full[:2]).sum()
    assert exact_topk == pytest.approx(float((pn * np.log(pn / qn)).sum()), rel=1e-9)
    assert old < exact_topk / 3  # the fill under-estimated it several times over
    assert A.kl_topk(p_row, q_topk_only, k) is None  # and without the score: n/a, not a biased number
    # whole vocabulary
    full = A.full_kl(p_full[None], q_full[None])[0]
    assert full == pytest.approx(float((np.exp(p_full) * (p_full - q_full)).sum()), rel=1e-9)
    assert full > old and len(p_full) == vocab


def test_full_kl_shapes_and_zero_mass():
    with np.errstate(divide="ignore"):  # log 0 = -inf: a token without mass
        p = np.log(np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))
        q = np.log(np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]]))
    kl = A.full_kl(p, q)
    assert kl[0] == pytest.approx(math.log(2)) and kl[1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same token ids"):
        A.full_kl(p, q[:, :2])


# -- teacher-forced / free-running ----------------------------------------------------------------------------
def test_teacher_forced_known_answers():
    seq = [5, 1, 2, 3]
    p = rows({1: -0.1, 2: -2.0}, {2: -0.2, 3: -1.9}, {3: -0.3, 1: -1.5})
    q = rows({1: -0.15, 2: -2.0}, {3: -0.5, 2: -0.6}, {3: -0.3, 1: -1.5})
    tf = A.teacher_forced(seq, p, q, k=2, prompt_len=2)
    assert tf["positions"] == 3
    assert tf["top1_agree"] == 2 and tf["top1_agreement"] == pytest.approx(2 / 3)
    assert tf["disagree_at"] == [2]
    assert tf["abs_dlogprob"] == pytest.approx([0.05, 0.4, 0.0])
    assert tf["max_abs_dlogprob"] == pytest.approx(0.4) and tf["mean_abs_dlogprob"] == pytest.approx(0.15)
    assert tf["kl"][2] == pytest.approx(0.0, abs=1e-12) and tf["kl"][1] > 0 and tf["kl_missing"] == 0


def test_free_running_exact_divergence_and_close_rule():
    a_rows = rows({1: -0.1}, {2: -0.5, 4: -0.9}, {3: -0.2})
    b_rows = rows({1: -0.1}, {4: -0.6, 2: -0.7}, {3: -0.2})
    f = A.free_running([1, 2, 3], a_rows, [1, 4, 3], b_rows, k=2)
    assert f["match_len"] == 1 and f["first_divergence"] == 1 and not f["full_match"]
    assert (f["a_token"], f["b_token"]) == (2, 4) and f["a_in_b_topk"] and f["b_in_a_topk"] and f["close"]
    f2 = A.free_running([1, 2], a_rows[:2], [1, 4], rows({1: -0.1}, {4: -0.1, 8: -0.2}), k=2)
    assert not f2["a_in_b_topk"] and f2["b_in_a_topk"] and not f2["close"]
    same = A.free_running([1, 2, 3], a_rows, [1, 2, 3], a_rows, k=2)
    assert same["full_match"] and same["match_len"] == 3 and same["first_divergence"] is None
    short = A.free_running([1, 2, 3], a_rows, [1, 2], a_rows[:2], k=2)
    assert short["match_len"] == 2 and short["close"] and not short["full_match"]


def _bundle(label, gen, rows_tf, k=2):
    return {"version": 1, "label": label, "k": k, "environment": {}, "model": {},
            "items": [{"id": "x", "prompt_ids": [5], "tf_ids": [5, 1, 2, 3],
                       "tf_rows": [A.row_to_pairs(r) for r in rows_tf],
                       "gen_ids": gen, "gen_rows": [A.row_to_pairs(r) for r in rows_tf]}]}


def test_compare_bundles_and_checks():
    p = rows({1: -0.1, 2: -2.0}, {2: -0.2, 3: -1.9}, {3: -0.3, 1: -1.5})
    a, b = _bundle("ref", [1, 2, 3], p), _bundle("eng", [1, 2, 3], p)
    s = A.compare_bundles(a, b)["summary"]
    assert s["top1_agreement"] == 1.0 and s["max_abs_dlogprob"] == 0.0 and s["mean_kl"] == pytest.approx(0, abs=1e-12)
    assert s["kl_basis"] == "top-k" and s["exact_match_lens"] == [3] and s["full_matches"] == 1 and s["close"] == 1
    tol = P.Tolerances.engine(PP)
    assert P.judge_agreement("engine-vs-reference", s, tol).status == "pass"
    assert P.judge_logprobs_close("engine-vs-reference", s).status == "pass"
    worse_b = _bundle("eng", [1, 3, 3], rows({1: -0.1, 2: -2.0}, {3: -0.1, 2: -3.0}, {3: -0.3, 1: -1.5}))
    worse = A.compare_bundles(a, worse_b)["summary"]
    row = P.judge_agreement("engine-vs-reference", worse, tol)
    assert row.status == "fail" and row.id == "agreement:engine-vs-reference" and row.scope == "engine"
    assert "top-1 agreement" in row.detail_en and "mean |Δ logprob|" in row.detail_en and "top-1 一致率" in row.detail_zh
    assert P.judge_logprobs_close("engine-vs-reference", worse).status == "pass"  # 3 is in the reference's top-2
    top1_only = A.compare_bundles(a, worse_b, k=1)["summary"]  # ... but not its top-1
    row = P.judge_logprobs_close("engine-vs-reference", top1_only)
    assert row.status == "fail" and "0/1 prompts close" in row.detail_en
    again = json.loads(json.dumps(a))
    assert A.compare_bundles(again, b)["summary"]["max_abs_dlogprob"] == 0.0


def test_compare_bundles_uses_full_rows_when_given():
    p = rows({1: -0.1, 2: -2.0}, {2: -0.2, 3: -1.9}, {3: -0.3, 1: -1.5})
    a, b = _bundle("ref", [1, 2, 3], p), _bundle("eng", [1, 2, 3], p)
    fa = {"x": np.log(np.full((3, 4), 0.25))}
    fb = {"x": np.log(np.array([[0.7, 0.1, 0.1, 0.1]] * 3))}
    s = A.compare_bundles(a, b, full=(fa, fb))["summary"]
    want = float((0.25 * np.log(0.25 / np.array([0.7, 0.1, 0.1, 0.1]))).sum())
    assert s["kl_basis"] == "full" and s["mean_kl"] == pytest.approx(want) and s["mean_kl_topk"] == pytest.approx(0)
    assert P.judge_agreement("x", s, P.Tolerances.engine(PP)).status == "fail"  # KL 0.29 > 0.05


def test_float32_tolerance_judges_max_delta():
    s = {"prompts": 1, "positions": 10, "top1_agreement": 1.0, "mean_abs_dlogprob": 0.0001, "max_abs_dlogprob": 0.01,
         "mean_kl": 1e-6, "kl_basis": "full"}
    assert P.judge_agreement("transformers-vs-reference", s, P.Tolerances.engine(PP)).status == "pass"
    row = P.judge_agreement("transformers-vs-reference", s, P.Tolerances.float32(PP))
    assert row.status == "fail" and "max |Δ logprob|" in row.detail_en


def test_no_positions_and_no_kl_fail():
    tol = P.Tolerances.engine(PP)
    assert "no position" in P.judge_agreement("p", {"positions": 0}, tol).detail_en
    s = {"prompts": 1, "positions": 3, "top1_agreement": 1.0, "mean_abs_dlogprob": 0.0, "max_abs_dlogprob": 0.0,
         "mean_kl": None, "kl_basis": None}
    row = P.judge_agreement("p", s, tol)
    assert row.status == "fail" and "KL could not be computed" in row.detail_en
    assert P.judge_logprobs_close("p", {"prompts": 0}).status == "fail"


def test_baseline_check_paths():
    tol = P.Tolerances.engine(PP)
    good = {"prompts": 2, "positions": 20, "top1_agreement": 1.0, "mean_abs_dlogprob": 0.01, "max_abs_dlogprob": 0.05,
            "mean_kl": 0.001, "kl_basis": "top-k", "close": 2}
    assert P.judge_baseline(1, "runs/a", summary=good, tol=tol).status == "pass"
    other = P.judge_baseline(1, "runs/a", summary=good, same_model=False, tol=tol)
    assert other.status == "warn" and "not the same model" in other.detail_en and other.id == "baseline:1"
    assert P.judge_baseline(1, "runs/a", summary={**good, "close": 1}, tol=tol).status == "fail"
    assert P.judge_baseline(0, "x", error="baseline x: not found").status == "fail"


def test_load_run_bundles_errors_are_one_line(tmp_path):
    with pytest.raises(A.BaselineError, match="not found"):
        A.load_run_bundles(tmp_path / "nope")
    (tmp_path / "run" / "results").mkdir(parents=True)
    with pytest.raises(A.BaselineError, match="did not run"):
        A.load_run_bundles(tmp_path / "run")
    f = tmp_path / "run" / "results" / "06_precision.json"
    f.write_text("{broken")
    with pytest.raises(A.BaselineError, match="not readable"):
        A.load_run_bundles(tmp_path / "run")
    f.write_text(json.dumps({"data": {"bundle": {"version": 99}}}))
    with pytest.raises(A.BaselineError) as e:
        A.load_run_bundles(tmp_path / "run")
    assert "\n" not in str(e.value)
    good = _bundle("eng", [1], rows({1: -0.1}, {2: -0.1}, {3: -0.1}))
    f.write_text(json.dumps({"data": {"bundle": good, "reference_bundle": good}}))
    got = A.load_run_bundles(tmp_path / "run")
    assert got["run"] == "run" and got["engine"]["label"] == "eng"


def test_summary_cells_have_no_scientific_notation():
    cells = A.summary_cells({"top1_agreement": 1.0, "max_abs_dlogprob": 0.000041, "mean_abs_dlogprob": 0.0123,
                             "mean_kl": 2.5e-7, "kl_basis": "full", "exact_match_lens": [8], "gen_lens": [8],
                             "close": 1, "prompts": 1})
    assert cells[:5] == ["1.0000", "0.000041", "0.0123", "0.00000025", "full"]
    assert not any("e-" in c for c in cells)


# -- golden choice and three implementations ------------------------------------------------------------------
def test_choose_golden(tmp_path):
    assert P.choose_golden(STAND_IN)[0] == "reference"
    d = tmp_path / "llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    kind, en, zh = P.choose_golden(d)
    assert kind == "transformers" and "no reference" in en and "LlamaForCausalLM" in en and zh
    assert P.choose_golden(tmp_path / "missing")[0] == "transformers"


def test_transformers_load_error_is_one_line(tmp_path):
    d = tmp_path / "broken"
    shutil.copytree(STAND_IN, d)
    (d / "modeling_minicpm.py").write_text("raise ImportError('this remote code needs flash_attn')\n")
    with pytest.raises(RuntimeError) as e:
        P.load_transformers(d)
    msg = str(e.value)
    assert "\n" not in msg and "flash_attn" in msg


class FakeEngine:
    """An offline-Engine look-alike over the reference with BF16-rounded logits (no whole-vocabulary method)."""

    def __init__(self, ref):
        self.ref = ref

    def _lp(self, ids):
        return torch.log_softmax(self.ref.logits(ids).to(torch.bfloat16).float(), dim=-1)

    def generate(self, prompts, *, max_tokens, logprobs=None, prompt_logprobs=None):
        from types import SimpleNamespace

        out = []
        for ids in prompts:
            if prompt_logprobs:
                lp = self._lp(ids)
                pl = [None] + [{**dict(zip(*(x.tolist() for x in reversed(lp[t - 1].topk(prompt_logprobs))))),
                                ids[t]: float(lp[t - 1][ids[t]])} for t in range(1, len(ids))]
                out.append(SimpleNamespace(token_ids=[], logprobs=None, prompt_logprobs=pl))
                continue
            seq, new, rows_ = list(ids), [], []
            for _ in range(max_tokens):
                row = self._lp(seq)[-1]
                v, i = row.topk(logprobs)
                new.append(int(i[0]))
                rows_.append(dict(zip(i.tolist(), v.tolist())))
                seq.append(int(i[0]))
                if int(i[0]) in (2,):
                    break
            out.append(SimpleNamespace(token_ids=new, logprobs=rows_, prompt_logprobs=None))
        return out


@pytest.fixture(scope="module")
def three_way():
    if not list(STAND_IN.glob("*.safetensors")):
        pytest.skip("models/stand-in has no weights: build it with `make stand-in`")
    ref = P.ReferenceImpl(STAND_IN)
    hf = P.TransformersImpl(P.load_transformers(STAND_IN))
    items = [("a", [1, 300, 400, 500]), ("b", [1, 700, 20, 31, 99])]
    golden, golden_full = P.golden_bundle(ref, items, 5, 8)
    hf_b, hf_full = P.follower_bundle(hf, golden, golden_full, 5, 8)
    eng = P.EngineImpl(FakeEngine(ref.ref), "fake bf16 engine")
    eng_b, eng_full = P.follower_bundle(eng, golden, golden_full, 5, 8)
    return {"golden": golden, "golden_full": golden_full, "hf": (hf_b, hf_full), "eng": (eng_b, eng_full), "eng_impl": eng}


def test_transformers_agrees_with_the_reference_in_fp32(three_way):
    hf_b, hf_full = three_way["hf"]
    c = A.compare_bundles(three_way["golden"], hf_b, full=(three_way["golden_full"], hf_full))
    s = c["summary"]
    assert s["kl_basis"] == "full" and s["top1_agreement"] == 1.0 and s["max_abs_dlogprob"] < 1e-4
    assert s["full_matches"] == 2
    assert P.judge_agreement("transformers-vs-reference", s, P.Tolerances.float32(PP)).status == "pass"


def test_engine_without_whole_rows_falls_back_to_exact_topk(three_way):
    eng_b, eng_full = three_way["eng"]
    assert eng_full is None and "no whole-vocabulary" in three_way["eng_impl"].full_error
    c = A.compare_bundles(three_way["golden"], eng_b)
    s = c["summary"]
    assert s["positions"] == sum(len(it["tf_ids"]) - 1 for it in eng_b["items"])
    # the engine's rows were scored with prompt_logprobs=k only: the top-k KL exists only where it lists the
    # golden's top-k; where it does not everywhere, the judged KL is the one over the support both rows list
    assert s["kl_topk_missing"] + sum(x is not None for p in c["per_prompt"] for x in p["teacher_forced"]["kl"]) \
        == s["positions"]
    assert s["kl_basis"] == ("shared top-k support" if s["kl_topk_missing"] else "top-k")
    assert s["mean_kl"] is not None and s["mean_kl"] >= 0
    assert s["max_abs_dlogprob"] > 0  # BF16 rounding is visible


def test_golden_rows_list_the_actual_token_and_topk(three_way):
    it = three_way["golden"]["items"][0]
    assert len(it["tf_rows"]) == len(it["tf_ids"]) - 1
    for i, r in enumerate(it["tf_rows"]):
        ids = [t for t, _ in r]
        assert it["tf_ids"][i + 1] in ids and len(ids) >= 5
    hf_it = three_way["hf"][0]["items"][0]
    g = three_way["golden_full"][it["id"]]
    for i, r in enumerate(hf_it["tf_rows"]):  # a follower scores the golden's top-k tokens: exact top-k KL later
        assert set(A.full_topk(g[i], 5)) <= {t for t, _ in r}


# -- families, ties, features (issue 19) ---------------------------------------------------------------------
def _one_item_bundle(seq, rows, prompt_len, label):
    return {"version": 1, "label": label, "k": 5, "items": [
        {"id": "x", "prompt_ids": seq[:prompt_len], "tf_ids": seq, "tf_rows": [A.row_to_pairs(r) for r in rows],
         "gen_ids": seq[prompt_len:], "gen_rows": [A.row_to_pairs(r) for r in rows[prompt_len - 1:]]}]}


def test_a_flip_below_the_tie_margin_is_a_tie_and_flat_logits_cannot_pass():
    seq = [0, 1, 1, 1, 1]
    decisive = {1: math.log(0.9), 2: math.log(0.1)}
    near_tie = {1: math.log(0.501), 2: math.log(0.499)}   # margin 0.004 nat
    flipped = {1: math.log(0.499), 2: math.log(0.501)}
    p = [decisive, decisive, decisive, near_tie]
    q = [decisive, decisive, decisive, flipped]
    c = A.compare_bundles(_one_item_bundle(seq, p, 3, "P"), _one_item_bundle(seq, q, 3, "Q"), tie_margin=0.05)
    s = c["summary"]
    assert s["ties"] == 1 and s["flips"] == 0 and s["top1_agreement_decisive"] == 1.0
    assert c["per_prompt"][0]["teacher_forced"]["ties_at"] == [[4, pytest.approx(0.004, abs=1e-4)]]
    assert s["decisive_share"] == 0.75
    # prompt positions (1, 2) and generated ones (3, 4) apart
    assert s["prompt_region"]["positions"] == 2 and s["generated_region"]["positions"] == 2
    tol = P.Tolerances.engine(PP, "bfloat16")
    assert P.judge_family("x", s, tol).status == "pass"
    # the same flip with a decisive margin is a disagreement
    assert A.compare_bundles(_one_item_bundle(seq, p, 3, "P"), _one_item_bundle(seq, q, 3, "Q"), tie_margin=0.001)["summary"]["flips"] == 1
    # flat logits: every position a near-tie, so nothing is decisive and the comparison cannot pass
    flat = A.compare_bundles(_one_item_bundle(seq, [near_tie] * 4, 3, "P"), _one_item_bundle(seq, [flipped] * 4, 3, "Q"), tie_margin=0.05)
    row = P.judge_family("x", flat["summary"], tol)
    assert row.status == "fail" and "decisive" in row.detail_en


def test_kl_on_the_shared_support_is_exact_for_what_both_list():
    p = {1: math.log(0.5), 2: math.log(0.3), 3: math.log(0.1)}
    q = {1: math.log(0.25), 2: math.log(0.15), 9: math.log(0.5)}  # same ratio on {1, 2}
    assert A.kl_shared(p, q) == pytest.approx(0.0, abs=1e-12)
    assert A.kl_shared(p, {1: 0.0}) is None


def test_a_perturbed_rope_short_factor_fails_the_long_family(tmp_path):
    """The real config's long and short factors are equal and its original context is 32,768, so the long branch
    never runs at 4,096: a wrong *short* factor (2 % off) is what the long family must catch."""
    from bitcpm_validation.model.reference import ReferenceModel

    if not list(STAND_IN.glob("*.safetensors")):
        pytest.skip("models/stand-in has no weights: build it with `make stand-in`")
    bad_dir = tmp_path / "model"
    shutil.copytree(STAND_IN, bad_dir)
    cfg = json.loads((bad_dir / "config.json").read_text(encoding="utf-8"))
    assert cfg["rope_scaling"]["original_max_position_embeddings"] > 2048  # the short factors are the ones used
    cfg["rope_scaling"]["short_factor"] = [f * 1.02 for f in cfg["rope_scaling"]["short_factor"]]
    (bad_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    ids = P.long_ids(STAND_IN, "en", 700)
    rows_of = lambda m: P.topk_rows(m.logprobs(ids)[:-1].numpy(), ids, 20)  # noqa: E731
    good = rows_of(ReferenceModel.from_pretrained(STAND_IN, max_model_len=2048))
    bad = rows_of(ReferenceModel.from_pretrained(bad_dir, max_model_len=2048))
    tol = P.Tolerances.engine(PP, "float32")
    same = A.compare_bundles(_one_item_bundle(ids, good, 690, "P"), _one_item_bundle(ids, good, 690, "Q"), tie_margin=tol.tie_margin)
    assert P.judge_family("long-700", same["summary"], tol).status == "pass"
    c = A.compare_bundles(_one_item_bundle(ids, good, 690, "P"), _one_item_bundle(ids, bad, 690, "Q"), tie_margin=tol.tie_margin)
    row = P.judge_family("long-700", c["summary"], tol)
    assert row.status == "fail" and "mean |Δ logprob|" in row.detail_en


def test_whole_vocab_probe_falls_back_when_refused_or_the_engine_dies():
    from bitcpm_validation.engine.offline import EngineError

    class Refusing:
        def prompt_logprobs_full(self, prompts):
            raise EngineError("shared engine answered HTTP 400: prompt_logprobs -1 exceeds the device's limit")

    impl = P.EngineImpl(Refusing(), "refusing")
    probe = P.probe_whole_vocab(impl, [1, 2, 3, 4], alive=lambda: False)
    assert probe == {"ok": False, "error": impl.full_error, "engine_alive": False} and "HTTP 400" in probe["error"]
    assert impl.score_full([[1, 2, 3]]) is None  # top-k from then on, without asking again
    row = P.judge_whole_vocab(probe)
    assert row.status == "warn" and "replaced" in row.detail_en

    class Whole:
        def prompt_logprobs_full(self, prompts):
            return [np.zeros((len(p) - 1, 8), dtype=np.float32) for p in prompts]

    ok = P.probe_whole_vocab(P.EngineImpl(Whole(), "whole"), [1, 2, 3, 4])
    assert ok["ok"] and P.judge_whole_vocab(ok).status == "pass"


def test_family_items_from_the_profile(tmp_path):
    ps = load_prompts(ROOT / "params" / "prompts.yaml")
    items = P.family_items(ps.prompts, PP, STAND_IN, 2048, 128, 32)
    by = {it.id: it for it in items}
    assert [n for n in (256, 1024, 2016) if f"long-{n}" in by] == [256, 1024, 2016]
    assert all(len(by[f"kv-block-{n}"].ids) == n for n in (127, 128, 129))
    assert {it.family for it in items} == {"zh", "chat", "long", "long_zh", "kv-block"}
    assert by["long-2016"].ids[:256] == by["long-256"].ids and not by["long-2016"].whole_vocab
    assert all(it.whole_vocab for it in items if it.family in ("zh", "chat"))
    # a profile with a short max_model_len: lengths above max_model_len - new tokens are dropped
    short = P.family_items(ps.prompts, PP, STAND_IN, 300, 128, 32)
    assert max(len(it.ids) for it in short) <= 268


def test_chat_family_takes_the_server_chat_paths_ids_and_keeps_the_projects():
    ps = load_prompts(ROOT / "params" / "prompts.yaml")
    seen = []

    def chat_path(messages):  # the shared server's chat_prompt_ids: its template may add a BOS
        seen.append(messages)
        return [1, 2001, 7, 7]

    items = P.family_items(ps.prompts, PP, STAND_IN, 2048, None, 32, chat_path=chat_path)
    chat = [it for it in items if it.family == "chat"]
    assert chat and all(it.ids == [1, 2001, 7, 7] and it.source == "server chat path" for it in chat)
    assert all(it.project_ids and it.project_ids[0] != 1 for it in chat)  # the project's ChatML: no BOS
    assert seen[0] == [{"role": "user", "content": ps.prompts[0].prompt}]
    assert not any(it.family == "kv-block" for it in items)  # no block size from the engine: no boundary prompts
    plain = P.family_items(ps.prompts, PP, STAND_IN, 2048, None, 32)
    assert all(it.source == "project ChatML" and it.ids == it.project_ids for it in plain if it.family == "chat")


def test_agreement_reason_splits_prompt_and_generated_positions_with_n():
    """Top-1 agreement beside its n, split into prompt and generated positions (issue 20.4): two flips in the prompt
    read as such, not as a disagreement of what was generated; every figure with its unit."""
    s = {"prompts": 2, "positions": 250, "top1_agreement": 0.992, "mean_abs_dlogprob": 0.01, "max_abs_dlogprob": 0.05,
         "mean_kl": 0.001, "kl_basis": "full",
         "prompt_region": {"positions": 186, "decisive": 180, "top1_agreement": 178 / 180},
         "generated_region": {"positions": 64, "decisive": 60, "top1_agreement": 1.0}}
    row = P.judge_agreement("engine-vs-reference", s, P.Tolerances.engine(PP))
    assert "[prompt positions 0.988889 (n = 180), generated 1.000000 (n = 60)]" in row.detail_en
    assert "提示位置 0.988889（n = 180），生成位置 1.000000（n = 60）" in row.detail_zh
    assert "mean KL 0.001000 nat (full) over n = 250 positions" in row.detail_en
    assert P.region_split({"positions": 3}) == ("", "")


@pytest.mark.parametrize("whole, basis, en", [
    (True, "full", "whole vocabulary"),  # the KL over the rows scored: one phrase
    (False, "top-k", "top-k"),
    (False, "shared top-k support", "top-k, shared"),
    (True, "top-k", "whole vocabulary; KL: top-k"),  # rows and KL differ: both said
    (False, None, "top-k; KL: n/a"),
])
def test_family_table_says_rows_and_kl_basis_in_one_cell(whole, basis, en):
    cell = P.rows_and_basis(whole, basis)
    assert (cell if isinstance(cell, str) else cell.en) == en
    row = P.family_row("long-256", {"kl_basis": basis, "mean_kl": 0.0002}, [256], whole)
    assert len(row) == len(P.FAMILY_HEADERS) and row[2] == cell


def test_chinese_details_carry_no_english_words():
    """Issue 20.5: logprob is 对数概率, nat 奈特, the KL basis in Chinese; sources and prompt ids as code."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rendered_text import english_words
    from bitcpm_validation.report.display import note_html

    s = {"top1_agreement": 1.0, "mean_abs_dlogprob": 0.001, "max_abs_dlogprob": 0.02, "mean_kl": 1e-5,
         "kl_basis": "shared top-k support", "positions": 12}
    region = {"top1_agreement": 1.0, "mean_abs_dlogprob": 0.02, "max_abs_dlogprob": 0.2, "positions": 9, "decisive": 9}
    chunked = P.judge_chunked({"budget": 8, "prompts": ["long-256"], "first_chunk": region, "later_chunks": region},
                              P.Tolerances(0.9, 0.1, 0.1))
    probe = {"prompt_len": 300, "cached_cold": 0, "cached_warm": None, "cached_source": "server /metrics (vllm:prefix_cache_hits)",
             "cold_vs_warm": {"match_len": 8, "len": 8, "max_abs_dlogprob": 0.0, "same_tokens": True}}
    zh = [P._figures(s)[1], chunked.detail_zh, P.judge_prefix_cache(probe, 0.05).detail_zh,
          P.summary_row("a", s)[5].zh, P.family_row("kv-block-127", s, [127], False)[0].zh]
    assert "双方共同列出的 top-k" in zh[0] and "奈特" in zh[0]
    assert english_words("".join(f"<p>{note_html(x)}</p>" for x in zh)) == {}, zh


# -- the chapter run on the stand-in (engine) -------------------------------------------------------------------
def fake_quant_dir(out: Path) -> Path:
    write_tiny_random_model(out, dtype="bfloat16", std=0.08)
    f = out / "model.safetensors"
    sd = load_file(str(f))
    for k, v in sd.items():
        if v.dim() == 2 and "embed" not in k:
            x = v.float().reshape(-1, 32)
            s = x.abs().mean(1, keepdim=True).clamp_min(1e-5)
            sd[k] = (torch.clamp(torch.round(x / s), -1, 1) * s).reshape(v.shape).to(torch.bfloat16)
    save_file(sd, str(f), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    if list(STAND_IN.glob("*.safetensors")):
        return STAND_IN
    return fake_quant_dir(tmp_path_factory.mktemp("standin") / "model")


def _params(tmp: Path, model: Path, **precision) -> Path:
    p = yaml.safe_load((ROOT / "params" / "default.yaml").read_text(encoding="utf-8"))
    p["model"]["path"] = str(model)
    # one long prompt above the engine's 512-token prefill budget (default.yaml) keeps the test short;
    # the default report runs 256, 1,024 and max_model_len - new tokens
    p["precision"] = {"prompts": 2, "max_new_tokens": 8, "engine_float32": False, "long_lengths": [600], **precision}
    out = tmp / "params.yaml"
    out.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    return out


@pytest.mark.engine
def test_precision_names_a_remote_code_error_and_still_compares(tmp_path, model_dir):
    """A directory whose modeling code does not load with the installed transformers: the transformers pairs
    are not_run with the one-line error; the engine is still compared with the reference. The chapter on its own
    (no run's shared server: an offline engine of its own), with the paths the default report does not take: a
    baseline pointing at a missing directory and one at the run itself, and precision.full_shape off."""
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    (d / "modeling_minicpm.py").write_text("raise ImportError('needs flash_attn (missing here)')\n")
    run_dir = tmp_path / "run"
    params = _params(tmp_path, d, prompts=1, max_new_tokens=4, full_shape=False, features=False,
                     block_boundaries=False, long_lengths=[64], baselines=[str(tmp_path / "no-such-run"), str(run_dir)])
    o = runner.run_chapter(ROOT / "notebooks" / "06_precision.ipynb", run_dir, params)
    assert o.status == "ok", o.error
    res = R.load(run_dir / "results" / "06_precision.json")
    checks = {c.id: c for c in res.checks}
    for pair in ("engine-vs-transformers", "transformers-vs-reference"):
        row = checks[f"agreement:{pair}"]
        assert row.status == "not_run" and "flash_attn" in row.detail_en and "\n" not in row.detail_en
    assert checks["agreement:engine-vs-reference"].status == "pass"
    assert "flash_attn" in res.data["golden"]["transformers_error"]
    # Missing baseline: one-line failure; the run against itself: identical.
    assert checks["baseline:0"].status == "fail" and "not found" in checks["baseline:0"].detail_en
    assert "\n" not in checks["baseline:0"].detail_en
    assert checks["baseline:1"].status == "pass", checks["baseline:1"].detail_en
    (same,) = res.data["baselines"]
    assert same["summary"]["top1_agreement"] == 1.0 and same["summary"]["max_abs_dlogprob"] == 0.0
    assert "full_shape" not in res.data and "synthetic" not in res.metric("compared_lengths")  # full_shape off


@pytest.mark.e2e
def test_default_report_has_precision_and_quantization(e2e_run):
    rd = e2e_run["run_dir"]
    for cid in ("06_precision", "10_quantization"):
        res = R.load(rd / "results" / f"{cid}.json")
        assert res.status == "ok", (cid, res.error)
    prec = R.load(rd / "results" / "06_precision.json")
    assert prec.data["bundle"]["items"] and prec.check("agreement:engine-vs-reference").status == "pass"
    # the full 0.5B shape: a synthetic checkpoint vs the fp32 reference, a short and a 1,024-token prompt
    full = prec.data["full_shape"]
    assert full["shape"]["vocab_size"] == 73448 and full["shape"]["num_hidden_layers"] == 24
    assert full["dtype"] == "float32"  # whatever the profile's dtype: the verdict must not depend on the host's BF16
    assert full["lengths"]["full-shape/long-1024"] == [1024]
    for g in ("full-shape/short", "full-shape/long-1024"):
        c = prec.check(f"family_agreement:{g}")
        assert c.status == "pass", (g, c.detail_en)
    assert "synthetic" in prec.metric("compared_lengths") and "vocab 73,448" in prec.metric("compared_lengths")


# -- the default report's chapter (e2e): the shared server's path -------------------------------------------------
def _default_precision(e2e_run):
    rd = e2e_run["run_dir"]
    params = yaml.safe_load((rd / "params.yaml").read_text(encoding="utf-8"))
    return rd, R.load(rd / "results" / "06_precision.json"), params


@pytest.mark.e2e
def test_default_report_compares_three_implementations(e2e_run):
    """The engine (the run's shared server), transformers with the directory's code and the fp32 reference: every
    pair judged and passed, whole-vocabulary rows from the engine, the bundle a baseline needs."""
    rd, res, params = _default_precision(e2e_run)
    checks = {c.id: c for c in res.checks}
    for pair in ("engine-vs-reference", "engine-vs-transformers", "transformers-vs-reference"):
        for cid in (f"agreement:{pair}", f"logprobs_close:{pair}"):
            assert checks[cid].status == "pass", (cid, checks[cid].detail_en)
            assert checks[cid].scope == "engine"
    assert res.data["golden"]["kind"] == "reference" and res.data["golden"]["transformers_error"] is None
    assert res.data["whole_vocab_probe"] == {"ok": True, "error": None, "engine_alive": True}
    assert checks["whole_vocab"].status == "pass"
    s = res.data["comparisons"]["engine-vs-reference"]["summary"]
    assert s["kl_basis"] == "full" and s["mean_kl"] is not None  # whole-vocabulary rows from the engine
    tr = res.data["comparisons"]["transformers-vs-reference"]["summary"]
    assert tr["top1_agreement"] == 1.0 and tr["max_abs_dlogprob"] < 1e-3
    assert res.metric("top1_agreement") >= 0.95
    assert 0 < res.metric("max_abs_dlogprob") < 0.5  # BF16 engine vs fp32: small but not zero
    b = res.data["bundle"]
    assert b["version"] == 1 and len(b["items"]) == params["precision"]["prompts"] and b["environment"].get("device")
    assert all(len(it["tf_rows"]) == len(it["tf_ids"]) - 1 for it in b["items"])
    assert [it["tf_ids"] for it in res.data["reference_bundle"]["items"]] == [it["tf_ids"] for it in b["items"]]
    assert (rd / "artifacts" / "06_precision" / "abs_dlogprob.png").is_file()


@pytest.mark.e2e
def test_default_report_precision_families_and_features(e2e_run):
    """Issue 19 through the shared server: every family and length its own row, the KV block size from its
    /metrics, the chat family's ids from its chat path (equal to the project's ChatML), chunked prefill over the
    server's 512-token budget, prefix-cache hits from its counters, a mixed batch."""
    rd, res, params = _default_precision(e2e_run)
    checks = {c.id: c for c in res.checks}
    fam = res.data["families"]
    bs = fam["block_size"]
    assert bs and "metrics" in fam["block_source"]
    budget = json.loads((rd / "run.json").read_text(encoding="utf-8"))["shared_engine"]["settings"]["max_num_batched_tokens"]
    assert budget == params["engine"]["max_num_batched_tokens"]  # engine.max_num_batched_tokens reaches the server
    longs = [n if n > 0 else params["engine"]["max_model_len"] - params["precision"]["max_new_tokens"]
             for n in params["precision"]["long_lengths"]]
    for g in ("zh", "chat", *(f"long-{n}" for n in longs), f"kv-block-{bs - 1}", f"kv-block-{bs}", f"kv-block-{bs + 1}"):
        row = checks[f"family_agreement:{g}"]
        assert row.status == "pass" and row.scope == "engine", (g, row.detail_en)
        assert fam["groups"][g]["decisive_share"] >= 0.5
    for n in longs:
        g = fam["groups"][f"long-{n}"]
        assert fam["lengths"][f"long-{n}"] == [n] and f"long-{n} {n}" in res.metric("compared_lengths")
        # a top-k row for every prompt position, through every prefill chunk; listing the golden's top-k at most
        assert g["prompt_region"]["positions"] == n - 1 and g["kl_topk_missing"] < g["positions"] / 2, g
    assert fam["whole_vocab"]["zh"] and not any(fam["whole_vocab"][f"long-{n}"] for n in longs)
    assert fam["chat_source"] and set(fam["chat_source"].values()) == {"server chat path"}
    nb = (rd / "notebooks" / "06_precision.ipynb").read_text(encoding="utf-8")
    assert "they equal the project&#x27;s own ChatML encoding" in nb  # the server's template = ChatML
    assert checks["chunked_prefill"].status == "pass", checks["chunked_prefill"].detail_en
    ch = res.data["features"]["chunked_prefill"]
    assert ch["budget"] == budget and sorted(ch["prompts"]) == sorted(
        g for g, ls in fam["lengths"].items() if g.startswith("long") and max(ls) > budget)
    pc = res.data["features"]["prefix_cache"]
    assert checks["prefix_cache"].status == "pass", checks["prefix_cache"].detail_en
    assert "prefix_cache_hits" in pc["cached_source"] and pc["cached_cold"] == 0 and pc["cached_warm"] >= 2 * bs
    assert pc["prompt_len"] > 2 * bs
    assert checks["batch_mixed"].status in ("pass", "warn")
    assert (rd / "artifacts" / "06_precision" / "by_position.png").is_file()


@pytest.mark.e2e
def test_default_report_quantization(e2e_run):
    res = R.load(e2e_run["run_dir"] / "results" / "10_quantization.json")
    checks = {c.id: c.status for c in res.checks}
    assert checks["projections_ternary"] == "pass" and checks["roundtrip"] == "pass"
    assert checks["granularity"] == "pass" and res.metric("granularity") == "g32"
    assert checks["claim_compression:full-0.5b"] == "fail"  # ~72%, not ~90%
    assert 60 < res.metric("compression_base3") < 90  # percent
    dense = {t["role"] for t in res.data["tensors"] if not t["ternary"]}
    assert dense == {"embedding", "norm"}


@pytest.mark.e2e
def test_compare_the_default_report_with_a_copy(e2e_run, tmp_path):
    rd = e2e_run["run_dir"]
    other = tmp_path / "copy"
    shutil.copytree(rd / "results", other / "results")
    shutil.copy(rd / "run.json", other / "run.json")
    out = C.compare_runs([rd, other])
    assert out["pairs"][0]["engine"]["top1_agreement"] == 1.0 and out["pairs"][0]["engine"]["max_abs_dlogprob"] == 0.0
    assert "copy" in C.render(out, tmp_path / "cmp")["html"].read_text(encoding="utf-8")
