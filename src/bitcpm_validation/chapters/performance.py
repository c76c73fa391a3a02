"""Performance with vLLM's own benchmark tooling, judged against the device's own limits.

One server for every benchmark (`vllm bench serve`, one run per concurrency level; concurrency 1 gives
the batch-1 decode and prefill figures), started fresh on purpose: the full 0.5B shape with the synthetic
checkpoint (model.synthetic: seeded ternary weights as BitCPM4 stores them, read from files; written once into a
cache) unless the profile gives real weights. Speed depends on shape, dtype and device, not on weight values; the
values say nothing of BitCPM4's quality (performance.model: dummy runs the shape with load_format=dummy).
Optionally `vllm bench throughput` (offline, one more engine start) and a base model's server for the original
document's speed claim.

The benchmarks run in a child process through their modules (`vllm.benchmarks.<kind>`: `add_cli_args`,
then `main`) so one import serves every concurrency level; the equivalent `vllm bench` command line is
recorded for the report. Their JSON outputs (`--save-result`, `--output-json`) are what the chapter
parses; no measured figure is typed in by hand.

Validity before verdict (MLPerf's run rules): every timing window records the host's other load
(engine.hostload: CPU time of processes outside the run's tree, steal time, load average), the sample count
behind each percentile, and the warm-up requests sent first. A measurement on a busy host, on too few samples
or without warm-up is "not comparable" (⊘) with its reason, never ❌.

What the figures are judged against (scope performance; `Basis`), the first available of:
- a baseline run on the same device (performance.baseline);
- a reference registered for this device (params/performance-references.yaml: the original document's
  85 tok/s on a 910B3, eager, max_tokens 64);
- what this device reaches for this model, measured in the run without another engine start: the decode
  step of the model the run's shared server already serves (the per-step overhead floor), scaled to the
  benchmarked shape's layer count, plus the time to read the extra weight bytes at the measured bandwidth
  (decode) or to do the prompt's FLOPs at the measured matmul rate (prefill).
The physical roofs stay as context, both measured in the run with torch on the engine's device:
- decode is bandwidth-bound: B x bandwidth / (weight bytes + B x KV bytes read per step);
- prefill is compute-bound: matmul FLOP/s (back-to-back large matmuls, >= 0.2 s of work, so that launch
  latency does not count) / FLOPs per prompt token (2 x non-embedding parameters + causal attention).
Thresholds are per device in params; the checks name the causes the run can see (vector ISA, oneDNN
fallback, allocator preloads, bound cores).
"""
from __future__ import annotations

import contextlib
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

from bitcpm_validation.engine import hostcpu, hostload
from bitcpm_validation.engine.identity import model_source
from bitcpm_validation.engine.base import cpu_choices, engine_kwargs, error_line, model_facts, platform_env
from bitcpm_validation.engine import processes
from bitcpm_validation.engine.server import serve_flags, tail
from bitcpm_validation.params import Params

from bitcpm_validation.report.display import T
from bitcpm_validation.report.stats import supported_percentiles
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
# the checks (scope performance: is it as fast as a healthy device gets for this model, relative to what?)

CHECKS = registered_checks("07_performance")  # this chapter's entries of chapters/checks.yaml
RERUN = "make report RESUME=runs/<id> ONLY=performance"


@dataclass(frozen=True)
class Basis:
    """What a figure is judged against: the tok/s a healthy device reaches for this model, and where it comes from."""

    kind: str  # baseline | reference | floor | roof
    tok_s: float
    en: str
    zh: str


@dataclass(frozen=True)
class Validity:
    """Whether a timing can be compared at all (a quiet host, enough samples, warm-up done), with the reason."""

    comparable: bool
    en: str
    zh: str


WINDOW_ZH = {"roofs and floor": "测量上限与下限期间", "benchmark sweep": "基准扫描期间",
             "roofs after the sweep": "扫描后测量上限期间"}


def validity(loads: dict[str, hostload.HostLoad], samples: Optional[int], warmups: int, busy_cores: float,
             max_steal_share: float, min_samples: int) -> Validity:
    """The run rules a benchmark must meet before its figures are judged: in every timing window (`loads`, by
    name) the host's other load below `busy_cores` (and steal below `max_steal_share`), at least `min_samples`
    requests behind each percentile at concurrency 1, at least one warm-up request first."""
    problems_en, problems_zh, facts_en, facts_zh = [], [], [], []
    for window, load in loads.items():
        host = hostload.judge(load, busy_cores, max_steal_share)
        if not host.comparable:
            problems_en.append(f"{host.reason_en} (during the {window})")
            problems_zh.append(f"{WINDOW_ZH.get(window, window)}{host.reason_zh}")
    if loads and not problems_en:
        worst = max(loads.values(), key=lambda x: x.other_cores)
        facts_en.append(f"quiet host: other processes used at most {worst.other_cores:.2f} of {worst.cores} cores")
        facts_zh.append(f"主机空闲：其他进程最多占用 {worst.cores} 个核心中的 {worst.other_cores:.2f} 个")
    if samples is None or samples < min_samples:
        problems_en.append(f"{samples or 0} requests behind each percentile at concurrency 1 (fewer than "
                           f"performance.min_samples = {min_samples})")
        problems_zh.append(f"并发 1 的每个百分位只有 {samples or 0} 个请求（少于 performance.min_samples = {min_samples}）")
    else:
        facts_en.append(f"{samples} requests per percentile")
        facts_zh.append(f"每个百分位 {samples} 个请求")
    if warmups < 1:
        problems_en.append("no warm-up request before the measured ones (performance.num_iters_warmup: 0)")
        problems_zh.append("测量前没有预热请求（performance.num_iters_warmup: 0）")
    else:
        facts_en.append(f"{warmups} warm-up request(s) first")
        facts_zh.append(f"先发送 {warmups} 个预热请求")
    if problems_en:
        return Validity(False, "; ".join(problems_en), "；".join(problems_zh))
    return Validity(True, "; ".join(facts_en), "；".join(facts_zh))


def _not_comparable(spec: Any, v: Validity) -> Check:
    return spec.not_comparable(f"not comparable: {v.en}; re-run on a quiet host: `{RERUN}`",
                                           f"不可比：{v.zh}；请在空闲主机上重新运行：`{RERUN}`")


def pick_basis(bases: Sequence[Optional[Basis]]) -> Optional[Basis]:
    """The first available of (baseline, registered reference, floor measured in the run): the most specific
    statement of what a healthy device reaches for this model."""
    return next((b for b in bases if b is not None and b.tok_s and b.tok_s > 0), None)


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


