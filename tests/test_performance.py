"""Performance: parsing the benchmark tool's real JSON, model arithmetic, the bandwidth and compute limits,
the checks' pass / warn paths (worst cases: tests/worst_cases/07_performance.py), the causes the run names,
the host CPU settings, and a real `vllm bench serve` run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import performance as P
from bitcpm_validation.engine import hostcpu, offline
from bitcpm_validation.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "perf"
FULL = ROOT / "models/bitcpm4-0.5b/config.json"


def test_parse_serve_real_output():
    raw = json.loads((FIX / "bench_serve.json").read_text())
    r = P.parse_serve(raw)
    assert r["completed"] == raw["completed"] and r["failed"] == 0 and r["max_concurrency"] == 2
    assert r["output_tok_s"] == pytest.approx(raw["output_throughput"])
    assert r["ttft_ms_p50"] == pytest.approx(raw["median_ttft_ms"])
    assert r["ttft_ms_p99"] == pytest.approx(raw["p99_ttft_ms"])
    assert r["tpot_ms_p50"] == pytest.approx(raw["median_tpot_ms"])
    assert r["itl_ms_p50"] == pytest.approx(raw["p50_itl_ms"]) and r["itl_ms_p99"] == pytest.approx(raw["p99_itl_ms"])


def test_model_arith_full_size():
    a = P.model_arith(FULL, "bfloat16")
    assert a["params"] == 433_873_920 and a["weight_bytes"] == 867_747_840 and a["tied"]
    assert a["kv_bytes_per_token"] == 2 * 24 * 2 * 64 * 2
    # embeddings (73,448 x 1,024) are looked up, not multiplied: the rest is the matmul weights (+ norms)
    assert a["matmul_params"] == a["params"] - a["vocab_size"] * 1024 - 24 * 2 * 1024 - 1024
    assert P.model_arith(FULL, "float32")["weight_bytes"] == 2 * a["weight_bytes"]
    with pytest.raises(ValueError, match="engine_dtype"):
        P.model_arith(FULL, "auto")


def test_limits():
    assert P.decode_limit(100.0, 1_000_000_000, 0, 0) == pytest.approx(100.0)
    # batch 4: 4x the tokens per weight read, plus each sequence's KV
    assert P.decode_limit(100.0, 1e9, 1000, 1000, batch=4) == pytest.approx(4 * 100e9 / (1e9 + 4e6))
    a = {"matmul_params": 1_000_000, "attn_flops_per_ctx_token": 100}
    # 2 FLOPs per weight + attention over a mean context of input_len / 2
    assert P.prefill_limit(1e9, a, 100) == pytest.approx(1e9 / (2e6 + 100 * 50))


def _sweep():
    serve = P.parse_serve(json.loads((FIX / "bench_serve.json").read_text()))
    return [{"concurrency": 2, "parsed": serve}, {"concurrency": 1, "parsed": serve}]


def test_figures_against_both_limits():
    a = P.model_arith(FULL, "bfloat16")
    F = P.figures(_sweep(), 20.0, 100e9, a, 32, 8)
    ids = {r["id"]: r for r in F["rows"]}
    for k in ("decode_tok_s", "prefill_tok_s", "serve_b1_output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "itl_ms_p50",
              "itl_ms_p99", "serve_c1_output_tok_s", "serve_c2_output_tok_s"):
        assert k in ids
    d, p = ids["decode_tok_s"], ids["prefill_tok_s"]
    assert d["limit_kind"] == "bandwidth" and d["limit"] == pytest.approx(F["limit_b1"])
    assert d["value"] == pytest.approx(1000 / P.parse_serve(json.loads((FIX / "bench_serve.json").read_text()))["tpot_ms_p50"])
    assert p["limit_kind"] == "compute" and p["limit"] == pytest.approx(P.prefill_limit(100e9, a, 32))
    assert d["pct"] == pytest.approx(100 * d["value"] / d["limit"])
    assert ids["ttft_ms_p50"]["pct"] is None and ids["serve_b1_output_tok_s"]["limit"] is None
    assert [s["concurrency"] for s in F["sweep"]] == [1, 2]
    assert F["decode_tok_s"] == d["value"] and F["prefill_tok_s"] == p["value"]
    rows = P.figure_rows(F)
    assert len(rows) == len(F["rows"]) and all(len(r) == 7 for r in rows)


def test_judge_decode_paths():
    assert P.judge_decode(20.0, 25.0, "cpu", 40, 15).status == "pass"  # 80 %
    warn = P.judge_decode(7.5, 25.0, "cpu", 40, 15, [P.Cause("AVX2 only", "仅 AVX2")])  # 30 %
    assert warn.status == "warn" and "AVX2 only" in warn.detail_en and "仅 AVX2" in warn.detail_zh
    assert "30.0 %" in warn.detail_en and warn.scope == "engine"
    above = P.judge_decode(30.0, 25.0, "cpu", 40, 15)
    assert above.status == "warn" and "above the limit" in above.detail_en
    assert P.judge_decode(None, 25.0, "cpu", 40, 15).status == "not_run"
    # per-device thresholds: the same 20 % warns on a CPU (40) and passes on an NPU profile asking 10
    assert P.judge_decode(5.0, 25.0, "npu", 10, 2).status == "pass"


def test_judge_prefill_completed_scaling_paths():
    assert P.judge_prefill(500.0, 1000.0, "cpu", 25, 5).status == "pass"
    assert P.judge_prefill(100.0, 1000.0, "cpu", 25, 5).status == "warn"
    above = P.judge_prefill(420.0, 190.0, "cpu", 25, 5)
    assert above.status == "warn" and "matmul FLOP/s is too low" in above.detail_en
    ok = {1: {"completed": 4, "num_prompts": 4, "failed": 0}, 4: {"completed": 8, "num_prompts": 8, "failed": 0}}
    assert P.judge_completed(ok).status == "pass"
    assert P.judge_completed({1: {"completed": 4, "num_prompts": 5, "failed": 0}}).status == "fail"  # one missing
    assert P.judge_completed({}).status == "not_run"
    rows = lambda a, b: [{"concurrency": 1, "output_tok_s": a}, {"concurrency": 4, "output_tok_s": b}]  # noqa: E731
    assert P.judge_scaling(rows(30, 90), 1.2).status == "pass"
    assert P.judge_scaling(rows(30, 33), 1.2).status == "warn"
    assert P.judge_scaling(rows(30, 33)[:1], 1.2).status == "not_run"


def test_judge_vs_base_paths():
    assert P.judge_vs_base(31.0, 30.0, "models/base").status == "pass"
    nr = P.judge_vs_base(31.0, None, None)
    assert nr.status == "not_run" and "performance.base_model_path" in nr.detail_en and nr.scope == "document"
    assert P.judge_vs_base(31.0, 30.0, "models/base", "dummy").status == "not_run"


LOG = """INFO [cpu_worker.py:80] OpenMP thread binding info:
	VLLM_CPU_OMP_THREADS_BIND='auto', auto_setup=True, skip_setup=False
	local_world_size=1, reserve_cpu_num=1
	local_rank=0, core ids=[0]
	reserved_cpus=[1]
