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
    for cid in ("registry", "config", "tokenizer", "chat_template", "round_trip", "load:synthetic",
                "kv_capacity:synthetic", "infer:synthetic", "load:real", "infer:real", "kv_capacity:real", "tie_vs_lm_head",
                "weights_match_config", "engine_tokenizer_deployed"):
        assert _status(r, cid) == "pass", (cid, r.check(cid))
    # facts (issue 23.5): the full shape's tokens, max_model_len against the model's limit; the full shape loaded the
    # synthetic checkpoint (issue 19.4), written or reused with its time shown
    assert r.metric("full_shape_tokens_generated") == "8/8" and r.metric("max_model_len").startswith("2,048 / ")
    assert r.data["full_shape"]["weights"] == "synthetic" and "full-shape-" in r.data["full_shape"]["dir"]
    assert r.data["full_shape"]["prepare_s"] >= 0 and r.metric("full_shape_checkpoint_s") is not None
    # transformers 5.x rebuilds the stand-in's LlamaTokenizer: the model's own tokenizer fails fidelity with the
    # first mismatch named, and the faithful tokenizer directory is what the engine is given
    fid = r.check("tokenizer_fidelity")
    assert fid.status == "warn" and re.search(r"at token \d+: reference \(SentencePiece.*\) \d+ .* vs engine \d+",
                                              fid.detail_en), fid.detail_en
    assert r.data["engine_tokenizer"]["path"].startswith("artifacts/faithful-tokenizer/")
    probe = r.data["real"]["engine_probe"]
    assert probe["engine_ids"] == probe["reference_ids"] and probe["reference_ids"][0] == 1
    assert r.data["prompting"]["mode"] == "faithful"
    # the document's tie_word_embeddings False is refuted by the full-size config (class default True)
    assert _status(r, "doc_tie_word_embeddings") == "fail" and r.check("doc_tie_word_embeddings").scope == "document"
    assert _status(r, "doc_architecture") == "pass"
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in r.data["weight_files"])
    metrics = {m.id: m for m in r.metrics}
    for mid in ("weight_gb", "init_s", "kv_cache_tokens", "max_concurrency"):
        assert metrics[mid].key and metrics[mid].value is not None and metrics[mid].measured_on.startswith("stand-in"), mid
    assert metrics["init_s"].timing and not metrics["kv_cache_tokens"].timing
    assert metrics["full_shape_kv_cache_tokens"].value > 0
    assert metrics["full_shape_kv_cache_tokens"].measured_on == "bitcpm4-0.5b shape · random weights · CPU"
    full = {x["key"]: x["value"] for x in r.data["architecture"]["full_size"]}
    assert full["parameters"] == 433_873_920 and full["head_dim"] == 64 and full["gqa_ratio"] == "8:1"
    assert [m["real"] for m in r.data["matrix"]] == ["✅"] * len(r.data["matrix"])
    assert [m["full_shape"] for m in r.data["matrix"]] == ["✅"] * 4 + ["—"] * 3
    stages = {e["key"] for e in r.data["init_timeline"]["synthetic"]}
    assert {"model_init", "weights_done", "kv_cache", "ready"} <= stages and "weights_done" in {e["key"] for e in r.data["init_timeline"]["real"]}
    assert any(x["key"] == "device_config" for x in r.data["key_log_lines"]["synthetic"])


def test_inference_stand_in_probes_not_judged(res, params):
    """The stand-in was trained on every probe (models/stand-in/training_corpus.json): no row is judged."""
    r = res["03_inference"]
    prompts = load_prompts(params.prompts_path).prompts
    rows = [c for c in r.checks if c.id.startswith("probe:")]
    assert sorted(c.id for c in rows) == sorted(f"probe:{q.id}" for q in prompts)
    for c in rows:
        assert (c.status, c.scope) == ("not_run", "model"), c
        assert "the model was trained on this prompt" in c.detail_en and "训练时见过这个提示" in c.detail_zh
    assert r.data["contamination"]["declared"] and len(r.data["contamination"]["hits"]) == len(prompts)
    assert r.metric("probes_passed") == "0/0" and r.metric("probes_trained_on") == f"{len(prompts)}/{len(prompts)}"
    outs = {o["id"]: o for o in r.data["outputs"]}
    # what it recalls: the memorised answer, which would grade ✅ (not counted)
    assert "paris" in outs["capital_france"]["text"].lower()
    assert outs["capital_france"]["grade"]["status"] == "pass" and "would grade ✅" in r.check("probe:capital_france").detail_en
    assert all(len(o["token_ids"]) <= params.inference.max_tokens for o in outs.values())