def _judge_against(spec: Any, what_en: str, what_zh: str, tok_s: Optional[float], bases: Sequence[Optional[Basis]],
                   device: str, warn_pct: float, fail_pct: float, v: Optional[Validity], causes: Sequence[Cause],
                   roof: Optional[Basis]) -> Check:
    if v is not None and not v.comparable:
        return _not_comparable(spec, v)
    basis = pick_basis(bases)
    if tok_s is None:
        return spec.not_run(f"no {what_en} at concurrency 1 (the sweep has no concurrency 1, or it produced "
                                        f"no tokens)", f"并发 1 没有{what_zh}（扫描未含并发 1 或未生成词元）")
    if basis is None:
        return spec.not_run(
            f"{tok_s:,.1f} tok/s measured, but nothing to judge it against on {device}: no baseline run "
            f"(performance.baseline), no reference registered for this device (performance.references) and no "
            f"overhead floor (the run has no shared server)",
            f"实测 {tok_s:,.1f} tok/s，但在 {device} 上没有可比较的对象：没有基线运行（performance.baseline）、"
            f"没有为该设备登记的参考值（performance.references），也没有开销下限（本次运行没有共享服务）")
    p = 100.0 * tok_s / basis.tok_s
    ctx_en = ctx_zh = ""
    if roof is not None and roof.tok_s:
        ctx_en = f"; {100.0 * tok_s / roof.tok_s:.1f} % of the {roof.en} (context)"
        ctx_zh = f"；为{roof.zh}的 {100.0 * tok_s / roof.tok_s:.1f} %（仅供参考）"
    status = _pct_status(p, warn_pct, fail_pct)
    ce, cz = _causes_text(causes) if status != "pass" else ("", "")
    valid_en = f" [{v.en}]" if v is not None else ""
    valid_zh = f"［{v.zh}］" if v is not None else ""
    return spec.row(
        status, f"{tok_s:,.1f} tok/s is {p:.1f} % of {basis.tok_s:,.1f} tok/s, {basis.en} (warn below {warn_pct:g} %, "
                f"fail below {fail_pct:g} %){ctx_en}{ce}{valid_en}",
        f"{tok_s:,.1f} tok/s，为 {basis.tok_s:,.1f} tok/s（{basis.zh}）的 {p:.1f} %（低于 {warn_pct:g} % 警告，"
        f"低于 {fail_pct:g} % 失败）{ctx_zh}{cz}{valid_zh}")


def judge_decode(decode_tok_s: Optional[float], bases: Sequence[Optional[Basis]], device: str, warn_pct: float,
                 fail_pct: float, validity: Optional[Validity] = None, causes: Sequence[Cause] = (),
                 roof: Optional[Basis] = None) -> Check:
    """Batch-1 decode (1000 / TPOT p50) against what a healthy device reaches for this model (`pick_basis` of
    `bases`), with the bandwidth roof as context; not comparable when the measurement is not valid."""
    return _judge_against(CHECKS["decode_of_limit"], "TPOT", " TPOT", decode_tok_s, bases, device, warn_pct, fail_pct,
                          validity, causes, roof)


def judge_prefill(prefill_tok_s: Optional[float], bases: Sequence[Optional[Basis]], device: str, warn_pct: float,
                  fail_pct: float, validity: Optional[Validity] = None, causes: Sequence[Cause] = (),
                  roof: Optional[Basis] = None) -> Check:
    """Prefill (input_len / TTFT p50 at concurrency 1) against what the device reaches (the overhead floor plus
    the prompt's FLOPs at the measured matmul rate), with the compute roof as context."""
    return _judge_against(CHECKS["prefill_of_compute"], "TTFT", " TTFT", prefill_tok_s, bases, device, warn_pct, fail_pct,
                          validity, causes, roof)


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


def judge_scaling(sweep_rows: Sequence[dict[str, Any]], min_gain: float, validity: Optional[Validity] = None) -> Check:
    """Output tok/s at the highest concurrency against concurrency 1 (figures()["sweep"])."""
    if validity is not None and not validity.comparable:
        return _not_comparable(CHECKS["scales_with_concurrency"], validity)
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
        # the speed at the shape would be the same, but the claim is about BitCPM4's own weights against its base
        return CHECKS["faster_than_base"].not_run(
            f"the ternary figure comes from {WEIGHTS_WORD.get(ternary_weights, WEIGHTS_WORD['dummy']).en} at the full shape, "
            f"not BitCPM4's: set performance.model: real with the BitCPM4 weights in model.path",
            f"三值模型的速度来自完整规模的{WEIGHTS_WORD.get(ternary_weights, WEIGHTS_WORD['dummy']).zh}，不是 BitCPM4 的权重："
            "请设 `performance.model: real`，"
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
                             f"CPU 为 {isa}（无 AVX-512 BF16 / AMX）却用 BF16：把 `engine.dtype` 设为 `auto` 或 `float32`"))
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
                             f"设 `engine.cpu_threads_bind: auto`"))
        for lib in log_facts.get("missing_preloads", []):
            out.append(Cause(f"{lib} not in LD_PRELOAD (vLLM's warning)", f"{lib} 不在 LD_PRELOAD 中（vLLM 的警告）"))
    elif enforce_eager:
        out.append(Cause("eager mode (engine.enforce_eager: true): every step launches its kernels one by one",
                         "即时执行模式（`engine.enforce_eager: true`）：每步逐个启动算子"))
    return out


# --------------------------------------------------------------------------------------------
# model arithmetic


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def model_arith(config_path: Path, dtype: str) -> dict[str, Any]:
    """Parameter count, weight bytes, KV bytes per token and matmul FLOPs per token for a MiniCPM config."""
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"model_arith: dtype {dtype!r} is not one of {sorted(_DTYPE_BYTES)}: pass the engine's "
                         f"resolved dtype (engine.base.engine_dtype)")
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


def prefill_flops_per_token(arith: dict[str, Any], input_len: int) -> float:
    """2 FLOPs per matmul weight per prompt token, plus causal attention (mean context input_len / 2); the LM head
    runs for the last token only and is left out."""
    return 2 * arith["matmul_params"] + arith["attn_flops_per_ctx_token"] * input_len / 2


