"""Performance with vLLM's own benchmark tooling, judged against the device's own limits.

One server for every benchmark (`vllm bench serve`, one run per concurrency level; concurrency 1 gives
the batch-1 decode and prefill figures), started fresh on purpose: the full 0.5B shape with dummy
weights (speed depends on shape and device, not on weight values). Optionally `vllm bench throughput`
(offline, one more engine start) and a base model's server for the original document's speed claim.

The benchmarks run in a child process through their modules (`vllm.benchmarks.<kind>`: `add_cli_args`,
then `main`) so one import serves every concurrency level; the equivalent `vllm bench` command line is
recorded for the report. Their JSON outputs (`--save-result`, `--output-json`) are what the chapter
parses; no measured figure is typed in by hand.

Limits, both measured in the run with torch on the engine's device:
- decode is bandwidth-bound: B x bandwidth / (weight bytes + B x KV bytes read per step);
- prefill is compute-bound: matmul FLOP/s / FLOPs per prompt token (2 x non-embedding parameters +
  causal attention).
Checks (scope engine) judge each figure's percent of its limit against per-device thresholds in params
and name the causes the run can see (vector ISA, oneDNN fallback, allocator preloads, bound cores).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from bitcpm_validation.engine import hostcpu
from bitcpm_validation.engine.offline import cpu_choices, engine_kwargs, platform_env
from bitcpm_validation.engine import processes
from bitcpm_validation.engine.server import serve_flags, tail
from bitcpm_validation.params import Params

from bitcpm_validation.report.display import T
from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

CHAPTER = "07_performance"

# The original validation document's figures (Ascend 910B3, vLLM-Ascend 0.18.0rc1, eager). Shown for
# reference only, labelled as from another machine; never compared as if measured here.
ORIGINAL = {
    "machine": "Ascend 910B3 (64 GB) x1, vLLM 0.18.0 + vLLM-Ascend 0.18.0rc1, CANN 8.5.1, eager",
    "output_tok_s": 85.0,  # "~85 toks/s (max_tokens=64)"
    "max_tokens": 64,
    "init_s": 10.0,  # "engine init ~10 s"
}

class BenchError(RuntimeError):
    """A benchmark run failed; the message is one line with its log tail."""


# --------------------------------------------------------------------------------------------
# the checks (scope engine: does this engine on this device run the model as fast as the device allows?)

CHECKS = registered_checks("07_performance")  # this chapter's entries of chapters/checks.yaml


@dataclass(frozen=True)
class Cause:
    """Something the run saw that slows the engine down, in both languages."""

    en: str
    zh: str


def _pct_status(pct_value: float, warn: float, fail: float) -> str:
    return "fail" if pct_value < fail else ("warn" if pct_value < warn else "pass")


def _causes_text(causes: Sequence[Cause]) -> tuple[str, str]:
    if not causes:
        return "", ""
    return (". Causes seen in this run: " + "; ".join(c.en for c in causes),
            "。本次运行可见的原因：" + "；".join(c.zh for c in causes))


def judge_decode(decode_tok_s: Optional[float], limit_tok_s: float, device: str, warn_pct: float, fail_pct: float,
                 causes: Sequence[Cause] = ()) -> Check:
    """Batch-1 decode against the bandwidth-bound limit (percent thresholds for this device)."""
    if decode_tok_s is None or not limit_tok_s:
        return CHECKS["decode_of_limit"].not_run("no TPOT at concurrency 1 (the sweep has no concurrency 1, or it produced no tokens)",
                              "并发 1 没有 TPOT（扫描未含并发 1 或未生成 token）")
    p = 100.0 * decode_tok_s / limit_tok_s
    base_en = f"{decode_tok_s:,.1f} tok/s is {p:.1f} % of the {limit_tok_s:,.1f} tok/s bandwidth limit on {device}"
    base_zh = f"{decode_tok_s:,.1f} tok/s，为 {device} 带宽上限 {limit_tok_s:,.1f} tok/s 的 {p:.1f} %"
    if p > 100.0:
        return CHECKS["decode_of_limit"].row("warn", base_en + ": above the limit, so the measured bandwidth is too low (a busy moment?)",
                          base_zh + "：超过上限，说明实测带宽偏低（测量时机器繁忙？）")
    status = _pct_status(p, warn_pct, fail_pct)
    ce, cz = _causes_text(causes) if status != "pass" else ("", "")
    return CHECKS["decode_of_limit"].row(status, f"{base_en} (warn below {warn_pct:g} %, fail below {fail_pct:g} %){ce}",
                      f"{base_zh}（低于 {warn_pct:g} % 警告，低于 {fail_pct:g} % 失败）{cz}")


def judge_prefill(prefill_tok_s: Optional[float], limit_tok_s: float, device: str, warn_pct: float, fail_pct: float,
                  causes: Sequence[Cause] = ()) -> Check:
    """Prefill (input_len / TTFT p50 at concurrency 1) against the compute-bound limit."""
    if prefill_tok_s is None or not limit_tok_s:
        return CHECKS["prefill_of_compute"].not_run("no TTFT at concurrency 1", "并发 1 没有 TTFT")
    p = 100.0 * prefill_tok_s / limit_tok_s
    if p > 100.0:
        return CHECKS["prefill_of_compute"].row("warn", f"{prefill_tok_s:,.1f} tok/s is {p:.1f} % of the {limit_tok_s:,.1f} tok/s compute limit "
                                   f"on {device}: above it, so the measured matmul FLOP/s is too low (a busy moment?)",
                           f"{prefill_tok_s:,.1f} tok/s，为 {device} 算力上限 {limit_tok_s:,.1f} tok/s 的 {p:.1f} %："
                           f"超过上限，说明实测矩阵乘 FLOP/s 偏低（测量时机器繁忙？）")
    status = _pct_status(p, warn_pct, fail_pct)
    ce, cz = _causes_text(causes) if status != "pass" else ("", "")
    return CHECKS["prefill_of_compute"].row(
        status, f"{prefill_tok_s:,.1f} tok/s is {p:.1f} % of the {limit_tok_s:,.1f} tok/s compute limit on {device} "
                f"(warn below {warn_pct:g} %, fail below {fail_pct:g} %){ce}",
        f"{prefill_tok_s:,.1f} tok/s，为 {device} 算力上限 {limit_tok_s:,.1f} tok/s 的 {p:.1f} %"
        f"（低于 {warn_pct:g} % 警告，低于 {fail_pct:g} % 失败）{cz}")


def judge_completed(parsed_by_concurrency: dict[int, dict[str, Any]]) -> Check:
    """Every request of every concurrency level completed (parse_serve outputs keyed by concurrency)."""
    if not parsed_by_concurrency:
        return CHECKS["requests_completed"].not_run("no benchmark ran", "没有运行基准测试")
    bad = {c: s for c, s in parsed_by_concurrency.items() if s["failed"] or s["completed"] < s["num_prompts"]}
    done = sum(s["completed"] for s in parsed_by_concurrency.values())
    failed = sum(s["failed"] for s in parsed_by_concurrency.values())
    levels = sorted(parsed_by_concurrency)
    if bad:
        where = ", ".join(f"c={c}: {s['completed']}/{s['num_prompts']} done, {s['failed']} failed"
                          for c, s in sorted(bad.items()))
        return CHECKS["requests_completed"].row("fail", f"requests failed or missing ({where}); see the chapter's evidence log",
                             f"有请求失败或缺失（{where}）；见本章证据日志")
    return CHECKS["requests_completed"].row("pass", f"{done:,} completed, {failed} failed over concurrency {levels}",
                         f"并发 {levels}：完成 {done:,} 个，失败 {failed} 个")


def judge_scaling(sweep_rows: Sequence[dict[str, Any]], min_gain: float) -> Check:
    """Output tok/s at the highest concurrency against concurrency 1 (figures()["sweep"])."""
    rows = [r for r in sweep_rows if r.get("output_tok_s")]
    if len(rows) < 2:
        return CHECKS["scales_with_concurrency"].not_run("fewer than two concurrency levels with results (performance.concurrency)",
                               "有结果的并发级别少于两个（performance.concurrency）")
    lo, hi = rows[0], rows[-1]
    gain = hi["output_tok_s"] / lo["output_tok_s"]
    status = "fail" if gain < 1.0 else ("warn" if gain < min_gain else "pass")
    return CHECKS["scales_with_concurrency"].row(
        status, f"{lo['output_tok_s']:,.1f} tok/s at {lo['concurrency']} -> {hi['output_tok_s']:,.1f} tok/s at "
                f"{hi['concurrency']}: x{gain:.2f} (warn below x{min_gain:g}, fail below x1)",
        f"并发 {lo['concurrency']}：{lo['output_tok_s']:,.1f} tok/s → 并发 {hi['concurrency']}：{hi['output_tok_s']:,.1f} tok/s，"
        f"{gain:.2f} 倍（低于 {min_gain:g} 倍警告，低于 1 倍失败）")


def judge_vs_base(ternary_tok_s: Optional[float], base_tok_s: Optional[float],
                  base_model_path: Optional[str], ternary_weights: str = "real") -> Check:
    """The document's 'slightly faster than the original model': ternary vs base batch-1 decode tok/s."""
    if not base_model_path:
        return CHECKS["faster_than_base"].not_run("no non-ternary base model given (performance.base_model_path): the claim is not "
                               "measurable in this run", "未给出非三值基础模型（performance.base_model_path）：本次无法测量该说法")
    if ternary_weights != "real":
        return CHECKS["faster_than_base"].not_run("the ternary figure comes from dummy weights: set performance.model: real with the "
                               "BitCPM4 weights in model.path", "三值模型的速度来自 dummy 权重：请设 performance.model: real，"
                               "并在 model.path 放入 BitCPM4 权重")
    if ternary_tok_s is None or base_tok_s is None:
        return CHECKS["faster_than_base"].not_run("a decode figure is missing (ternary or base run produced no TPOT)",
                               "缺少解码速度（三值或基础模型的运行没有 TPOT）")
    ratio = ternary_tok_s / base_tok_s
    status = "pass" if ratio >= 1.0 else "fail"
    return CHECKS["faster_than_base"].row(status, f"ternary {ternary_tok_s:,.1f} tok/s vs base {base_tok_s:,.1f} tok/s: x{ratio:.3f}",
                       f"三值 {ternary_tok_s:,.1f} tok/s，基础模型 {base_tok_s:,.1f} tok/s：{ratio:.3f} 倍")


