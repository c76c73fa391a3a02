"""Performance: parsing the benchmark tools' real JSON, model arithmetic, the bandwidth limit, a real bench run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import performance as P
from bitcpm_validation.params import load_params

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "perf"


def test_parse_latency_real_output():
    raw = json.loads((FIX / "bench_latency.json").read_text())
    r = P.parse_latency(raw, output_len=8)
    assert r["iterations"] == len(raw["latencies"]) == 2
    assert r["avg_latency_s"] == pytest.approx(raw["avg_latency"])
    assert r["output_tok_s"] == pytest.approx(8 / raw["avg_latency"])
    assert r["p50_latency_s"] == pytest.approx(raw["percentiles"]["50"])
    assert r["p99_latency_s"] >= r["p50_latency_s"]


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
    a = P.model_arith(ROOT / "models/bitcpm4-0.5b/config.json", "bfloat16")
    assert a["params"] == 433_873_920 and a["weight_bytes"] == 867_747_840 and a["tied"]
    assert a["kv_bytes_per_token"] == 2 * 24 * 2 * 64 * 2


def test_decode_limit_and_figures():
    a = {"weight_bytes": 1_000_000_000, "kv_bytes_per_token": 1000}
    assert P.decode_limit(100.0, a["weight_bytes"], 0, 0) == pytest.approx(100.0)
    # batch 4: 4x the tokens per weight read, plus each sequence's KV
    assert P.decode_limit(100.0, 1e9, 1000, 1000, batch=4) == pytest.approx(4 * 100e9 / (1e9 + 4e6))
    serve = json.loads((FIX / "bench_serve.json").read_text())
    sweep = [{"concurrency": 2, "parsed": P.parse_serve(serve)}, {"concurrency": 1, "parsed": P.parse_serve(serve)}]
    lat = P.parse_latency(json.loads((FIX / "bench_latency.json").read_text()), 8)
    F = P.figures(lat, sweep, 100.0, a, 32, 8)
    ids = {r["id"]: r for r in F["rows"]}
    for k in ("latency_b1_output_tok_s", "serve_b1_output_tok_s", "decode_tok_s", "ttft_ms_p50", "tpot_ms_p50",
              "itl_ms_p50", "itl_ms_p99", "prefill_tok_s", "serve_c1_output_tok_s", "serve_c2_output_tok_s"):
        assert k in ids
    r = ids["latency_b1_output_tok_s"]
    assert r["pct"] == pytest.approx(100 * r["value"] / r["limit"])
    assert ids["ttft_ms_p50"]["pct"] is None
    assert [s["concurrency"] for s in F["sweep"]] == [1, 2]


def test_bandwidth_measured():
    bw = P.measure_bandwidth("cpu", size_mib=16, repeats=2)
    assert bw["gb_s"] > 0.1 and bw["device"] == "cpu" and bw["gb_s"] == max(bw["copy_gb_s"], bw["read_gb_s"])
    assert P.combine_bandwidth(bw, {**bw, "gb_s": 2 * bw["gb_s"]})["gb_s"] == 2 * bw["gb_s"]


def test_bench_args_from_params(tmp_path):
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"),
         "model": {"path": "models/stand-in", "dummy_config": str(ROOT / "models/bitcpm4-0.5b")},
         "engine": {"max_model_len": 512}, "inference": {"max_tokens": 8},
         "performance": {"input_len": 16, "output_len": 4, "num_iters": 1, "num_iters_warmup": 0}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(y))
    p = load_params(tmp_path / "p.yaml")
    args = P.latency_args(p, "dummy", tmp_path / "o.json")
    line = " ".join(args)
    assert "--load-format dummy" in line and "--input-len 16" in line and "--output-len 4" in line
    assert "--max-model-len 512" in line and args[args.index("--model") + 1].endswith("bitcpm4-0.5b")
    assert P.shown_command("latency", args).startswith("vllm bench latency --model ")
    s = P.serve_args("http://127.0.0.1:1", "m", "tok", 16, 4, P.prompts_for(4, 4), 4, tmp_path, "x.json")
    assert s[s.index("--max-concurrency") + 1] == "4" and s[s.index("--num-prompts") + 1] == "8"


@pytest.mark.engine
def test_real_bench_latency_tiny(tmp_path):
    """The real tool once, on a tiny model (vocab above the tool's 10,000 random token ids)."""
    from bitcpm_validation.model.writer import write_tiny_random_model

    m = write_tiny_random_model(tmp_path / "m", vocab_size=10240)
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"), "model": {"path": str(m)},
         "engine": {"dtype": "float32", "max_model_len": 128}, "inference": {"max_tokens": 8},
         "performance": {"input_len": 16, "output_len": 4, "num_iters": 2, "num_iters_warmup": 1}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(y))
    p = load_params(tmp_path / "p.yaml")
    r = P.run_latency(p, "real", tmp_path / "lat.json", tmp_path / "ev.log", timeout=900)
    parsed = P.parse_latency(r["result"], 4)
    assert parsed["iterations"] == 2 and parsed["output_tok_s"] > 0
    assert r["command"].startswith("vllm bench latency")