def prefill_limit(flops_per_s: float, arith: dict[str, Any], input_len: int) -> float:
    """Compute-bound prompt tok/s (the roof: no overhead at all)."""
    return flops_per_s / prefill_flops_per_token(arith, input_len)


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
            "method": "torch: Tensor.copy_ (read + write) and Tensor.sum (read), best of each",
            "method_zh": "torch：`Tensor.copy_`（读 + 写）与 `Tensor.sum`（只读），各取最好一次"}


def _timer(torch, dev: str, sync):
    """A function timing `fn()` in seconds: device events on CUDA / NPU (what the device spent, not the host's
    launch latency), perf_counter around a synchronise elsewhere."""
    events = getattr(getattr(torch, dev, None), "Event", None) if dev in ("cuda", "npu") else None
    if events is not None:
        def timed(fn) -> float:
            start, end = events(enable_timing=True), events(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return timed

    def timed_host(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0
    return timed_host


def measure_matmul(platform: str = "cpu", dtype: str = "bfloat16", n: int = 2048, repeats: int = 3,
                   min_seconds: float = 0.2) -> dict[str, Any]:
    """Dense matmul throughput (n x n x n, the engine's dtype) on the engine's device: k back-to-back matmuls
    timed together, k doubled until they take `min_seconds`, so that one launch's latency does not count; best of
    `repeats` such timings."""
    torch, dev, sync = _device(platform)
    tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    a = torch.randn(n, n, device=dev).to(tdt)
    b = torch.randn(n, n, device=dev).to(tdt)
    out = torch.empty(n, n, device=dev, dtype=tdt)
    timed = _timer(torch, dev, sync)

    def run(k: int):
        for _ in range(k):
            torch.matmul(a, b, out=out)

    run(1)  # warm-up: kernel selection, first-touch allocation
    sync()
    k, t = 1, timed(lambda: run(1))
    while t < min_seconds and k < 1 << 16:
        k *= 2
        t = timed(lambda: run(k))
    best = min([t] + [timed(lambda: run(k)) for _ in range(max(repeats - 1, 0))])
    del a, b, out
    return {"device": dev, "dtype": dtype, "n": n, "repeats": repeats, "matmuls_per_timing": k,
            "seconds_per_timing": best, "flops_per_s": 2 * n ** 3 * k / best,
            "threads": torch.get_num_threads() if dev == "cpu" else None,
            "method": f"torch: {k} back-to-back {n} x {n} @ {n} x {n} in {dtype} per timing (>= {min_seconds:g} s of "
                      f"work, {'device events' if dev in ('cuda', 'npu') else 'perf_counter around a sync'}), "
                      f"2n^3 FLOPs each, best of {repeats}",
            "method_zh": f"torch：每次计时连续 {k} 次 {n} × {n} @ {n} × {n} 矩阵乘（{dtype}，至少 {min_seconds:g} 秒工作量，"
                         f"{'设备事件计时' if dev in ('cuda', 'npu') else '同步前后的 `perf_counter`'}），每次 2n^3 FLOPs，"
                         f"取 {repeats} 次中最好"}


def combine_bandwidth(*measurements: dict[str, Any]) -> dict[str, Any]:
    """Several measurements in one run (before / after the benchmarks): the best observed is the limit."""
    best = max(measurements, key=lambda m: m["gb_s"])
    return {**best, "samples_gb_s": [round(m["gb_s"], 3) for m in measurements]}


def combine_matmul(*measurements: dict[str, Any]) -> dict[str, Any]:
    """The same for the matmul FLOP/s."""
    best = max(measurements, key=lambda m: m["flops_per_s"])
    return {**best, "samples_gflops": [round(m["flops_per_s"] / 1e9, 1) for m in measurements]}


# --------------------------------------------------------------------------------------------
# what a healthy device reaches for this model: the overhead floor, registered references, a baseline run


def measure_step_floor(base_url: str, model: str, prompt_ids: Sequence[int], tokens: int = 16,
                       repeats: int = 3, timeout: float = 120.0) -> dict[str, Any]:
    """The decode step time of the model a running server already serves (the run's shared server: no extra
    engine start): greedy requests for 1 and for 1 + `tokens` tokens (EOS ignored) on the same prompt, the
    difference over `tokens`, best of `repeats`. What one step of this engine on this device costs at least
    (launches, scheduling, sampling, the API), whatever the model's size."""
    import requests

    url = base_url.rstrip("/") + "/completions"

    def one(n: int) -> float:
        t0 = time.perf_counter()
        r = requests.post(url, json={"model": model, "prompt": list(prompt_ids), "max_tokens": n, "temperature": 0,
                                     "ignore_eos": True}, timeout=timeout)
        r.raise_for_status()
        got = int(r.json()["usage"]["completion_tokens"])
        if got != n:
            raise BenchError(f"the step-floor request asked for {n} tokens and got {got}")
        return time.perf_counter() - t0

    one(1 + tokens)  # warm-up
    short = min(one(1) for _ in range(repeats))
    long = min(one(1 + tokens) for _ in range(repeats))
    step_s = max(long - short, 1e-6) / tokens
    return {"base_url": base_url, "model": model, "tokens": tokens, "repeats": repeats, "short_s": short,
            "long_s": long, "step_ms": 1000.0 * step_s,
            "method": f"greedy completions of 1 and {1 + tokens} tokens (EOS ignored) on the run's shared server, "
                      f"best of {repeats} each: step = difference / {tokens}",
            "method_zh": f"在本次运行的共享服务器上贪心补全 1 个与 {1 + tokens} 个词元（忽略 EOS），各取 {repeats} 次中最好："
                         f"每步 = 差值 / {tokens}"}


def floor_bases(step_ms: float, shared_arith: dict[str, Any], arith: dict[str, Any], bandwidth_gbs: float,
                flops_per_s: float, input_len: int) -> tuple[Basis, Basis]:
    """(decode, prefill) a healthy device reaches for the benchmarked shape, from the overhead floor measured on
    the shared server's model: its step time scaled to the benchmarked layer count, plus reading the extra weight
    bytes at the measured bandwidth (one decode step) or the prompt's FLOPs at the measured matmul rate (prefill)."""
    overhead_ms = step_ms * arith["layers"] / max(shared_arith["layers"], 1)
    extra_bytes = max(arith["weight_bytes"] - shared_arith["weight_bytes"], 0)
    decode_ms = overhead_ms + 1000.0 * extra_bytes / (bandwidth_gbs * 1e9)
    prefill_ms = overhead_ms + 1000.0 * input_len * prefill_flops_per_token(arith, input_len) / flops_per_s
    en = (f"what this device reaches: the shared server's decode step {step_ms:,.2f} ms x {arith['layers']} / "
          f"{shared_arith['layers']} layers")
    zh = f"本设备可达到的速度：共享服务的解码步 {step_ms:,.2f} ms × {arith['layers']} / {shared_arith['layers']} 层"
    return (Basis("floor", 1000.0 / decode_ms, en + f" + {extra_bytes / 1e9:.2f} GB of weights at {bandwidth_gbs:,.1f} GB/s",
                  zh + f" + 以 {bandwidth_gbs:,.1f} GB/s 读取 {extra_bytes / 1e9:.2f} GB 权重"),
            Basis("floor", input_len / (prefill_ms / 1000.0),
                  en + f" + {input_len} prompt tokens at {flops_per_s / 1e9:,.0f} GFLOP/s",
                  zh + f" + 以 {flops_per_s / 1e9:,.0f} GFLOP/s 计算 {input_len} 个提示词元"))


REFERENCES_FILE = "params/performance-references.yaml"


def load_references(path: Path) -> list[dict[str, Any]]:
    """The registered references (performance.references): what a healthy device reached for this model."""
    import yaml

    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    class Reference(BaseModel):
        model_config = ConfigDict(extra="forbid")
        device: str = Field(description="matched against the device name, case and spaces ignored")
        platform: str
        model: str
        decode_tok_s: float = Field(gt=0)
        max_tokens: Optional[int] = None
        mode: str = "eager"
        weight_gb: Optional[float] = None
        source: str

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return [Reference(**r).model_dump() for r in data.get("references", [])]
    except (OSError, yaml.YAMLError, ValidationError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: cannot read the performance references ({error_line(e)}): fix the file") from None


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower()).removeprefix("ascend")


def reference_basis(references: Sequence[dict[str, Any]], device_name: str, platform: str) -> Optional[Basis]:
    """The registered reference for this device (e.g. 'Ascend910B3' matches '910B3'), or None."""
    have = _norm(device_name)
    for r in references:
        if r["platform"] == platform and _norm(r["device"]) and _norm(r["device"]) in have:
            return Basis("reference", float(r["decode_tok_s"]),
                         f"the reference registered for {r['device']} ({r['model']}, {r['mode']}, {r['source']})",
                         f"为 {r['device']} 登记的参考值（{r['model']}，{r['mode']}，{r['source']}）")
    return None


def baseline_basis(baseline_run: Optional[str | Path], device_name: str) -> tuple[Optional[Basis], str]:
    """(the batch-1 decode of a baseline run on the same device, "") or (None, why not: "" when none was given)."""
    if not baseline_run:
        return None, ""
    from bitcpm_validation.report import results as R

    path = Path(baseline_run) / "results" / f"{CHAPTER}.json"
    try:
        res = R.load(path)
    except R.ResultsError as e:
        return None, str(e)
    tok_s = res.metric("decode_tok_s")
    theirs = (res.data.get("setup") or {}).get("device_name") or ""
    if not tok_s:
        return None, f"{path}: no decode_tok_s metric"
    if _norm(theirs) != _norm(device_name):
        return None, f"the baseline ran on {theirs or 'an unknown device'}, this run on {device_name}"
    return Basis("baseline", float(tok_s), f"the baseline run {Path(baseline_run).name} on the same device",
                 f"同一设备上的基线运行 {Path(baseline_run).name}"), ""


def floor_on_shared_server(params: Params, run_dir: Path, dtype: str, tokens: int
                           ) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]], str]:
    """(step floor, the shared model's arithmetic, "") measured on the run's shared server (no engine start), or
    (None, None, why not): outside a run (JupyterLab) or when the shared server does not answer."""
    from bitcpm_validation.engine import prompting, shared

    info = shared.read_info(Path(run_dir))
    if info is None:
        return None, None, "this run has no shared server (JupyterLab, or the runner did not start one)"
    if not shared.alive(info):
        return None, None, f"the shared server at {info.base_url} does not answer /health"
    model_dir = Path(str(info.kwargs.get("model")))
    try:
        ids = prompting.prompt_ids("Hello, my name is", model_dir)
        floor = measure_step_floor(info.base_url, info.model, ids, tokens=tokens)
        return floor, model_arith(model_dir / "config.json", dtype), ""
    except Exception as e:  # noqa: BLE001  the floor is one basis among others: say why it is missing
        return None, None, f"the step-floor requests failed: {error_line(e, 200)}"