def test_wrong_expectation_fails_on_real_output(res, params):
    """A deliberately wrong expectation graded against the engine's real output is ❌, with the reason."""
    g = load_prompts(params.prompts_path).grading
    text = next(o["text"] for o in res["03_inference"].data["outputs"] if o["id"] == "capital_france")
    gr = grade(text, Expectation(answer=["Berlin"], note_en="deliberately wrong"), g)
    assert gr.status == "fail" and gr.failed == ["answer"] and "none of ['Berlin']" in gr.detail_en
    assert grade(text, Expectation(answer=["Paris"]), g).status == "pass"


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
    # the stand-in on one engine, a restarted one, alone and batched: every token identical here
    assert {c.id: c.status for c in r.checks} == {"determinism_repeat": "pass", "determinism_restart": "pass",
                                                   "determinism_batch": "pass"}
    assert r.metric("full_length_generations") == f"{r.data['lengths']['total']}/{r.data['lengths']['total']} × {dp.max_tokens}"
    assert all(c.scope == "engine" for c in r.checks)
    ref = r.data["reference"]  # the restarted engine's tokens, for the serving chapter
    assert ref["token_ids"] == r.data["generations"]["restart"] and len(ref["prompt_ids"]) == n
    t = r.data["totals"]["all"]
    assert r.metric("identical_tokens") == f"{t['identical']}/{t['tokens_compared']}"
    assert r.data["mode"] in ("eager", "graph") and isinstance(r.data["env"], list)


def test_chinese_metrics_present_and_rows_not_judged(res, params):
    r = res["05_chinese"]
    outs = r.data["outputs"]
    zh_orig = [q.id for q in load_prompts(params.prompts_path).prompts if q.lang == "zh" and q.from_original]
    assert {o["id"] for o in outs} >= set(zh_orig) | {i + "_chat" for i in zh_orig}
    for o in outs:
        for k in ("cjk_share", "distinct_1", "distinct_2", "longest_repeat", "repeat_share", "status"):
            assert k in o, k
        # the stand-in was trained on every one of these prompts (chat variants: the same text)
        c = r.check(f"zh:{o['id']}")
        assert (c.status, c.scope, o["status"]) == ("not_run", "model", "not_run"), c
        assert "the model was trained on this prompt" in c.detail_en
    assert r.metric("zh_passed") == "0/0"
    assert [t["metric"] for t in r.data["thresholds"]] == ["cjk_share", "distinct_2", "repeat_share"]


@pytest.fixture(scope="module")
def later(e2e_run):
    out = {}
    for cid in ("08_serving", "09_accuracy"):
        p = e2e_run["run_dir"] / "results" / f"{cid}.json"
        assert p.is_file(), f"{cid} wrote no results; runner output:\n{e2e_run['output'][-3000:]}"
        out[cid] = R.load(p)
    return out


def test_serving_checks_and_identity(later, e2e_run):
    r = later["08_serving"]
    assert r.status == "ok", r.error
    st = {c.id: c.status for c in r.checks}
    expected = {"models", "completions", "chat", "chat_template", "stream", "concurrent", "greedy_equal"}
    assert set(st) - {"stopped"} == expected and set(st.values()) == {"pass"}, st
    assert all(c.scope == "engine" for c in r.checks)
    assert "chapter 04" in r.check("greedy_equal").detail_en  # compared with the restarted engine, no extra start
    # identity: the stand-in is served under its own name, never as the model it stands in for
    served = r.data["server"]["served_model_name"]
    assert served == "bitcpm-validation/stand-in" and r.data["probes"]["models"]["detail"]["models"] == [served]
    guides = r.data["deployment_guides"]
    assert [g["platform"] for g in guides][-1] == "npu" and guides[-1]["profile"] == "ascend-910b3"
    for g in guides:
        text = g["serve"] + g["python"] + g["curl"]
        assert str(e2e_run["run_dir"]) not in text and "/tmp/" not in text and "127.0.0.1" not in text
    assert "VLLM_CPU" not in guides[-1]["serve"] + guides[-1]["python"]


def test_accuracy_scores_the_stand_in_on_unseen_items_only(later):
    r = later["09_accuracy"]
    assert r.status == "ok", r.error
    removed = r.data["contamination"]["bitcpm_probe_mc"]["removed"]
    assert len(removed) == 21 and r.data["contamination"]["bitcpm_probe_mc"]["items"] == 32
    task = next(t for t in r.data["tasks"] if t["task"] == "bitcpm_probe_mc")
    acc = next(row for row in task["rows"] if row["metric"] == "acc")
    assert task["status"] == "ok" and acc["n"] == 11
    assert {c.id: c.status for c in r.checks} == {"task:bitcpm_probe_mc": "pass", "above_chance:bitcpm_probe_mc": "pass"}
    assert all(c.scope == "model" for c in r.checks)
    assert "21 items seen in training left out" in r.check("above_chance:bitcpm_probe_mc").detail_en
