"""Comparison metrics on hand-made sequences with known answers (no engine)."""
from __future__ import annotations

import json
import math

import pytest

from bitcpm_validation.chapters import precision as P
from bitcpm_validation.params import PrecisionParams


def rows(*dicts):
    return [dict(d) for d in dicts]


def test_kl_identical_is_zero_and_known_value():
    p = {1: math.log(0.5), 2: math.log(0.3), 3: math.log(0.2)}
    assert P.kl_topk(p, dict(p), 3) == pytest.approx(0.0, abs=1e-12)
    q = {1: math.log(0.25), 2: math.log(0.25), 3: math.log(0.5)}
    want = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert P.kl_topk(p, q, 3) == pytest.approx(want, rel=1e-9)


def test_kl_renormalises_over_p_topk_and_floors_missing():
    # Same relative probabilities on P's top-2, extra mass elsewhere: renormalised KL is 0.
    p = {1: math.log(0.6), 2: math.log(0.2), 9: math.log(0.01)}
    q = {1: math.log(0.3), 2: math.log(0.1), 7: math.log(0.5)}
    assert P.kl_topk(p, q, 2) == pytest.approx(0.0, abs=1e-12)
    # Token 2 missing from Q: it gets Q's smallest listed logprob (0.1 here).
    q2 = {1: math.log(0.3), 7: math.log(0.5), 8: math.log(0.1)}
    assert P.kl_topk(p, q2, 2) == pytest.approx(0.0, abs=1e-12)


def test_teacher_forced_known_answers():
    seq = [5, 1, 2, 3]
    p = rows({1: -0.1, 2: -2.0}, {2: -0.2, 3: -1.9}, {3: -0.3, 1: -1.5})
    q = rows({1: -0.15, 2: -2.0}, {3: -0.5, 2: -0.6}, {3: -0.3, 1: -1.5})
    tf = P.teacher_forced(seq, p, q, k=2, prompt_len=2)
    assert tf["positions"] == 3
    assert tf["top1_agree"] == 2 and tf["top1_agreement"] == pytest.approx(2 / 3)
    assert tf["disagree_at"] == [2]
    assert tf["abs_dlogprob"] == pytest.approx([0.05, 0.4, 0.0])
    assert tf["max_abs_dlogprob"] == pytest.approx(0.4)
    assert tf["mean_abs_dlogprob"] == pytest.approx(0.15)
    assert tf["kl"][2] == pytest.approx(0.0, abs=1e-12) and tf["kl"][1] > 0


def test_free_running_exact_divergence_and_close_rule():
    a_rows = rows({1: -0.1}, {2: -0.5, 4: -0.9}, {3: -0.2})
    b_rows = rows({1: -0.1}, {4: -0.6, 2: -0.7}, {3: -0.2})
    f = P.free_running([1, 2, 3], a_rows, [1, 4, 3], b_rows, k=2)
    assert f["match_len"] == 1 and f["first_divergence"] == 1 and not f["full_match"]
    assert (f["a_token"], f["b_token"]) == (2, 4)
    assert f["a_in_b_topk"] and f["b_in_a_topk"] and f["close"]
    # The other side's token outside the top-k: not close.
    f2 = P.free_running([1, 2], a_rows[:2], [1, 4], rows({1: -0.1}, {4: -0.1, 8: -0.2}), k=2)
    assert not f2["a_in_b_topk"] and f2["b_in_a_topk"] and not f2["close"]
    # Identical, and prefix-identical until one side stops (zip rule).
    same = P.free_running([1, 2, 3], a_rows, [1, 2, 3], a_rows, k=2)
    assert same["full_match"] and same["match_len"] == 3 and same["first_divergence"] is None
    short = P.free_running([1, 2, 3], a_rows, [1, 2], a_rows[:2], k=2)
    assert short["match_len"] == 2 and short["close"] and not short["full_match"]


def _bundle(label, gen, rows_tf, k=2):
    return {"version": 1, "label": label, "k": k, "environment": {}, "model": {},
            "items": [{"id": "x", "prompt_ids": [5], "tf_ids": [5, 1, 2, 3],
                       "tf_rows": [P.row_to_pairs(r) for r in rows_tf],
                       "gen_ids": gen, "gen_rows": [P.row_to_pairs(r) for r in rows_tf]}]}


def test_compare_bundles_and_verdicts(tmp_path):
    p = rows({1: -0.1, 2: -2.0}, {2: -0.2, 3: -1.9}, {3: -0.3, 1: -1.5})
    a = _bundle("ref", [1, 2, 3], p)
    b = _bundle("eng", [1, 2, 3], p)
    c = P.compare_bundles(a, b)
    s = c["summary"]
    assert s["top1_agreement"] == 1.0 and s["max_abs_dlogprob"] == 0.0 and s["mean_kl"] == pytest.approx(0, abs=1e-12)
    assert s["exact_match_lens"] == [3] and s["full_matches"] == 1 and s["close"] == 1
    checks = {x["id"]: x["status"] for x in P.verdicts(s, PrecisionParams())}
    assert set(checks.values()) == {"pass"}
    worse = P.compare_bundles(a, _bundle("eng", [1, 3, 3], rows({1: -0.1, 2: -2.0}, {3: -0.1, 2: -3.0}, {3: -0.3, 1: -1.5})))
    st = {x["id"]: x["status"] for x in P.verdicts(worse["summary"], PrecisionParams())}
    assert st["top1"] == "fail" and st["mean_dlogprob"] == "fail"
    # JSON round trip of a bundle keeps the numbers.
    again = json.loads(json.dumps(a))
    assert P.compare_bundles(again, b)["summary"]["max_abs_dlogprob"] == 0.0


def test_load_run_bundles_errors_are_one_line(tmp_path):
    with pytest.raises(P.BaselineError, match="not found"):
        P.load_run_bundles(tmp_path / "nope")
    (tmp_path / "run" / "results").mkdir(parents=True)
    with pytest.raises(P.BaselineError, match="did not run"):
        P.load_run_bundles(tmp_path / "run")
    f = tmp_path / "run" / "results" / "06_precision.json"
    f.write_text("{broken")
    with pytest.raises(P.BaselineError, match="not readable"):
        P.load_run_bundles(tmp_path / "run")
    f.write_text(json.dumps({"data": {"bundle": {"version": 99}}}))
    with pytest.raises(P.BaselineError) as e:
        P.load_run_bundles(tmp_path / "run")
    assert "\n" not in str(e.value)
    good = _bundle("eng", [1], rows({1: -0.1}, {2: -0.1}, {3: -0.1}))
    f.write_text(json.dumps({"data": {"bundle": good, "reference_bundle": good}}))
    got = P.load_run_bundles(tmp_path / "run")
    assert got["run"] == "run" and got["engine"]["label"] == "eng"