# --------------------------------------------------------------------------------------------
# causes the run can see


_BOUND_RE = re.compile(r"local_rank=\d+, core ids=\[([\d, ]*)\]")
_PRELOAD_RE = re.compile(r"(lib\w+) is not found in LD_PRELOAD")
ONEDNN_FALLBACK = "Failed to create oneDNN linear, fallback to torch linear"


def engine_log_facts(log_text: str) -> dict[str, Any]:
    """What the engine's log says about its CPU set-up: bound core ids, missing preloads, oneDNN fallback."""
    bound = None
    for m in _BOUND_RE.finditer(log_text):
        bound = [int(x) for x in m.group(1).replace(" ", "").split(",") if x]
    return {"bound_cores": bound, "missing_preloads": sorted(set(_PRELOAD_RE.findall(log_text))),
            "onednn_fallback": ONEDNN_FALLBACK in log_text}


def diagnose(device: str, dtype: str, flags: set[str], log_facts: dict[str, Any], usable_cores: int,
             enforce_eager: bool, load_average: Optional[float] = None) -> list[Cause]:
    """The slow-downs this run can name, from the CPU's flags, the engine's own log and the host's load
    (the 1-minute load average before this chapter started anything, against the usable cores)."""
    out: list[Cause] = []
    if load_average is not None and load_average > usable_cores + 0.5:
        out.append(Cause(f"the host was busy: load average {load_average:.1f} on {usable_cores} usable cores before "
                         f"the benchmarks started (other processes take CPU time from the engine)",
                         f"主机繁忙：基准测试开始前 1 分钟平均负载 {load_average:.1f}，可用核心 {usable_cores} 个"
                         f"（其他进程占用引擎的 CPU 时间）"))
    if device == "cpu":
        isa = hostcpu.vector_isa(flags)
        if dtype == "bfloat16" and not hostcpu.has_native_bf16(flags):
            out.append(Cause(f"BF16 on a CPU with {isa} (no AVX-512 BF16 / AMX): set engine.dtype: auto or float32",
                             f"CPU 为 {isa}（无 AVX-512 BF16 / AMX）却用 BF16：把 engine.dtype 设为 auto 或 float32"))
        elif isa in ("AVX2", "no AVX2"):
            out.append(Cause(f"vector ISA {isa}: no AVX-512 kernels", f"向量指令集 {isa}：无 AVX-512 内核"))
        if log_facts.get("onednn_fallback"):
            out.append(Cause("vLLM logged 'Failed to create oneDNN linear, fallback to torch linear'",
                             "vLLM 日志：oneDNN 线性层创建失败，回退到 torch 线性层"))
        bound = log_facts.get("bound_cores")
        if bound is not None and len(bound) < usable_cores:
            out.append(Cause(f"the engine's threads were bound to {len(bound)} of {usable_cores} usable cores "
                             f"({bound}): set engine.cpu_threads_bind: auto",
                             f"引擎线程只绑定到 {usable_cores} 个可用核心中的 {len(bound)} 个（{bound}）："
                             f"设 engine.cpu_threads_bind: auto"))
        for lib in log_facts.get("missing_preloads", []):
            out.append(Cause(f"{lib} not in LD_PRELOAD (vLLM's warning)", f"{lib} 不在 LD_PRELOAD 中（vLLM 的警告）"))
    elif enforce_eager:
        out.append(Cause("eager mode (engine.enforce_eager: true): every step launches its kernels one by one",
                         "eager 模式（engine.enforce_eager: true）：每步逐个启动算子"))
    return out


