"""Performance with vLLM's own benchmark tooling, and the device's bandwidth-bound decode limit.

- `vllm bench latency` (offline engine, batch 1): end-to-end latency -> output tok/s;
- `vllm bench serve` against the OpenAI server, one run per concurrency level: TTFT, TPOT, ITL
  p50/p99, output throughput -> batch-1 figures and the throughput-vs-concurrency sweep;
- optionally `vllm bench throughput` (offline, many prompts).

The benchmarks run in a child process through their modules (`vllm.benchmarks.<kind>`:
`add_cli_args`, then `main`) so one import serves every concurrency level; the equivalent `vllm bench`
command line is recorded for the report. Their JSON outputs (`--output-json`, `--save-result`) are
what the chapter parses; no measured figure is typed in by hand.

Bandwidth: a large tensor copy on the device the engine runs on (CPU: torch copy over all threads;
CUDA / NPU: a device-to-device copy), bytes read + written per second. The decode limit at batch B is
B x bandwidth / (weight bytes + B x KV bytes read per step), the ceiling for a memory-bound decode.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.engine.offline import engine_kwargs, platform_env
from bitcpm_validation.params import Params
from bitcpm_validation.engine.server import _pdeathsig, serve_flags, tail

# The original validation document's figures (Ascend 910B3, vLLM-Ascend 0.18.0rc1, eager). Shown for
# reference only, labelled as from another machine; never compared as if measured here.
ORIGINAL = {
    "machine": "Ascend 910B3 (64 GB) x1, vLLM 0.18.0 + vLLM-Ascend 0.18.0rc1, CANN 8.5.1, eager",
    "output_tok_s": 85.0,  # "~85 toks/s (max_tokens=64)"
    "max_tokens": 64,
    "init_s": 10.0,  # "engine init ~10 s"
    "weights_load_s": 0.45,
    "weights_gb": 0.8161,
}


class BenchError(RuntimeError):
    """A benchmark run failed; the message is one line with its log tail."""


# --------------------------------------------------------------------------------------------
# model arithmetic


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}


def model_arith(config_path: Path, dtype: str) -> dict[str, Any]:
    """Parameter count, weight bytes and KV bytes per token of context for a MiniCPM config."""
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    h, i, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or h // nh
    V = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", True)
    per_layer = h * nh * hd + 2 * h * kv * hd + nh * hd * h + 3 * h * i + 2 * h
    params = V * h + L * per_layer + h + (0 if tied else V * h)
    b = _DTYPE_BYTES.get(dtype, 2)
    return {"params": params, "dtype_bytes": b, "weight_bytes": params * b,
            "kv_bytes_per_token": 2 * L * kv * hd * b, "tied": tied,
            "layers": L, "kv_heads": kv, "head_dim": hd, "vocab_size": V}


def decode_limit(bandwidth_gbs: float, weight_bytes: int, kv_bytes_per_token: int, context: int,
                 batch: int = 1) -> float:
    """Bandwidth-bound output tok/s: each decode step reads all weights once plus every sequence's KV."""
    step_bytes = weight_bytes + batch * kv_bytes_per_token * context
    return batch * bandwidth_gbs * 1e9 / step_bytes


# --------------------------------------------------------------------------------------------
# bandwidth