def bases(params: Params, device: str, platform: str, arith: dict[str, Any], bw: dict[str, Any], mm: dict[str, Any],
          floor: Optional[dict[str, Any]], shared_arith: Optional[dict[str, Any]], limit_b1: float,
          prefill_roof: float) -> dict[str, Any]:
    """Everything the figures are judged against: decode (baseline, registered reference, floor: first available
    wins), prefill (floor), the roofs as context, and why a basis is missing."""
    pp = params.performance
    ref = reference_basis(load_references(params.resolve(pp.references)), device, platform)
    base, base_why = baseline_basis(params.resolve(pp.baseline) if pp.baseline else None, device)
    fl_decode = fl_prefill = None
    if floor is not None and shared_arith is not None:
        fl_decode, fl_prefill = floor_bases(floor["step_ms"], shared_arith, arith, bw["gb_s"], mm["flops_per_s"],
                                            pp.input_len)
    decode = [base, ref, fl_decode]
    return {"decode": decode, "prefill": [fl_prefill],
            "decode_roof": Basis("roof", limit_b1, f"bandwidth roof ({bw['gb_s']:,.1f} GB/s)",
                                 f"带宽上限（{bw['gb_s']:,.1f} GB/s）"),
            "prefill_roof": Basis("roof", prefill_roof, f"compute roof ({mm['flops_per_s'] / 1e9:,.0f} GFLOP/s)",
                                  f"算力上限（{mm['flops_per_s'] / 1e9:,.0f} GFLOP/s）"),
            "baseline_note": base_why,
            "judged_against": judged_against(pick_basis(decode), fl_prefill, limit_b1, [b for b in decode if b])}


def bases_data(b: dict[str, Any]) -> dict[str, Any]:
    """bases() as JSON for the chapter's data."""
    def one(x: Optional[Basis]) -> Optional[dict[str, Any]]:
        return None if x is None else {"kind": x.kind, "tok_s": x.tok_s, "en": x.en, "zh": x.zh}

    return {"decode": [one(x) for x in b["decode"]], "prefill": [one(x) for x in b["prefill"]],
            "decode_roof": one(b["decode_roof"]), "prefill_roof": one(b["prefill_roof"]),
            "baseline_note": b["baseline_note"]}