# --------------------------------------------------------------------------------------------
# model arithmetic


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def model_arith(config_path: Path, dtype: str) -> dict[str, Any]:
    """Parameter count, weight bytes, KV bytes per token and matmul FLOPs per token for a MiniCPM config."""
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"model_arith: dtype {dtype!r} is not one of {sorted(_DTYPE_BYTES)}: pass the engine's "
                         f"resolved dtype (engine.offline.engine_dtype)")
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    h, i, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or h // nh
    V = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", True)
    matmul_per_layer = h * nh * hd + 2 * h * kv * hd + nh * hd * h + 3 * h * i
    per_layer = matmul_per_layer + 2 * h
    params = V * h + L * per_layer + h + (0 if tied else V * h)
    b = _DTYPE_BYTES[dtype]
    return {"params": params, "dtype": dtype, "dtype_bytes": b, "weight_bytes": params * b,
            "kv_bytes_per_token": 2 * L * kv * hd * b, "tied": tied,
            "matmul_params": L * matmul_per_layer,  # what a prompt token multiplies (no embedding, no LM head)
            "attn_flops_per_ctx_token": 4 * L * nh * hd,  # QK^T and AV, per token of context
            "layers": L, "kv_heads": kv, "head_dim": hd, "vocab_size": V}


def decode_limit(bandwidth_gbs: float, weight_bytes: int, kv_bytes_per_token: int, context: int,
                 batch: int = 1) -> float:
    """Bandwidth-bound output tok/s: each decode step reads all weights once plus every sequence's KV."""
    step_bytes = weight_bytes + batch * kv_bytes_per_token * context
    return batch * bandwidth_gbs * 1e9 / step_bytes


