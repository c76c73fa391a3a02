"""Serving chapter: its checks (pass / fail / not run) and the deployment guide written from the params; the OpenAI
probes on a real server are asserted on the default report's chapter 08 (marked `e2e`)."""
from __future__ import annotations

import pytest
import yaml

from bitcpm_validation.chapters import serving as S
from bitcpm_validation.params import load_params

_DEFAULT = "params/default.yaml"


def _ok(pid, detail):
    return S.ProbeResult(pid, True, 0.1, detail)


def test_probe_checks_pass_on_good_answers():
    assert S.judge_models(_ok("models", {"models": ["m"], "expected": "m"})).status == "pass"
    c = S.judge_completions(_ok("completions", {"token_ids": [1, 2], "finish_reason": "length"}))
    assert c.status == "pass" and c.scope == "engine" and "2 tokens" in c.detail_en
    assert S.judge_chat(_ok("chat", {"token_ids": [1], "finish_reason": "stop"})).status == "pass"
    t = S.judge_chat_template(_ok("chat", {"prompt_token_ids": [1, 2], "template_matches": True,
                                           "expected_prompt_token_ids": [1, 2]}))
    assert t.status == "pass" and "2 prompt tokens" in t.detail_en
    assert S.judge_stream(_ok("stream", {"chunks": 4, "equals_non_streamed": True, "first_chunk_s": 0.2})).status == "pass"
    assert S.judge_concurrent(_ok("concurrent", {"requests": 2, "answered": 2, "wall_s": 1, "output_tokens": 8,
                                                 "results": []})).status == "pass"
    assert S.judge_greedy(S.compare_greedy([[1, 2]], [[1, 2]])).status == "pass"
    assert S.judge_stopped(1, 0, []).status == "pass"


def test_server_errors_are_failures_with_their_message():
    err = "NotFoundError: Error code: 404 - {'message': 'The model `m` does not exist.'}"
    for judge in (S.judge_models, S.judge_completions, S.judge_chat, S.judge_stream, S.judge_concurrent):
        c = judge(S.ProbeResult("x", False, 0.1, {"expected": "m", "models": []}, err))
        assert c.status == "fail" and c.detail_en == err, judge.__name__
    c = S.judge_models(S.ProbeResult("models", False, 0.1, {"models": ["openbmb/BitCPM4-0.5B"], "expected": "m"}))
    assert c.status == "fail" and "'m' is not among" in c.detail_en


def test_missing_references_are_not_run():
    assert S.judge_greedy([]).status == "not_run"
    assert S.judge_chat_template(_ok("chat", {"prompt_token_ids": None})).status == "not_run"
    assert S.judge_chat_template(S.ProbeResult("chat", False, 0.1, {}, "APIError: boom")).status == "not_run"
    g = S.judge_greedy(S.compare_greedy([[1, 2, 3]], [[1, 9, 3]]))
    assert g.status == "fail" and "differs from token 1" in g.detail_en


def test_guide_is_written_from_params_not_from_the_run():
    p = load_params(_DEFAULT)
    cpu, ascend = S.deployment_guides(p, "cpu", faithful_tokenizer=True, user_prompt="Hi", max_tokens=8)
    assert cpu["platform"] == "cpu" and ascend["platform"] == "npu" and ascend["profile"] == "ascend-910b3"
    assert "VLLM_CPU_KVCACHE_SPACE=" in cpu["serve"] and "VLLM_CPU" not in ascend["serve"] + ascend["python"]
    a = load_params(S.ASCEND_PROFILE)
    for flag in ("--trust-remote-code", f"--dtype {a.engine.dtype}", f"--max-model-len {a.engine.max_model_len}",
                 f"--tensor-parallel-size {a.engine.tensor_parallel_size}",
                 f"--gpu-memory-utilization {a.engine.gpu_memory_utilization}", f"--max-num-seqs {a.engine.max_num_seqs}",
                 "--tokenizer /path/to/", "--port 8000", f"--served-model-name {a.model.name}"):
        assert flag in ascend["serve"], flag
    assert ascend["serve"].count("vllm serve") == 1 and "write_faithful_tokenizer_dir" in ascend["serve"]
    assert "LLM(" in ascend["python"] and "tokenizer='/path/to/" in ascend["python"]
    assert '"model": "openbmb/BitCPM4-0.5B"' in ascend["curl"]
    # the stand-in is served under its own name, never as BitCPM4
    assert "--served-model-name bitcpm-validation/stand-in" in cpu["serve"] and "openbmb" not in cpu["curl"]
    for g in (cpu, ascend):
        text = g["serve"] + g["python"] + g["curl"]
        assert "/tmp" not in text and "artifacts" not in text and "change only" not in text