def device_name(platform: str) -> str:
    """The engine's device by name (torch's for CUDA / NPU, the CPU's model name)."""
    try:
        if platform == "cuda":
            import torch

            return torch.cuda.get_device_name(0)
        if platform == "npu":
            import torch
            import torch_npu  # noqa: F401

            return torch.npu.get_device_name(0)
    except Exception as e:  # noqa: BLE001  a name is context; the platform still says which device kind
        return f"{platform} ({error_line(e, 80)})"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def judged_against(decode: Optional[Basis], prefill: Optional[Basis], roof_tok_s: Optional[float],
                   others: Sequence[Basis] = ()) -> dict[str, str]:
    """One line per language saying what the performance figures were judged against (page one shows it)."""
    if decode is None:
        en, zh = "nothing (no baseline, no registered reference, no floor measured)", "无（没有基线、登记参考值或实测下限）"
    else:
        en = f"decode {decode.tok_s:,.1f} tok/s, {decode.en}"
        zh = f"解码 {decode.tok_s:,.1f} tok/s，{decode.zh}"
        if prefill is not None:
            en += f"; prefill {prefill.tok_s:,.1f} tok/s, {prefill.en}"
            zh += f"；预填充 {prefill.tok_s:,.1f} tok/s，{prefill.zh}"
    for b in others:
        if b is not decode:
            en += f"; also {b.tok_s:,.1f} tok/s, {b.en}"
            zh += f"；另有 {b.tok_s:,.1f} tok/s，{b.zh}"
    if roof_tok_s:
        en += f"; bandwidth roof {roof_tok_s:,.1f} tok/s as context"
        zh += f"；带宽上限 {roof_tok_s:,.1f} tok/s 仅供参考"
    return {"en": en, "zh": zh}


# --------------------------------------------------------------------------------------------
# what the chapter runs on


# What the benchmarked weights are, in words (the setup table, the comparison's column, faster_than_base's reason).
WEIGHTS_WORD = {"synthetic": T("合成权重", "synthetic weights"), "dummy": T("随机权重", "dummy weights"),
                "real": T("真实权重", "real weights")}


def benchmark_model(params: Params) -> tuple[str, Path]:
    """("real", model dir) when performance.model is real and the weights are there; else the full shape:
    (performance.model, or model.full_shape_weights where real weights were asked for but are absent, the directory
    the server loads: the synthetic checkpoint's cache directory, named here, written by identity.model_source)."""
    p = params.model_path
    has_real = p.is_dir() and any(p.glob("*.safetensors"))
    if params.performance.model == "real" and has_real:
        return "real", p
    if params.dummy_config_path is None:
        raise ValueError(f"{params.source}: performance needs model.dummy_config (the full-size architecture) or "
                         f"performance.model: real with weights in model.path")
    which = params.performance.model if params.performance.model != "real" else params.model.full_shape_weights
    return which, model_source(params, which, write=False).model_dir


_SETUP_WEIGHTS = {
    "synthetic": T("合成检查点（真实 0.5B 形状，按 BitCPM4 的存储方式以固定种子生成的三值权重，从文件读入）：速度取决于形状、"
                   "精度与设备，与 BitCPM4 的权重数值无关；输出没有意义",
                   "synthetic checkpoint (the real 0.5B shape, seeded ternary weights laid out as BitCPM4 stores them, read "
                   "from files): speed depends on shape, dtype and device, not on BitCPM4's weight values; outputs mean nothing"),
    "dummy": T("随机权重（真实 0.5B 形状，load_format=dummy，不读取权重文件）",
               "dummy (real 0.5B shape, load_format=dummy, no weight file read)"),
    "real": T("真实权重", "real weights"),
}


