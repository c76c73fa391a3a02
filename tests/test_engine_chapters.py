"""The engine chapters (02 loading, 03 inference, 04 determinism, 05 Chinese) on the stand-in, through
the CPU build of vLLM: assertions on the results files of the session's default report run
(conftest's `e2e_run`, one run per session: no engine is started here beyond it).

BITCPM_E2E_RUN_DIR=runs/<id> reuses an existing run for fast iteration on these assertions.
"""
from __future__ import annotations

import re

import pytest

from bitcpm_validation.report import results as R
from bitcpm_validation.chapters.inference import grade
from bitcpm_validation.params import Expectation, load_params, load_prompts

pytestmark = [pytest.mark.engine, pytest.mark.e2e]

CHAPTERS = ("02_loading", "03_inference", "04_determinism", "05_chinese")


@pytest.fixture(scope="module")
def res(e2e_run):
    out = {}
    for cid in CHAPTERS:
        p = e2e_run["run_dir"] / "results" / f"{cid}.json"
        assert p.is_file(), f"{cid} wrote no results; runner output:\n{e2e_run['output'][-3000:]}"
        out[cid] = R.load(p)
    return out


@pytest.fixture(scope="module")
def params(e2e_run):
    return load_params(e2e_run["run_dir"] / "params.yaml") if (e2e_run["run_dir"] / "params.yaml").is_file() \
        else load_params("params/default.yaml")


def _status(r, cid):
    c = r.check(cid)
    assert c is not None, f"check {cid} missing: {[x.id for x in r.checks]}"
    return c.status


@pytest.mark.parametrize("cid", CHAPTERS)
def test_chapter_ran_ok(res, cid):
    r = res[cid]
    assert r.status == "ok", f"{cid}: {r.status} {r.error}"
    assert r.card, f"{cid} wrote no report.md card"
    assert r.data.get("engine_settings"), f"{cid} did not record its engine settings"


def test_loading(res):
    r = res["02_loading"]
    for cid in ("registry", "config", "tokenizer", "chat_template", "load_dummy", "infer_dummy", "load_real",
                "infer_real", "tie_vs_lm_head", "vocab_vs_tokenizer", "max_model_len"):
        assert _status(r, cid) == "pass", (cid, r.check(cid))
    fid = r.check("tokenizer_fidelity")
    assert fid.status in ("pass", "fail")
    if fid.status == "fail":  # the engine's tokenizer differs from SentencePiece: first mismatch shown
        assert re.search(r"at token \d+: SentencePiece \d+ .* vs engine \d+", fid.detail_en)
    # the engine tokenizer as deployed (engine.tokenizer_override auto) encodes like SentencePiece
    assert _status(r, "engine_tokenizer_deployed") == "pass", r.check("engine_tokenizer_deployed")
    if fid.status == "fail":
        assert r.data["engine_tokenizer"]["path"].startswith("artifacts/faithful-tokenizer/")
    assert r.data["prompting"]["mode"] == "faithful"
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in r.data["weight_files"])
    metrics = {m.id: m for m in r.metrics}
    for mid in ("weight_gb", "weights_load_s", "init_s", "kv_cache_tokens", "max_concurrency"):
        assert metrics[mid].key and metrics[mid].value is not None, mid
    assert metrics["init_s"].timing and metrics["weights_load_s"].timing and not metrics["kv_cache_tokens"].timing
    assert metrics["dummy_kv_cache_tokens"].value > 0
    full = {x["key"]: x["value"] for x in r.data["architecture"]["full_size"]}
    assert full["parameters"] == 433_873_920 and full["head_dim"] == 64 and full["gqa_ratio"] == "8:1"
    assert {m["only"] for m in r.data["matrix"]} == {"both", "dummy", "real"}


def test_inference_paris_passes(res, params):
    r = res["03_inference"]
    prompts = load_prompts(params.prompts_path).prompts
    assert {c.id for c in r.checks} >= {f"probe_{q.id}" for q in prompts}
    assert _status(r, "probe_capital_france") == "pass"
    assert _status(r, "original_prompts") == "pass"
    outs = {o["id"]: o for o in r.data["outputs"]}
    assert "paris" in outs["capital_france"]["text"].lower()
    assert all(len(o["token_ids"]) <= params.inference.max_tokens for o in outs.values())
    n, total = map(int, r.metric("probes_passed").split("/"))
    assert total == len(prompts) and n >= 1


def test_wrong_expectation_fails_on_real_output(res):
    """A deliberately wrong expectation graded against the engine's real output is ⚠️, with the reason."""
    text = next(o["text"] for o in res["03_inference"].data["outputs"] if o["id"] == "capital_france")
    g = grade(text, Expectation(contains_any=["Berlin"], note_en="deliberately wrong"))
    assert g.status == "warn" and "none of 'Berlin' found" in g.detail_en
    assert grade(text, Expectation(contains_any=["Paris"])).status == "pass"


def test_determinism_tables_complete(res, params):
    r = res["04_determinism"]
    dp = params.determinism
    rows = r.data["rows"]
    n = dp.prompts
    expected = n * (dp.runs - 1) + (n if dp.restart else 0) + (n if dp.batch else 0)
    assert len(rows) == expected
    for row in rows:
        assert row["tokens_compared"] == dp.max_tokens and 0 <= row["identical"] <= row["tokens_compared"]
        assert (row["first_divergence"] is None) == row["match"]
    assert _status(r, "determinism_repeat") == "pass"
    t = r.data["totals"]["all"]
    assert r.metric("identical_tokens") == f"{t['identical']}/{t['tokens_compared']}"
    assert r.data["mode"] in ("eager", "graph") and isinstance(r.data["env"], list)


def test_chinese_metrics_present(res, params):
    r = res["05_chinese"]
    outs = r.data["outputs"]
    zh_orig = [q.id for q in load_prompts(params.prompts_path).prompts if q.lang == "zh" and q.from_original]
    assert {o["id"] for o in outs} >= set(zh_orig) | {i + "_chat" for i in zh_orig}
    for o in outs:
        for k in ("cjk_share", "distinct_1", "distinct_2", "longest_repeat", "repeat_share", "verdict"):
            assert k in o, k
        assert o["verdict"] in ("pass", "warn")
        assert r.check(f"zh_{o['id']}").status == o["verdict"]
    assert [t["metric"] for t in r.data["thresholds"]] == ["cjk_share", "distinct_2", "repeat_share"]