def test_guide_without_tokenizer_mismatch_and_on_ascend(tmp_path):
    p = load_params(_DEFAULT)
    cpu, ascend = S.deployment_guides(p, "cpu", faithful_tokenizer=False, user_prompt="Hi", max_tokens=8,
                                      faithful_tokenizer_ascend=True)
    assert "--tokenizer" not in cpu["serve"] and "--tokenizer" in ascend["serve"]
    if p.engine.dtype == "auto":  # vLLM's own `auto` means the model's dtype: the CPU guide names one
        assert "--dtype float32" in cpu["serve"] and "--dtype auto" not in cpu["serve"]
        c2 = S.guide_for(p, "cpu", faithful_tokenizer=False, user_prompt="Hi", max_tokens=8, cpu_dtype="bfloat16")
        assert "--dtype bfloat16" in c2["serve"] and "dtype='bfloat16'" in c2["python"]
    a = load_params(S.ASCEND_PROFILE)
    only = S.deployment_guides(a, "npu", faithful_tokenizer=False, user_prompt="Hi", max_tokens=8)
    assert len(only) == 1 and "set_env.sh" in only[0]["serve"]
    y = yaml.safe_load(open(_DEFAULT)) | {"profile": "gpu"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(y))
    gpu = S.deployment_guides(load_params(tmp_path / "p.yaml"), "cuda", faithful_tokenizer=False, user_prompt="Hi",
                              max_tokens=8)
    assert len(gpu) == 2 and "VLLM_CPU" not in gpu[0]["serve"]


def test_greedy_request_error_fails():
    c = S.judge_greedy([], error="APIError: Internal Server Error")
    assert c.status == "fail" and c.detail_en == "APIError: Internal Server Error"
    c = S.judge_greedy(S.compare_greedy([[1]], [[1]]), "reference: chapter 04's restarted engine", "参照：第 04 章重启的引擎")
    assert c.status == "pass" and "chapter 04" in c.detail_en and "第 04 章" in c.detail_zh


def test_chinese_details_show_data_as_code():
    """Issue 20.5: a finish reason and a served name are data (code in the Chinese file), not English words."""
    from bitcpm_validation.chapters import serving as SV

    assert SV._answer_detail({"token_ids": [1, 2], "finish_reason": "stop"}) == (
        "2 tokens, finish reason stop", "2 个词元，结束原因 `stop`")


@pytest.mark.e2e
def test_default_report_probes_the_shared_server(e2e_run):
    """Chapter 08 of the default report: the OpenAI probes (models, completion, stream, chat with the template
    check, concurrent) on the run's shared `vllm serve`, each answer consistent with itself, every check passed."""
    from bitcpm_validation.report import results as R

    rd = e2e_run["run_dir"]
    res = R.load(rd / "results" / "08_serving.json")
    assert res.status == "ok", res.error
    setup, probes, srv = res.data["setup"], res.data["probes"], res.data["server"]
    assert srv["external"] and not srv["own"]  # the run's shared server: the runner stops it, not the chapter
    m = probes["models"]
    assert m["ok"] and srv["served_model_name"] == m["detail"]["expected"] in m["detail"]["models"]
    c = probes["completions"]["detail"]
    assert probes["completions"]["ok"] and 0 < len(c["token_ids"]) == c["usage"]["completion_tokens"] <= setup["max_tokens"]
    assert c["finish_reason"] == "stop" or len(c["token_ids"]) == setup["max_tokens"]
    s = probes["stream"]["detail"]
    assert probes["stream"]["ok"] and s["chunks"] > 1 and s["equals_non_streamed"] and s["text"] == c["text"]
    chat = probes["chat"]["detail"]
    assert probes["chat"]["ok"] and chat["token_ids"]
    if srv["tokenizer"]:  # engine.tokenizer_override in effect: the server tokenizes ChatML like SentencePiece
        assert chat["template_matches"] and chat["prompt_token_ids"] == chat["expected_prompt_token_ids"], chat
    conc = probes["concurrent"]["detail"]
    assert probes["concurrent"]["ok"] and conc["answered"] == conc["requests"] == setup["concurrent_requests"] > 1
    assert all(r["ok"] and r["tokens"] > 0 for r in conc["results"]) and len(conc["results"]) == conc["requests"]
    assert conc["output_tokens"] == sum(r["tokens"] for r in conc["results"])
    checks = {k.id: k.status for k in res.checks}
    assert [checks[k] for k in ("models", "completions", "chat", "chat_template", "stream", "concurrent",
                                "greedy_equal")] == ["pass"] * 7, checks
    assert res.metric("concurrent_answered") == conc["answered"]
    log = (rd / "evidence" / "08_serving.log").read_text(encoding="utf-8")
    assert "=== using the run's shared server" in log and '"GET /v1/models HTTP/1.1" 200' in log