def setup_rows(params: Params, which: str, model_dir: Path, platform: str, arith: dict[str, Any],
               checkpoint_s: Optional[float] = None, written: bool = False) -> list[list[Any]]:
    """The benchmark's setup; `checkpoint_s`: the synthetic checkpoint's write (`written`) or cache look-up time."""
    pp = params.performance
    rows = [[T("权重", "Weights"), _SETUP_WEIGHTS.get(which, which)],
            [T("模型目录", "Model dir"), str(model_dir)]]
    if which == "synthetic" and checkpoint_s is not None:
        rows.append([T("合成检查点", "Synthetic checkpoint"),
                     T(f"{'由本章写入' if written else '复用缓存'}，{checkpoint_s:,.1f} 秒",
                       f"{'written by this chapter' if written else 'reused from the cache'} in {checkpoint_s:,.1f} s")])
    return rows + [
        [T("平台", "Platform"), platform],
        [T("参数量", "Parameters"), f"{arith['params']:,}"],
        [T("权重字节", "Weight bytes"), f"{arith['weight_bytes'] / 1e9:.3f} GB ({arith['dtype']})"],
        [T("每个词元 KV 字节", "KV bytes per token"), f"{arith['kv_bytes_per_token']:,}"],
        [T("每个提示词元的矩阵乘参数", "Matmul weights per prompt token"), f"{arith['matmul_params']:,}"],
        [T("输入/输出长度", "Input / output len"), f"{pp.input_len} / {pp.output_len}"],
        [T("并发级别（同时在途的请求数）", "Concurrency levels (requests in flight)"), ", ".join(str(c) for c in pp.concurrency)],
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
        rows.append([T(f"`{c['setting']}`", c["setting"]), T(f"`{c['requested']}` → `{c['chosen']}`", f"{c['requested']} → {c['chosen']}"),
                     T(c["why_zh"], c["why_en"])])  # settings and values are identifiers: code in the Chinese file
    for k, v in host.get("env_in_effect", {}).items():
        rows.append([k, v, T("引擎启动时的环境变量", "environment of the engine")])
    return rows


def record_metrics(ch: Any, F: dict[str, Any], bw: dict[str, Any], mm: dict[str, Any], on: str,
                   loads: Optional[dict[str, hostload.HostLoad]] = None) -> None:
    """The chapter's metrics (Chapter.metric), key ones labelled with what they were measured on; the host's other
    load (the most any timing window saw) and the samples behind the batch-1 percentiles."""
    if loads:
        ch.metric("host_other_cores", round(max(x.other_cores for x in loads.values()), 3), "cores",
                  "Other processes' load during the timings (most of any window)", "计时期间其他进程的负载（各窗口最大值）",
                  timing=True)
    if F.get("samples_c1") is not None:
        ch.metric("samples_c1", F["samples_c1"], "requests", "Requests behind each batch-1 percentile",
                  "单请求每个百分位背后的请求数")
    keys = {"decode_tok_s", "serve_b1_output_tok_s", "ttft_ms_p50", "tpot_ms_p50"}
    ch.metric("bandwidth_gbs", round(bw["gb_s"], 2), "GB/s", "Memory bandwidth (best observed in this run)",
              "内存带宽（本次运行观测最好值）", timing=True)
    ch.metric("matmul_gflops", round(mm["flops_per_s"] / 1e9, 1), "GFLOP/s", f"Matmul throughput ({mm['dtype']})",
              f"矩阵乘吞吐（{mm['dtype']}）", timing=True)
    for r in F["rows"]:
        if r["value"] is None:
            continue
        ch.metric(r["id"], round(r["value"], 3), r["unit"], r["name_en"], r["name_zh"], key=r["id"] in keys,
                  timing=True, measured_on=on if r["id"] in keys else "", note=samples_note(r))
        if r["pct"] is not None:  # the physical roof: context, not the verdict's basis (no key metric)
            kind_en, kind_zh = ("bandwidth", "带宽") if r["limit_kind"] == "bandwidth" else ("compute", "算力")
            ch.metric(r["id"] + "_pct_of_limit", round(r["pct"], 2), "%", f"% of {kind_en}-bound roof: {r['name_en']}",
                      f"占{kind_zh}上限百分比：{r['name_zh']}", timing=True)
    ch.metric("decode_limit_b1", round(F["limit_b1"], 2), "tok/s", "Bandwidth-bound decode limit, batch 1",
              "带宽约束解码上限（批大小 1）", timing=True)
    ch.metric("prefill_limit", round(F["prefill_limit"], 2), "tok/s", "Compute-bound prefill limit",
              "算力约束预填充上限", timing=True)


SAMPLES_OF = {"requests": ("个请求", "requests"), "token gaps": ("个词元间隔", "token gaps")}
STAT_ZH = {"max": "最大值"}


def samples_text(n: Optional[int], of: str = "requests") -> Any:
    """n with what was counted ("8 requests", "248 token gaps"), in both languages; "—" without a count."""
    if n is None:
        return "—"
    zh, en = SAMPLES_OF.get(of, (of, of))
    return T(f"{n:,} {zh}", f"{n:,} {en}")


def samples_note(row: dict[str, Any]) -> str:
    """A metric's note: the samples behind it ("n = 8"), in no language (the metric's name says what was counted)."""
    return "" if row.get("samples") is None else f"n = {row['samples']:,}"


SWEEP_ROW = re.compile(r"^serve_c\d+_output_tok_s$")  # one row per concurrency level: the sweep table's


def figure_rows(F: dict[str, Any], sweep_apart: bool = False) -> list[list[Any]]:
    """The figures table's rows; `sweep_apart`: without the per-concurrency output rows (the sweep table shows them,
    with their roofs)."""
    def fmt(v: Optional[float], d: int = 2) -> str:
        return "—" if v is None else f"{v:,.{d}f}"

    kinds = {"bandwidth": T("带宽", "bandwidth"), "compute": T("算力", "compute"), None: "—"}
    return [[T(r["name_zh"], r["name_en"]), fmt(r["value"]), r["unit"], fmt(r["limit"], 1), kinds[r["limit_kind"]],
             fmt(r["pct"], 1), samples_text(r.get("samples"), r.get("samples_of", "requests")),
             T(f"`{r['tool']}`", r["tool"]) if r.get("tool") else "—"]  # the tool's command: code in the Chinese file
            for r in F["rows"] if not (sweep_apart and SWEEP_ROW.match(r["id"]))]


SWEEP_HEADERS = [T("并发", "Concurrency"), T("输出吞吐（tok/s）", "Output (tok/s)"), T("带宽上限（tok/s）", "Roof (tok/s)"),
                 T("占上限（%）", "% of roof"), "TTFT p50 (ms)", "TPOT p50 (ms)", T("样本数 n", "n"),
                 T("完成 / 失败", "Done / failed")]


def sweep_rows_table(F: dict[str, Any]) -> list[list[Any]]:
    """One row per concurrency level (SWEEP_HEADERS): n is the requests behind each p50."""
    def fmt(v: Optional[float], d: int = 2) -> str:
        return "—" if v is None else f"{v:,.{d}f}"

    return [[r["concurrency"], fmt(r["output_tok_s"]), fmt(r["limit"], 1), fmt(r["pct"], 1), fmt(r["ttft_ms_p50"], 1),
             fmt(r["tpot_ms_p50"], 1), samples_text(r.get("ttft_n", r["completed"])), f"{r['completed']} / {r['failed']}"]
            for r in F["sweep"]]


def plot_load(F: dict[str, Any], out_dir: Optional[Path], lang: str = "en"):
    """Latency (TTFT, TPOT p50) and output throughput against concurrency (report.plots.load_curves), saved as PNG
    next to the chapter's artifacts; None with fewer than three levels (the sweep table stands alone)."""
    from bitcpm_validation.report import plots

    rows = [r for r in F["sweep"] if r.get("output_tok_s") is not None]
    return plots.load_curves([r["concurrency"] for r in rows], [r["ttft_ms_p50"] for r in rows],
                             [r["tpot_ms_p50"] for r in rows], [r["output_tok_s"] for r in rows],
                             [r.get("ttft_n", r["completed"]) for r in rows], lang,
                             out_dir / f"load_vs_concurrency_{lang}.png" if out_dir else None)


def decode_flops_per_token(arith: dict[str, Any], context: float) -> float:
    """2 FLOPs per multiplied weight for one decode token: every layer's matmuls and the LM head (the vocabulary x
    hidden matrix, the embedding's when tied), plus attention over `context` tokens."""
    rest = arith["params"] - arith["matmul_params"]  # V x h (x 2 untied) + the norms (2 h per layer + h)
    hidden = rest // (arith["vocab_size"] * (1 if arith["tied"] else 2) + 2 * arith["layers"] + 1)
    return 2 * (arith["matmul_params"] + arith["vocab_size"] * hidden) + arith["attn_flops_per_ctx_token"] * context


BASIS_WORDS = {"baseline": ("基线运行", "baseline run"), "reference": ("登记参考值", "registered reference"),
               "floor": ("本设备开销下限", "this device's floor")}


def roofline_points(F: dict[str, Any], B: dict[str, Any], arith: dict[str, Any], input_len: int) -> list[dict[str, Any]]:
    """The roofline's points (report.plots.roofline): measured batch-1 decode, output at each higher concurrency and
    prefill at their arithmetic intensity (FLOP per byte moved: weights once per step plus each sequence's KV;
    weights once per prompt), and hollow the decode and prefill a healthy device reaches (what bases() judges by)."""
    ctx = F["context_tokens"]
    dec_f = decode_flops_per_token(arith, ctx)
    pre_f = prefill_flops_per_token(arith, input_len)

    def decode_ai(c: int) -> float:
        return c * dec_f / (arith["weight_bytes"] + c * arith["kv_bytes_per_token"] * ctx)

    pre_ai = input_len * pre_f / arith["weight_bytes"]
    pts: list[dict[str, Any]] = []
    if F.get("decode_tok_s"):
        pts.append({"label": T("解码，并发 1（1000 / TPOT p50）", "decode, concurrency 1 (1000 / TPOT p50)"),
                    "intensity": decode_ai(1), "flops_per_s": F["decode_tok_s"] * dec_f, "measured": True})
    for r in F["sweep"]:
        if r["concurrency"] > 1 and r.get("output_tok_s"):
            c = r["concurrency"]
            pts.append({"label": T(f"输出吞吐，并发 {c}", f"output, concurrency {c}"), "intensity": decode_ai(c),
                        "flops_per_s": r["output_tok_s"] * dec_f, "measured": True})
    if F.get("prefill_tok_s"):
        pts.append({"label": T(f"预填充，{input_len} 个词元（输入长度 / TTFT p50）",
                               f"prefill, {input_len} tokens (input_len / TTFT p50)"),
                    "intensity": pre_ai, "flops_per_s": F["prefill_tok_s"] * pre_f, "measured": True})
    for what, ai, flops, zh, en in (("decode", decode_ai(1), dec_f, "解码", "decode"),
                                    ("prefill", pre_ai, pre_f, "预填充", "prefill")):
        basis = pick_basis(B.get(what) or [])
        if basis is not None:
            wz, we = BASIS_WORDS.get(basis.kind, (basis.kind, basis.kind))
            pts.append({"label": T(f"判据：{zh}，{wz}", f"judged against: {en}, {we}"), "intensity": ai,
                        "flops_per_s": basis.tok_s * flops, "measured": False})
    return pts


def plot_roofline(F: dict[str, Any], B: dict[str, Any], arith: dict[str, Any], bandwidth_gbs: float,
                  flops_per_s: float, input_len: int, out_dir: Optional[Path], lang: str = "en"):
    """The chapter's roofline (measured bandwidth and matmul rate as the roofs), saved as PNG; None with fewer than
    three measured points."""
    from bitcpm_validation.report import plots

    return plots.roofline(bandwidth_gbs, flops_per_s, roofline_points(F, B, arith, input_len), lang,
                          out_dir / f"roofline_{lang}.png" if out_dir else None)


# --------------------------------------------------------------------------------------------
# the benchmark server and the tools

# Why the benchmark server starts, per weights (recorded among the run's engine starts; report.summary translates)
BENCH_WHY = {"synthetic": "benchmarks at the full 0.5B shape (synthetic checkpoint)",
             "dummy": "benchmarks at the full 0.5B shape (dummy weights)",
             "real": "benchmarks on the model's own weights"}


@contextlib.contextmanager
def start_server(params: Params, evidence: Path, which: str, *, why: Optional[str] = None,
                 model_override: Optional[str] = None):
    """`with start_server(...) as srv:` the chapter's benchmark server (`vllm serve`). The full shape's (which
    synthetic | dummy): the one the runner started together with the run's shared engine, where it did (a CPU:
    engine.shared; the runner stops it after this chapter). Otherwise one started here on purpose (the run's
    shared server serves another model, or the device must not hold two), counted in the run's engine starts as
    kind "benchmark" with `why` (default: BENCH_WHY of `which`), and stopped when the block ends."""
    from bitcpm_validation.engine import server

    if model_override is None and which != "real":
        srv, _ = server.shared_server(params, evidence, which)  # type: ignore[arg-type]
        if srv is not None:
            with server.copying_shared_log(srv, evidence):
                yield srv
            return
    why = why or BENCH_WHY.get(which, f"benchmarks ({which} weights)")
    srv = server.start(params, evidence, which, model_override=model_override, why=why,  # type: ignore[arg-type]
                       kind="benchmark")
    try:
        yield srv
    finally:
        srv.stop()


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
    kw = engine_kwargs(params, model_facts(params, which))  # type: ignore[arg-type]
    return ["--model", kw["model"], *serve_flags(kw), "--dataset-name", "random",
            "--input-len", str(pp.input_len), "--output-len", str(pp.output_len),
            "--num-prompts", str(num_prompts), "--output-json", str(out_json)]


def run_throughput(params: Params, which: str, out_json: Path, evidence: Path, num_prompts: int,
                   timeout: float = 1800) -> dict[str, Any]:
    """`vllm bench throughput` (its own offline engine: one more start, counted)."""
    from bitcpm_validation.engine import starts
    from bitcpm_validation.engine.base import run_dir_of

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
            # p100 is the tool's own maximum; --save-detailed keeps each request's TTFT and token gaps (the samples' counts)
            "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99,100",
            "--seed", str(seed), "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", str(result_dir),
            "--result-filename", result_file,
            # no test request first: it would put the first prompt in the prefix cache and flatter its TTFT
            "--ready-check-timeout-sec", "0"]