def measure_bandwidth(platform: str = "cpu", size_mib: int = 512, repeats: int = 5) -> dict[str, Any]:
    """Memory bandwidth of a `size_mib` buffer on the engine's device, best of `repeats`, in GB/s.

    Two kernels: a copy (bytes read + written) and a read-only reduction (bytes read: what a decode step
    does with the weights). `gb_s` is the higher of the two.
    """
    import torch

    n = size_mib * 1024 * 1024 // 4
    dev = {"cuda": "cuda", "npu": "npu"}.get(platform, "cpu")
    if dev == "npu":
        import torch_npu  # noqa: F401
    src = torch.ones(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (
        (lambda: torch.npu.synchronize()) if dev == "npu" else (lambda: None))

    def best(fn) -> float:
        fn()
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_copy = best(lambda: dst.copy_(src))
    t_read = best(lambda: src.sum())
    del src, dst
    copy_gbs, read_gbs = 2 * n * 4 / t_copy / 1e9, n * 4 / t_read / 1e9
    return {"device": dev, "buffer_mib": size_mib, "repeats": repeats,
            "copy_gb_s": copy_gbs, "read_gb_s": read_gbs, "gb_s": max(copy_gbs, read_gbs),
            "threads": torch.get_num_threads() if dev == "cpu" else None,
            "method": "torch: Tensor.copy_ (read + write) and Tensor.sum (read), best of each"}


def combine_bandwidth(*measurements: dict[str, Any]) -> dict[str, Any]:
    """Several measurements in one run (before / after the benchmarks): the best observed is the limit."""
    best = max(measurements, key=lambda m: m["gb_s"])
    return {**best, "samples_gb_s": [round(m["gb_s"], 3) for m in measurements]}


# --------------------------------------------------------------------------------------------
# running the tools


def bench_argv(kind: str, args: Sequence[str]) -> list[str]:
    """The child command: this module's runner, which calls vllm.benchmarks.<kind> add_cli_args + main."""
    return [sys.executable, "-m", "bitcpm_validation.chapters.performance", kind, *args]


def shown_command(kind: str, args: Sequence[str]) -> str:
    import shlex

    return "vllm bench " + kind + " " + shlex.join(list(args))


def _run_child(argv: list[str], evidence: Path, env: dict[str, str], timeout: float) -> float:
    evidence.parent.mkdir(parents=True, exist_ok=True)
    mark = evidence.stat().st_size if evidence.exists() else 0
    t0 = time.monotonic()
    with open(evidence, "a", encoding="utf-8") as log:
        log.write(f"=== bench: {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=_pdeathsig)  # dies with this process
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:  # timeout or Ctrl-C: leave nothing running
            import signal

            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise BenchError(f"benchmark exceeded {timeout:.0f} s; log tail: {tail(evidence, mark)}") from None
            raise
    if rc != 0:
        raise BenchError(f"benchmark exited with code {rc}; log tail: {tail(evidence, mark)}")
    return time.monotonic() - t0


def _env(params: Params) -> dict[str, str]:
    env = dict(os.environ)
    for k, v in platform_env(params).items():
        env.setdefault(k, v)
    env.pop("VLLM_LOGGING_CONFIG_PATH", None)
    env.setdefault("NO_COLOR", "1")
    return env


def latency_args(params: Params, which: str, out_json: Path, batch_size: int = 1,
                 input_len: Optional[int] = None, output_len: Optional[int] = None) -> list[str]:
    pp = params.performance
    kw = engine_kwargs(params, which)  # type: ignore[arg-type]
    return ["--model", kw["model"], *serve_flags(kw),
            "--input-len", str(input_len or pp.input_len), "--output-len", str(output_len or pp.output_len),
            "--batch-size", str(batch_size), "--num-iters", str(pp.num_iters),
            "--num-iters-warmup", str(pp.num_iters_warmup), "--output-json", str(out_json)]


def run_latency(params: Params, which: str, out_json: Path, evidence: Path, timeout: float = 1800,
                **kw: Any) -> dict[str, Any]:
    """`vllm bench latency`; returns {command, wall_s, result (the tool's JSON)}."""
    args = latency_args(params, which, out_json, **kw)
    wall = _run_child(bench_argv("latency", args), evidence, _env(params), timeout)
    return {"command": shown_command("latency", args), "wall_s": wall,
            "result": json.loads(Path(out_json).read_text(encoding="utf-8"))}


def throughput_args(params: Params, which: str, out_json: Path, num_prompts: int) -> list[str]:
    pp = params.performance
    kw = engine_kwargs(params, which)  # type: ignore[arg-type]
    return ["--model", kw["model"], *serve_flags(kw), "--dataset-name", "random",
            "--input-len", str(pp.input_len), "--output-len", str(pp.output_len),
            "--num-prompts", str(num_prompts), "--output-json", str(out_json)]


def run_throughput(params: Params, which: str, out_json: Path, evidence: Path, num_prompts: int,
                   timeout: float = 1800) -> dict[str, Any]:
    args = throughput_args(params, which, out_json, num_prompts)
    wall = _run_child(bench_argv("throughput", args), evidence, _env(params), timeout)
    return {"command": shown_command("throughput", args), "wall_s": wall,
            "result": json.loads(Path(out_json).read_text(encoding="utf-8"))}


def serve_args(base_url_root: str, model: str, tokenizer: str, input_len: int, output_len: int,
               num_prompts: int, concurrency: int, result_dir: Path, result_file: str, seed: int = 0) -> list[str]:
    return ["--backend", "vllm", "--base-url", base_url_root, "--endpoint", "/v1/completions",
            "--model", model, "--tokenizer", tokenizer, "--trust-remote-code",
            "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len", str(output_len),
            "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency), "--request-rate", "inf",
            "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            "--seed", str(seed), "--disable-tqdm", "--save-result", "--result-dir", str(result_dir),
            "--result-filename", result_file]


def prompts_for(concurrency: int, num_prompts: int) -> int:
    """Requests per concurrency level: at least num_prompts and two full rounds."""
    return max(num_prompts, 2 * concurrency)


def run_serve_sweep(params: Params, base_url_root: str, model: str, tokenizer: str, result_dir: Path,
                    evidence: Path, concurrency: Sequence[int], timeout: float = 1800) -> list[dict[str, Any]]:
    """`vllm bench serve` once per concurrency level (one child process); the tool's saved JSON per level."""
    pp = params.performance
    result_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for c in concurrency:
        fname = f"serve_c{c}.json"
        args = serve_args(base_url_root, model, tokenizer, pp.input_len, pp.output_len,
                          prompts_for(c, pp.num_prompts), c, result_dir, fname, params.engine.seed)
        jobs.append((c, fname, args))
    spec = result_dir / "serve_jobs.json"
    spec.write_text(json.dumps([a for _, _, a in jobs]), encoding="utf-8")
    _run_child(bench_argv("serve-sweep", [str(spec)]), evidence, _env(params), timeout)
    out = []
    for c, fname, args in jobs:
        out.append({"concurrency": c, "command": shown_command("serve", args),
                    "result": json.loads((result_dir / fname).read_text(encoding="utf-8"))})
    return out


# --------------------------------------------------------------------------------------------
# parsing the tools' JSON


def parse_latency(result: dict[str, Any], output_len: int, batch_size: int = 1) -> dict[str, Any]:
    """`vllm bench latency --output-json`: avg latency of one batch -> output tok/s (prefill included)."""
    lat = float(result["avg_latency"])
    lats = [float(x) for x in result.get("latencies", [])]
    pct = result.get("percentiles", {})
    return {"avg_latency_s": lat, "iterations": len(lats),
            "p50_latency_s": float(pct["50"]) if "50" in pct else None,
            "p99_latency_s": float(pct["99"]) if "99" in pct else None,
            "output_tok_s": batch_size * output_len / lat if lat > 0 else None}


def parse_serve(result: dict[str, Any]) -> dict[str, Any]:
    """`vllm bench serve --save-result` JSON -> the figures the chapter reports (ms and tok/s)."""
    g = lambda k: (float(result[k]) if result.get(k) is not None else None)  # noqa: E731
    return {
        "completed": int(result.get("completed", 0)),
        "num_prompts": int(result.get("num_prompts", result.get("completed", 0))),
        "failed": int(result.get("failed", 0) or 0) if "failed" in result else
        int(result.get("num_prompts", 0)) - int(result.get("completed", 0)),
        "max_concurrency": result.get("max_concurrency"),
        "duration_s": g("duration"),
        "output_tok_s": g("output_throughput"),
        "total_tok_s": g("total_token_throughput"),
        "request_per_s": g("request_throughput"),
        "ttft_ms_mean": g("mean_ttft_ms"), "ttft_ms_p50": g("median_ttft_ms") or g("p50_ttft_ms"),
        "ttft_ms_p99": g("p99_ttft_ms"),
        "tpot_ms_mean": g("mean_tpot_ms"), "tpot_ms_p50": g("median_tpot_ms") or g("p50_tpot_ms"),
        "tpot_ms_p99": g("p99_tpot_ms"),
        "itl_ms_mean": g("mean_itl_ms"), "itl_ms_p50": g("median_itl_ms") or g("p50_itl_ms"),
        "itl_ms_p99": g("p99_itl_ms"),
        "e2el_ms_p50": g("median_e2el_ms") or g("p50_e2el_ms"),
        "input_tokens": result.get("total_input_tokens"), "output_tokens": result.get("total_output_tokens"),
    }


def parse_throughput(result: dict[str, Any]) -> dict[str, Any]:
    return {"elapsed_s": float(result["elapsed_time"]), "requests": int(result["num_requests"]),
            "total_tok_s": float(result["tokens_per_second"]), "request_per_s": float(result["requests_per_second"])}


def pct(value: Optional[float], limit: Optional[float]) -> Optional[float]:
    if value is None or not limit or math.isnan(value):
        return None
    return 100.0 * value / limit


def figures(lat: Optional[dict[str, Any]], sweep: Sequence[dict[str, Any]], bandwidth_gbs: float,
            arith: dict[str, Any], input_len: int, output_len: int) -> dict[str, Any]:
    """The chapter's table: each measured figure, the bandwidth-bound limit it is compared with, and the %.

    Context for the KV term: the mean context during decode, input_len + output_len / 2.
    Prefill is compute-bound, not bandwidth-bound: its % is shown for scale only (it may exceed 100).
    """
    ctx = input_len + output_len / 2
    lim = lambda b: decode_limit(bandwidth_gbs, arith["weight_bytes"], arith["kv_bytes_per_token"], ctx, b)  # noqa: E731
    rows: list[dict[str, Any]] = []

    def add(fid, en, zh, value, unit, limit, tool, note=""):
        rows.append({"id": fid, "name_en": en, "name_zh": zh, "value": value, "unit": unit, "limit": limit,
                     "pct": pct(value, limit) if limit and unit == "tok/s" else None, "tool": tool, "note": note})

    if lat:
        add("latency_b1_output_tok_s", "Batch-1 output tok/s (end to end)", "单请求输出速度(端到端)",
            lat["output_tok_s"], "tok/s", lim(1), "bench latency", "output_len / avg latency, prefill included")
    by_c = {int(s["concurrency"]): s for s in sweep}
    c1 = by_c.get(1)
    if c1:
        s = c1["parsed"]
        add("serve_b1_output_tok_s", "Batch-1 output tok/s (server)", "单并发输出速度(服务)", s["output_tok_s"],
            "tok/s", lim(1), "bench serve c=1")
        tpot = s["tpot_ms_p50"]
        add("decode_tok_s", "Decode tok/s = 1000 / TPOT p50", "解码速度 = 1000 / TPOT 中位数",
            1000.0 / tpot if tpot else None, "tok/s", lim(1), "bench serve c=1", "decode only, no prefill")
        add("ttft_ms_p50", "TTFT p50", "首 token 时延 p50", s["ttft_ms_p50"], "ms", None, "bench serve c=1")
        add("ttft_ms_p99", "TTFT p99", "首 token 时延 p99", s["ttft_ms_p99"], "ms", None, "bench serve c=1")
        add("tpot_ms_p50", "TPOT p50", "每输出 token 时间 p50", tpot, "ms", None, "bench serve c=1")
        add("itl_ms_p50", "ITL p50", "token 间延迟 p50", s["itl_ms_p50"], "ms", None, "bench serve c=1")
        add("itl_ms_p99", "ITL p99", "token 间延迟 p99", s["itl_ms_p99"], "ms", None, "bench serve c=1")
        ttft = s["ttft_ms_p50"]
        add("prefill_tok_s", "Prefill tok/s = input_len / TTFT p50", "预填充速度 = 输入长度 / TTFT 中位数",
            input_len / (ttft / 1000.0) if ttft else None, "tok/s", lim(1), "bench serve c=1",
            "compute-bound: % for scale only")
    for c, s in sorted(by_c.items()):
        add(f"serve_c{c}_output_tok_s", f"Output tok/s at concurrency {c}", f"并发 {c} 输出吞吐",
            s["parsed"]["output_tok_s"], "tok/s", lim(c), f"bench serve c={c}")
    sweep_rows = [{"concurrency": c, "output_tok_s": s["parsed"]["output_tok_s"], "limit": lim(c),
                   "pct": pct(s["parsed"]["output_tok_s"], lim(c)), "tpot_ms_p50": s["parsed"]["tpot_ms_p50"],
                   "ttft_ms_p50": s["parsed"]["ttft_ms_p50"], "completed": s["parsed"]["completed"],
                   "failed": s["parsed"]["failed"]} for c, s in sorted(by_c.items())]
    return {"rows": rows, "sweep": sweep_rows, "context_tokens": ctx, "limit_b1": lim(1)}


def plot_sweep(sweep_rows: Sequence[dict[str, Any]], bandwidth_gbs: float, arith: dict[str, Any], context: float,
               path: Path):
    """Throughput vs concurrency (measured) with the bandwidth-bound limit curve; saved as PNG."""
    import matplotlib.pyplot as plt

    from bitcpm_validation.report.plots import setup

    setup()
    cs = [r["concurrency"] for r in sweep_rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(cs, [r["output_tok_s"] for r in sweep_rows], "o-", label="measured 实测 (vllm bench serve)")
    dense = list(range(1, (max(cs) if cs else 1) + 1))
    ax.plot(dense, [decode_limit(bandwidth_gbs, arith["weight_bytes"], arith["kv_bytes_per_token"], context, b)
                    for b in dense], "--", color="gray", label="bandwidth limit 带宽上限")
    ax.set_xlabel("concurrency 并发数")
    ax.set_ylabel("output tok/s 输出吞吐")
    ax.set_yscale("log")
    ax.set_xticks(cs)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return fig


# --------------------------------------------------------------------------------------------
# child-process entry point: python -m bitcpm_validation.chapters.performance <latency|throughput|serve|serve-sweep> ARGS


def _bench_main(kind: str, argv: list[str]) -> None:
    import importlib

    from vllm.utils.argparse_utils import FlexibleArgumentParser

    mod = importlib.import_module(f"vllm.benchmarks.{kind}")
    parser = FlexibleArgumentParser(prog=f"vllm bench {kind}")
    mod.add_cli_args(parser)
    args = parser.parse_args(argv)
    mod.main(args)


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    kind, rest = argv[0], argv[1:]
    if kind == "serve-sweep":
        for args in json.loads(Path(rest[0]).read_text(encoding="utf-8")):
            print(f"=== vllm bench serve {' '.join(args)}", flush=True)
            _bench_main("serve", args)
    elif kind in ("latency", "throughput", "serve"):
        _bench_main(kind, rest)
    else:
        raise SystemExit(f"unknown benchmark {kind!r}: latency | throughput | serve | serve-sweep")


if __name__ == "__main__":
    main()