WARNING [cpu_worker.py:115] libtcmalloc is not found in LD_PRELOAD. For best performance, please follow
WARNING [cpu_worker.py:115] libiomp is not found in LD_PRELOAD. For best performance, please follow
WARNING [utils.py:598] Failed to create oneDNN linear, fallback to torch linear.
"""


def test_engine_log_facts_and_causes():
    f = P.engine_log_facts(LOG)
    assert f == {"bound_cores": [0], "missing_preloads": ["libiomp", "libtcmalloc"], "onednn_fallback": True}
    causes = P.diagnose("cpu", "bfloat16", {"avx2"}, f, 2, True)
    text = " | ".join(c.en for c in causes)
    assert "AVX2" in text and "oneDNN" in text and "1 of 2 usable cores" in text
    assert "libtcmalloc not in LD_PRELOAD" in text and "libiomp not in LD_PRELOAD" in text
    assert all(c.zh for c in causes)
    # a clean log on a CPU with native BF16: nothing to name
    assert P.diagnose("cpu", "bfloat16", {"avx2", "avx512f", "avx512_bf16"},
                      P.engine_log_facts("local_rank=0, core ids=[0, 1]\n"), 2, True) == []
    assert "eager" in P.diagnose("cuda", "bfloat16", set(), {}, 8, True)[0].en
    # a host shared with other work: the load before the chapter started, against the usable cores
    busy = P.diagnose("cpu", "bfloat16", {"avx512_bf16"}, {}, 2, True, load_average=5.2)
    assert len(busy) == 1 and "load average 5.2 on 2 usable cores" in busy[0].en and "5.2" in busy[0].zh
    assert P.diagnose("cpu", "bfloat16", {"avx512_bf16"}, {}, 2, True, load_average=1.0) == []


def test_bandwidth_and_matmul_measured():
    bw = P.measure_bandwidth("cpu", size_mib=16, repeats=2)
    assert bw["gb_s"] > 0.1 and bw["device"] == "cpu" and bw["gb_s"] == max(bw["copy_gb_s"], bw["read_gb_s"])
    assert P.combine_bandwidth(bw, {**bw, "gb_s": 2 * bw["gb_s"]})["gb_s"] == 2 * bw["gb_s"]
    mm = P.measure_matmul("cpu", "float32", n=256, repeats=2)
    assert mm["flops_per_s"] > 1e8 and mm["n"] == 256 and mm["dtype"] == "float32"
    both = P.combine_matmul(mm, {**mm, "flops_per_s": 3 * mm["flops_per_s"]})
    assert both["flops_per_s"] == 3 * mm["flops_per_s"] and len(both["samples_gflops"]) == 2


# -- the host CPU settings (engine.hostcpu, engine.offline.engine_dtype / platform_env) -------------------

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n"


def test_cpu_flags_and_isa():
    f = hostcpu.cpu_flags(CPUINFO)
    assert {"avx2", "fma"} <= f and hostcpu.vector_isa(f) == "AVX2" and not hostcpu.has_native_bf16(f)
    assert hostcpu.vector_isa({"avx2", "avx512f"}) == "AVX-512"
    assert hostcpu.vector_isa({"avx512f", "avx512_bf16"}) == "AVX-512 BF16"
    assert hostcpu.vector_isa({"avx512f", "amx_bf16", "amx_tile"}) == "AMX"
    assert hostcpu.cpu_flags("Features\t: fp asimd sve\n") == {"fp", "asimd", "sve"}


def test_dtype_follows_the_isa():
    assert hostcpu.choose_dtype("auto", {"avx2"}).chosen == "float32"
    assert "fall" in hostcpu.choose_dtype("auto", {"avx2"}).why_en
    assert hostcpu.choose_dtype("auto", {"avx512_bf16"}).chosen == "bfloat16"
    assert hostcpu.choose_dtype("auto", {"amx_bf16"}).chosen == "bfloat16"
    assert hostcpu.choose_dtype("bfloat16", {"avx2"}).chosen == "bfloat16"  # the profile wins


def test_thread_binding():
    assert hostcpu.cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    auto = hostcpu.choose_binding("auto", [0, 1])
    assert auto.env == {"VLLM_CPU_OMP_THREADS_BIND": "0-1"} and "2 usable cores" in auto.why_en
    assert hostcpu.choose_binding("vllm", [0, 1]).env == {}
    assert hostcpu.choose_binding("0,2", [0, 1, 2]).env == {"VLLM_CPU_OMP_THREADS_BIND": "0,2"}


def _params(tmp_path, **engine):
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"),
         "model": {"path": "models/stand-in", "dummy_config": str(ROOT / "models/bitcpm4-0.5b")},
         "engine": {"max_model_len": 512, **engine}, "inference": {"max_tokens": 8},
         "performance": {"input_len": 16, "output_len": 4, "decode_pct_warn": {"cpu": 50, "cuda": 30, "npu": 20}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(y))
    return load_params(tmp_path / "p.yaml")


def test_engine_gets_the_host_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(offline, "engine_platform", lambda: "cpu")
    monkeypatch.setattr(hostcpu, "cpu_flags", lambda cpuinfo=None: {"avx2"})
    monkeypatch.setattr(hostcpu, "usable_cores", lambda: [0, 1])
    p = _params(tmp_path)
    assert p.engine.dtype == "auto" and p.engine.cpu_threads_bind == "auto"
    assert offline.engine_dtype(p) == "float32"
    assert offline.engine_kwargs(p, "dummy")["dtype"] == "float32"
    assert offline.platform_env(p)["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in offline.platform_env(_params(tmp_path, cpu_threads_bind="vllm"))
    assert offline.engine_dtype(_params(tmp_path, dtype="bfloat16")) == "bfloat16"
    host = P.host_settings(p, "cpu")
    assert host["vector_isa"] == "AVX2" and [c["chosen"] for c in host["choices"]] == ["float32", "0-1"]
    assert len(P.host_rows(host)) >= 4
    assert p.performance.decode_pct_warn.of("npu") == 20 and p.performance.decode_pct_fail.of("cpu") == 15
    monkeypatch.setattr(offline, "engine_platform", lambda: "cuda")
    assert offline.engine_dtype(p) == "auto" and "VLLM_CPU_OMP_THREADS_BIND" not in offline.platform_env(p)


def test_bad_thread_binding_is_one_line(tmp_path):
    with pytest.raises(ParamsError, match="engine.cpu_threads_bind"):
        _params(tmp_path, cpu_threads_bind="all cores")


def test_bench_args_and_weights(tmp_path):
    p = _params(tmp_path)
    assert P.benchmark_model(p) == ("dummy", ROOT / "models/bitcpm4-0.5b")
    s = P.serve_args("http://127.0.0.1:1", "m", "tok", 16, 4, P.prompts_for(4, 4), 4, tmp_path, "x.json")
    assert s[s.index("--max-concurrency") + 1] == "4" and s[s.index("--num-prompts") + 1] == "8"
    assert s[s.index("--ready-check-timeout-sec") + 1] == "0"  # no cached test prompt flattering TTFT
    assert P.shown_command("serve", s).startswith("vllm bench serve --backend vllm")
    from bitcpm_validation.engine import identity
    from bitcpm_validation.params import load_params
    assert identity.measured_on(load_params("params/default.yaml"), "dummy", "cpu") == "bitcpm4-0.5b shape · dummy weights · CPU"


@pytest.mark.engine
def test_real_bench_serve_tiny(tmp_path):
    """The real tool once against a real server, on a tiny model (vocab above the tool's 10,000 random ids)."""
    from bitcpm_validation.engine import starts
    from bitcpm_validation.model.writer import write_tiny_random_model

    m = write_tiny_random_model(tmp_path / "m", vocab_size=10240)
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"), "model": {"path": str(m)},
         "engine": {"dtype": "float32", "max_model_len": 128}, "inference": {"max_tokens": 8},
         "performance": {"input_len": 16, "output_len": 4, "num_prompts": 2}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(y))
    p = load_params(tmp_path / "p.yaml")
    run = tmp_path / "run"
    (run / "evidence").mkdir(parents=True)
    ev = run / "evidence" / "07_performance.log"
    with P.start_server(p, ev, "real") as srv:
        sweep = P.run_serve_sweep(p, srv.root_url, srv.model, str(m), tmp_path / "out", ev, [1, 2], timeout=600)
    assert [s["concurrency"] for s in sweep] == [1, 2]
    assert P.judge_completed({s["concurrency"]: s["parsed"] for s in sweep}).status == "pass"
    assert sweep[0]["parsed"]["tpot_ms_p50"] > 0 and sweep[0]["command"].startswith("vllm bench serve")
    assert [(s.kind, s.why) for s in starts.load(run)] == [("benchmark", P.BENCH_WHY)]
    assert P.engine_log_facts(ev.read_text())["bound_cores"] is not None