def prompts_for(concurrency: int, num_prompts: int) -> int:
    """Requests per concurrency level: at least num_prompts and two full rounds."""
    return max(num_prompts, 2 * concurrency)


def run_serve_sweep(params: Params, base_url_root: str, model: str, tokenizer: str, result_dir: Path,
                    evidence: Path, concurrency: Sequence[int], timeout: float = 1800,
                    prefix: str = "serve") -> list[dict[str, Any]]:
    """`vllm bench serve` once per concurrency level (one child process), after `performance.num_iters_warmup`
    warm-up requests of their own (a first level that is not parsed); the tool's saved JSON per level."""
    pp = params.performance
    result_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    warmup = []
    if pp.num_iters_warmup:  # its own prompts (seed + 10007), not parsed: nothing measured is cached from it
        warmup = [serve_args(base_url_root, model, tokenizer, pp.input_len, pp.output_len, pp.num_iters_warmup, 1,
                             result_dir, f"{prefix}_warmup.json", params.engine.seed + 10007)]
    for c in concurrency:
        fname = f"{prefix}_c{c}.json"
        # each level its own random prompts (seed + c): none is served from the prefix cache of an earlier level
        args = serve_args(base_url_root, model, tokenizer, pp.input_len, pp.output_len,
                          prompts_for(c, pp.num_prompts), c, result_dir, fname, params.engine.seed + c)
        jobs.append((c, fname, args))
    spec = result_dir / f"{prefix}_jobs.json"
    spec.write_text(json.dumps(warmup + [a for _, _, a in jobs]), encoding="utf-8")
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
        **serve_samples(result),
    }