def prefill_limit(flops_per_s: float, arith: dict[str, Any], input_len: int) -> float:
    """Compute-bound prompt tok/s: 2 FLOPs per matmul weight per token, plus causal attention (mean context
    input_len / 2); the LM head runs for the last token only and is left out."""
    per_token = 2 * arith["matmul_params"] + arith["attn_flops_per_ctx_token"] * input_len / 2
    return flops_per_s / per_token


# --------------------------------------------------------------------------------------------
# bandwidth and compute of the device


def _device(platform: str):
    import torch

    dev = {"cuda": "cuda", "npu": "npu"}.get(platform, "cpu")
    if dev == "npu":
        import torch_npu  # noqa: F401
    sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (
        (lambda: torch.npu.synchronize()) if dev == "npu" else (lambda: None))
    return torch, dev, sync


def _best_time(fn, sync, repeats: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_bandwidth(platform: str = "cpu", size_mib: int = 512, repeats: int = 5) -> dict[str, Any]:
    """Memory bandwidth of a `size_mib` buffer on the engine's device, best of `repeats`, in GB/s.

    Two kernels: a copy (bytes read + written) and a read-only reduction (bytes read: what a decode step
    does with the weights). `gb_s` is the higher of the two.
    """
    torch, dev, sync = _device(platform)
    n = size_mib * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    t_copy = _best_time(lambda: dst.copy_(src), sync, repeats)
    t_read = _best_time(lambda: src.sum(), sync, repeats)
    del src, dst
    copy_gbs, read_gbs = 2 * n * 4 / t_copy / 1e9, n * 4 / t_read / 1e9
    return {"device": dev, "buffer_mib": size_mib, "repeats": repeats,
            "copy_gb_s": copy_gbs, "read_gb_s": read_gbs, "gb_s": max(copy_gbs, read_gbs),
            "threads": torch.get_num_threads() if dev == "cpu" else None,
            "method": "torch: Tensor.copy_ (read + write) and Tensor.sum (read), best of each"}


def measure_matmul(platform: str = "cpu", dtype: str = "bfloat16", n: int = 2048, repeats: int = 3) -> dict[str, Any]:
    """Dense matmul throughput (n x n x n, the engine's dtype) on the engine's device, best of `repeats`."""
    torch, dev, sync = _device(platform)
    tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    a = torch.randn(n, n, device=dev).to(tdt)
    b = torch.randn(n, n, device=dev).to(tdt)
    t = _best_time(lambda: a @ b, sync, repeats)
    del a, b
    return {"device": dev, "dtype": dtype, "n": n, "repeats": repeats, "flops_per_s": 2 * n ** 3 / t,
            "threads": torch.get_num_threads() if dev == "cpu" else None,
            "method": f"torch: {n} x {n} @ {n} x {n} in {dtype}, 2n^3 FLOPs, best of {repeats}"}


def combine_bandwidth(*measurements: dict[str, Any]) -> dict[str, Any]:
    """Several measurements in one run (before / after the benchmarks): the best observed is the limit."""
    best = max(measurements, key=lambda m: m["gb_s"])
    return {**best, "samples_gb_s": [round(m["gb_s"], 3) for m in measurements]}


def combine_matmul(*measurements: dict[str, Any]) -> dict[str, Any]:
    """The same for the matmul FLOP/s."""
    best = max(measurements, key=lambda m: m["flops_per_s"])
    return {**best, "samples_gflops": [round(m["flops_per_s"] / 1e9, 1) for m in measurements]}


# --------------------------------------------------------------------------------------------
# what the chapter runs on


def benchmark_model(params: Params) -> tuple[str, Path]:
    """("real", model dir) when performance.model is real and the weights are there, else ("dummy", the
    full-size architecture directory)."""
    p = params.model_path
    has_real = p.is_dir() and any(p.glob("*.safetensors"))
    if params.performance.model == "real" and has_real:
        return "real", p
    if params.dummy_config_path is None:
        raise ValueError(f"{params.source}: performance needs model.dummy_config (the full-size architecture) or "
                         f"performance.model: real with weights in model.path")
    return "dummy", params.dummy_config_path


def setup_rows(params: Params, which: str, model_dir: Path, platform: str, arith: dict[str, Any]) -> list[list[Any]]:
    pp = params.performance
    return [
        [T("权重", "Weights"), T("dummy（真实 0.5B 结构，无权重数值）", "dummy (real 0.5B shape, no weight values)")
         if which == "dummy" else T("真实权重", "real weights")],
        [T("模型目录", "Model dir"), str(model_dir)], [T("平台", "Platform"), platform],
        [T("参数量", "Parameters"), f"{arith['params']:,}"],
        [T("权重字节", "Weight bytes"), f"{arith['weight_bytes'] / 1e9:.3f} GB ({arith['dtype']})"],
        [T("每 token KV 字节", "KV bytes per token"), f"{arith['kv_bytes_per_token']:,}"],
        [T("每个提示 token 的矩阵乘参数", "Matmul weights per prompt token"), f"{arith['matmul_params']:,}"],
        [T("输入/输出长度", "Input / output len"), f"{pp.input_len} / {pp.output_len}"],
        [T("并发", "Concurrency"), str(list(pp.concurrency))],
    ]


def host_settings(params: Params, platform: str) -> dict[str, Any]:
    """The CPU the engine runs on and the settings chosen for it (engine.hostcpu), JSON-ready."""
    flags = hostcpu.cpu_flags()
    cores = hostcpu.usable_cores()
    out: dict[str, Any] = {"vector_isa": hostcpu.vector_isa(flags), "native_bf16": hostcpu.has_native_bf16(flags),
                           "usable_cores": hostcpu.cpu_list(cores), "usable_core_count": len(cores), "choices": []}
    if platform == "cpu":
        out["choices"] = [{"setting": c.setting, "requested": c.requested, "chosen": c.chosen, "why_en": c.why_en,
                           "why_zh": c.why_zh, "env": c.env} for c in cpu_choices(params)]
        out["env_in_effect"] = {k: os.environ.get(k, v) for k, v in platform_env(params).items()}
    return out


def host_rows(host: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [[T("向量指令集", "Vector ISA"), host["vector_isa"], ""],
                             [T("可用核心", "Usable cores"), f"{host['usable_core_count']} ({host['usable_cores']})", ""]]
    for c in host["choices"]:
        rows.append([c["setting"], f"{c['requested']} → {c['chosen']}", T(c["why_zh"], c["why_en"])])
    for k, v in host.get("env_in_effect", {}).items():
        rows.append([k, v, T("引擎启动时的环境变量", "environment of the engine")])
    return rows


def record_metrics(ch: Any, F: dict[str, Any], bw: dict[str, Any], mm: dict[str, Any], on: str) -> None:
    """The chapter's metrics (Chapter.metric), key ones labelled with what they were measured on."""
    keys = {"decode_tok_s", "serve_b1_output_tok_s", "ttft_ms_p50", "tpot_ms_p50"}
    ch.metric("bandwidth_gbs", round(bw["gb_s"], 2), "GB/s", "Memory bandwidth (best observed in this run)",
              "内存带宽（本次运行观测最好值）", timing=True)
    ch.metric("matmul_gflops", round(mm["flops_per_s"] / 1e9, 1), "GFLOP/s", f"Matmul throughput ({mm['dtype']})",
              f"矩阵乘吞吐（{mm['dtype']}）", timing=True)
    for r in F["rows"]:
        if r["value"] is None:
            continue
        ch.metric(r["id"], round(r["value"], 3), r["unit"], r["name_en"], r["name_zh"], key=r["id"] in keys,
                  timing=True, measured_on=on if r["id"] in keys else "")
        if r["pct"] is not None:
            kind_en, kind_zh = ("bandwidth", "带宽") if r["limit_kind"] == "bandwidth" else ("compute", "算力")
            ch.metric(r["id"] + "_pct_of_limit", round(r["pct"], 2), "%", f"% of {kind_en}-bound limit: {r['name_en']}",
                      f"占{kind_zh}上限百分比：{r['name_zh']}", key=r["id"] == "decode_tok_s", timing=True,
                      measured_on=on if r["id"] == "decode_tok_s" else "")
    ch.metric("decode_limit_b1", round(F["limit_b1"], 2), "tok/s", "Bandwidth-bound decode limit, batch 1",
              "带宽约束解码上限（批大小 1）", timing=True)
    ch.metric("prefill_limit", round(F["prefill_limit"], 2), "tok/s", "Compute-bound prefill limit",
              "算力约束预填充上限", timing=True)


def figure_rows(F: dict[str, Any]) -> list[list[Any]]:
    def fmt(v: Optional[float], d: int = 2) -> str:
        return "—" if v is None else f"{v:,.{d}f}"

    kinds = {"bandwidth": T("带宽", "bandwidth"), "compute": T("算力", "compute"), None: "—"}
    return [[T(r["name_zh"], r["name_en"]), fmt(r["value"]), r["unit"], fmt(r["limit"], 1), kinds[r["limit_kind"]],
             fmt(r["pct"], 1), r["tool"]] for r in F["rows"]]


def sweep_rows_table(F: dict[str, Any]) -> list[list[Any]]:
    def fmt(v: Optional[float], d: int = 2) -> str:
        return "—" if v is None else f"{v:,.{d}f}"

    return [[r["concurrency"], fmt(r["output_tok_s"]), fmt(r["limit"], 1), fmt(r["pct"], 1), fmt(r["ttft_ms_p50"], 1),
             fmt(r["tpot_ms_p50"], 1), f"{r['completed']}/{r['failed']}"] for r in F["sweep"]]


def show_sweep_plot(sweep_rows: Sequence[dict[str, Any]], bandwidth_gbs: float, arith: dict[str, Any],
                    context: float, out_dir: Path) -> None:
    """The throughput-vs-concurrency plot, once per language (saved as PNG next to the chapter's artifacts)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from bitcpm_validation.report.display import LANG_KEY, LANGS

    for lang in LANGS:
        fig = plot_sweep(sweep_rows, bandwidth_gbs, arith, context, out_dir / f"throughput_vs_concurrency_{lang}.png",
                         lang=lang)
        display(fig, metadata={LANG_KEY: lang})
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# the benchmark server and the tools

BENCH_WHY = "benchmarks at the full 0.5B shape (dummy weights)"


def start_server(params: Params, evidence: Path, which: str, *, why: str = BENCH_WHY,
                 model_override: Optional[str] = None):
    """The chapter's one benchmark server (`vllm serve`), started fresh on purpose (the run's shared server
    serves another model) and counted in the run's engine starts as kind "benchmark" with `why`. The caller
    stops it (`with ... as srv`)."""
    from bitcpm_validation.engine import server

    return server.start(params, evidence, which, model_override=model_override, why=why,  # type: ignore[arg-type]
                        kind="benchmark")


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
                                start_new_session=True, preexec_fn=processes.die_with_parent)  # dies with us
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:  # timeout or Ctrl-C: leave nothing running
            processes.kill_group(proc.pid)
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


def throughput_args(params: Params, which: str, out_json: Path, num_prompts: int) -> list[str]:
    pp = params.performance
    kw = engine_kwargs(params, which)  # type: ignore[arg-type]
    return ["--model", kw["model"], *serve_flags(kw), "--dataset-name", "random",
            "--input-len", str(pp.input_len), "--output-len", str(pp.output_len),
            "--num-prompts", str(num_prompts), "--output-json", str(out_json)]


def run_throughput(params: Params, which: str, out_json: Path, evidence: Path, num_prompts: int,
                   timeout: float = 1800) -> dict[str, Any]:
    """`vllm bench throughput` (its own offline engine: one more start, counted)."""
    from bitcpm_validation.engine import starts
    from bitcpm_validation.engine.offline import run_dir_of

    args = throughput_args(params, which, out_json, num_prompts)
    wall = _run_child(bench_argv("throughput", args), evidence, _env(params), timeout)
    starts.record(run_dir_of(Path(evidence)), starts.Start(CHAPTER, "benchmark", which,
                                                           "vllm bench throughput (performance.throughput)", None))
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
            "--result-filename", result_file,
            # no test request first: it would put the first prompt in the prefix cache and flatter its TTFT
            "--ready-check-timeout-sec", "0"]


def prompts_for(concurrency: int, num_prompts: int) -> int:
    """Requests per concurrency level: at least num_prompts and two full rounds."""
    return max(num_prompts, 2 * concurrency)


def run_serve_sweep(params: Params, base_url_root: str, model: str, tokenizer: str, result_dir: Path,
                    evidence: Path, concurrency: Sequence[int], timeout: float = 1800,
                    prefix: str = "serve") -> list[dict[str, Any]]:
    """`vllm bench serve` once per concurrency level (one child process); the tool's saved JSON per level."""
    pp = params.performance
    result_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for c in concurrency:
        fname = f"{prefix}_c{c}.json"
        # each level its own random prompts (seed + c): none is served from the prefix cache of an earlier level
        args = serve_args(base_url_root, model, tokenizer, pp.input_len, pp.output_len,
                          prompts_for(c, pp.num_prompts), c, result_dir, fname, params.engine.seed + c)
        jobs.append((c, fname, args))
    spec = result_dir / f"{prefix}_jobs.json"
    spec.write_text(json.dumps([a for _, _, a in jobs]), encoding="utf-8")
    _run_child(bench_argv("serve-sweep", [str(spec)]), evidence, _env(params), timeout)
    out = []
    for c, fname, args in jobs:
        result = json.loads((result_dir / fname).read_text(encoding="utf-8"))
        out.append({"concurrency": c, "command": shown_command("serve", args), "artifact": fname,
                    "result": result, "parsed": parse_serve(result)})
    return out


# --------------------------------------------------------------------------------------------
# parsing the tools' JSON


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


def figures(sweep: Sequence[dict[str, Any]], bandwidth_gbs: float, flops_per_s: float,
            arith: dict[str, Any], input_len: int, output_len: int) -> dict[str, Any]:
    """The chapter's table: each measured figure, the limit it is compared with (bandwidth for decode,
    compute for prefill), and the %. Context for the KV term: the mean during decode, input + output / 2."""
    ctx = input_len + output_len / 2
    lim = lambda b: decode_limit(bandwidth_gbs, arith["weight_bytes"], arith["kv_bytes_per_token"], ctx, b)  # noqa: E731
    pre_lim = prefill_limit(flops_per_s, arith, input_len)
    rows: list[dict[str, Any]] = []

    def add(fid, en, zh, value, unit, limit, limit_kind, tool, note=""):
        rows.append({"id": fid, "name_en": en, "name_zh": zh, "value": value, "unit": unit, "limit": limit,
                     "limit_kind": limit_kind, "pct": pct(value, limit) if limit else None, "tool": tool,
                     "note": note})

    by_c = {int(s["concurrency"]): s for s in sweep}
    c1 = by_c.get(1)
    decode = prefill = None
    if c1:
        s = c1["parsed"]
        tpot, ttft = s["tpot_ms_p50"], s["ttft_ms_p50"]
        decode = 1000.0 / tpot if tpot else None
        prefill = input_len / (ttft / 1000.0) if ttft else None
        add("decode_tok_s", "Batch-1 decode tok/s = 1000 / TPOT p50", "单请求解码速度 = 1000 / TPOT 中位数",
            decode, "tok/s", lim(1), "bandwidth", "bench serve c=1", "decode only, no prefill")
        add("prefill_tok_s", "Prefill tok/s = input_len / TTFT p50", "预填充速度 = 输入长度 / TTFT 中位数",
            prefill, "tok/s", pre_lim, "compute", "bench serve c=1", "compute-bound")
        add("serve_b1_output_tok_s", "Batch-1 output tok/s (end to end)", "单请求输出速度（端到端）",
            s["output_tok_s"], "tok/s", None, None, "bench serve c=1", "prefill included")
        add("ttft_ms_p50", "TTFT p50", "首 token 时延 p50", ttft, "ms", None, None, "bench serve c=1")
        add("ttft_ms_p99", "TTFT p99", "首 token 时延 p99", s["ttft_ms_p99"], "ms", None, None, "bench serve c=1")
        add("tpot_ms_p50", "TPOT p50", "每输出 token 时间 p50", tpot, "ms", None, None, "bench serve c=1")
        add("itl_ms_p50", "ITL p50", "token 间延迟 p50", s["itl_ms_p50"], "ms", None, None, "bench serve c=1")
        add("itl_ms_p99", "ITL p99", "token 间延迟 p99", s["itl_ms_p99"], "ms", None, None, "bench serve c=1")
    for c, s in sorted(by_c.items()):
        add(f"serve_c{c}_output_tok_s", f"Output tok/s at concurrency {c}", f"并发 {c} 输出吞吐",
            s["parsed"]["output_tok_s"], "tok/s", lim(c), "bandwidth", f"bench serve c={c}")
    sweep_rows = [{"concurrency": c, "output_tok_s": s["parsed"]["output_tok_s"], "limit": lim(c),
                   "pct": pct(s["parsed"]["output_tok_s"], lim(c)), "tpot_ms_p50": s["parsed"]["tpot_ms_p50"],
                   "ttft_ms_p50": s["parsed"]["ttft_ms_p50"], "completed": s["parsed"]["completed"],
                   "failed": s["parsed"]["failed"]} for c, s in sorted(by_c.items())]
    return {"rows": rows, "sweep": sweep_rows, "context_tokens": ctx, "limit_b1": lim(1), "prefill_limit": pre_lim,
            "decode_tok_s": decode, "prefill_tok_s": prefill}


def plot_sweep(sweep_rows: Sequence[dict[str, Any]], bandwidth_gbs: float, arith: dict[str, Any], context: float,
               path: Path, lang: str = "en"):
    """Throughput vs concurrency (measured) with the bandwidth-bound limit curve; saved as PNG."""
    import matplotlib.pyplot as plt

    from bitcpm_validation.report.plots import setup

    setup()
    zh = lang == "zh"
    cs = [r["concurrency"] for r in sweep_rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(cs, [r["output_tok_s"] for r in sweep_rows], "o-",
            label="实测（vllm bench serve）" if zh else "measured (vllm bench serve)")
    dense = list(range(1, (max(cs) if cs else 1) + 1))
    ax.plot(dense, [decode_limit(bandwidth_gbs, arith["weight_bytes"], arith["kv_bytes_per_token"], context, b)
                    for b in dense], "--", color="gray", label="带宽上限" if zh else "bandwidth limit")
    ax.set_xlabel("并发数" if zh else "concurrency")
    ax.set_ylabel("输出吞吐 tok/s" if zh else "output tok/s")
    ax.set_yscale("log")
    ax.set_xticks(cs)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return fig


# --------------------------------------------------------------------------------------------
# child-process entry point: python -m bitcpm_validation.chapters.performance <throughput|serve|serve-sweep> ARGS


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
    elif kind in ("throughput", "serve"):
        _bench_main(kind, rest)
    else:
        raise SystemExit(f"unknown benchmark {kind!r}: throughput | serve | serve-sweep")


if __name__ == "__main__":
    main()