def serve_samples(result: dict[str, Any]) -> dict[str, Any]:
    """The samples behind each latency figure, counted as `vllm bench serve` counts them (TTFT: one per completed
    request; TPOT: one per request of more than one token; ITL: one per token gap the stream delivered), and each
    figure's maximum (the tool's p100, else the largest of the detailed samples, else None)."""
    g = lambda k: (float(result[k]) if result.get(k) is not None else None)  # noqa: E731
    done = int(result.get("completed", 0))
    lens, ttfts, itls, lats = (result.get(k) for k in ("output_lens", "ttfts", "itls", "latencies"))
    ok = [i for i, e in enumerate(result.get("errors") or [""] * len(lens or [])) if not e] if lens else []
    if lens and itls is not None:  # --save-detailed: the tool's own lists
        tpot_n = sum(1 for i in ok if lens[i] > 1)
        itl_n = sum(len(itls[i] or []) for i in ok)
    else:  # without the lists: every token after the first is one gap (fewer where the stream bundled tokens)
        out = int(result.get("total_output_tokens") or 0)
        tpot_n = done if out > done else 0
        itl_n = max(out - done, 0)
    mx = {m: g(f"p100_{m}_ms") for m in ("ttft", "tpot", "itl")}
    if mx["ttft"] is None and ttfts and ok:
        mx["ttft"] = 1000.0 * max(ttfts[i] for i in ok)
    if mx["itl"] is None and itls and ok and any(itls[i] for i in ok):
        mx["itl"] = 1000.0 * max(x for i in ok for x in (itls[i] or []))
    if mx["tpot"] is None and lens and ttfts and lats and any(lens[i] > 1 for i in ok):
        mx["tpot"] = 1000.0 * max((lats[i] - ttfts[i]) / (lens[i] - 1) for i in ok if lens[i] > 1)
    return {"ttft_n": done, "tpot_n": tpot_n, "itl_n": itl_n,
            "ttft_ms_max": mx["ttft"], "tpot_ms_max": mx["tpot"], "itl_ms_max": mx["itl"]}


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

    def add(fid, en, zh, value, unit, limit, limit_kind, tool, note="", samples=None, samples_of="requests"):
        rows.append({"id": fid, "name_en": en, "name_zh": zh, "value": value, "unit": unit, "limit": limit,
                     "limit_kind": limit_kind, "pct": pct(value, limit) if limit else None, "tool": tool,
                     "note": note, "samples": samples, "samples_of": samples_of})

    by_c = {int(s["concurrency"]): s for s in sweep}
    c1 = by_c.get(1)
    decode = prefill = None
    samples_c1 = None
    if c1:
        s = c1["parsed"]
        samples_c1 = s["completed"]  # requests behind each TTFT / TPOT percentile (ITL: one per token gap)
        n = {"ttft": s.get("ttft_n", samples_c1), "tpot": s.get("tpot_n", samples_c1),
             "itl": s.get("itl_n", samples_c1 * max(output_len - 1, 0))}
        tpot, ttft = s["tpot_ms_p50"], s["ttft_ms_p50"]
        decode = 1000.0 / tpot if tpot else None
        prefill = input_len / (ttft / 1000.0) if ttft else None
        add("decode_tok_s", "Batch-1 decode tok/s = 1000 / TPOT p50", "单请求解码速度 = 1000 / TPOT 中位数",
            decode, "tok/s", lim(1), "bandwidth", "bench serve c=1", "decode only, no prefill", samples_c1)
        add("prefill_tok_s", "Prefill tok/s = input_len / TTFT p50", "预填充速度 = 输入长度 / TTFT 中位数",
            prefill, "tok/s", pre_lim, "compute", "bench serve c=1", "compute-bound", samples_c1)
        add("serve_b1_output_tok_s", "Batch-1 output tok/s (end to end)", "单请求输出速度（端到端）",
            s["output_tok_s"], "tok/s", None, None, "bench serve c=1", "prefill included", samples_c1)
        names = {"ttft": ("TTFT", "首词元时延"), "tpot": ("TPOT", "每输出词元时间"), "itl": ("ITL", "词元间延迟")}
        for m, (en, zh) in names.items():  # only the percentiles its sample supports (stats.supported_percentiles)
            for stat in supported_percentiles(n[m]):
                add(f"{m}_ms_{stat}", f"{en} {stat}", f"{zh} {STAT_ZH.get(stat, stat)}", s.get(f"{m}_ms_{stat}"), "ms", None, None,
                    "bench serve c=1", samples=n[m], samples_of="token gaps" if m == "itl" else "requests")
    for c, s in sorted(by_c.items()):
        add(f"serve_c{c}_output_tok_s", f"Output tok/s at concurrency {c}", f"并发 {c} 输出吞吐",
            s["parsed"]["output_tok_s"], "tok/s", lim(c), "bandwidth", f"bench serve c={c}", samples=s["parsed"]["completed"])
    sweep_rows = [{"concurrency": c, "output_tok_s": s["parsed"]["output_tok_s"], "limit": lim(c),
                   "pct": pct(s["parsed"]["output_tok_s"], lim(c)), "tpot_ms_p50": s["parsed"]["tpot_ms_p50"],
                   "ttft_ms_p50": s["parsed"]["ttft_ms_p50"], "completed": s["parsed"]["completed"],
                   "failed": s["parsed"]["failed"], "ttft_n": s["parsed"].get("ttft_n", s["parsed"]["completed"]),
                   "tpot_n": s["parsed"].get("tpot_n", s["parsed"]["completed"])} for c, s in sorted(by_c.items())]
    return {"rows": rows, "sweep": sweep_rows, "context_tokens": ctx, "limit_b1": lim(1), "prefill_limit": pre_lim,
            "decode_tok_s": decode, "prefill_tok_s": prefill, "samples_c1": samples_c1}


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
