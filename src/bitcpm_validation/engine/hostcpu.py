"""The host CPU as vLLM's CPU backend meets it, and the engine settings chosen for it.

Two settings decide most of a CPU engine's speed (facts sheet §11):

- dtype: vLLM's BF16 linear layers go through oneDNN, which needs AVX-512 BF16 or AMX; without them it
  logs "Failed to create oneDNN linear, fallback to torch linear" and runs ~2x slower than float32.
  `engine.dtype: auto` therefore picks bfloat16 where the CPU has AVX-512 BF16 or AMX, float32 otherwise.
- thread binding: by default vLLM reserves one core per worker for its front end ("reserve_cpu_num=1"),
  which on a 2-core machine halves the cores doing the matmuls. `engine.cpu_threads_bind: auto` binds the
  engine's OpenMP threads to every core this process may use (VLLM_CPU_OMP_THREADS_BIND=<all>: with an
  explicit list vLLM reserves none); `vllm` keeps vLLM's own choice; a CPU list ("0-3", "0,2") is passed as is.

Everything here is cheap (reads /proc/cpuinfo and the affinity mask); nothing imports torch or vLLM.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Optional[str] = None) -> set[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (x86 `flags`, Arm `Features`)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def vector_isa(flags: Iterable[str]) -> str:
    """The widest vector / matrix ISA the engine's kernels can use: AMX, AVX-512 BF16, AVX-512, AVX2, ..."""
    f = set(flags)
    if "amx_bf16" in f or "amx_tile" in f:
        return "AMX"
    if "avx512_bf16" in f:
        return "AVX-512 BF16"
    if "avx512f" in f:
        return "AVX-512"
    if "avx2" in f:
        return "AVX2"
    if "asimd" in f or "sve" in f:
        return "Arm " + ("SVE" if "sve" in f else "NEON")
    return "no AVX2" if f else "unknown"


def has_native_bf16(flags: Iterable[str]) -> bool:
    return any(x in set(flags) for x in BF16_FLAGS)


def usable_cores() -> list[int]:
    """The CPU ids this process may run on (its affinity mask), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_list(cores: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the format VLLM_CPU_OMP_THREADS_BIND reads)."""
    ids = sorted(set(cores))
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class Choice:
    """One engine setting, what was asked for, what was chosen, and why (both languages)."""

    setting: str
    requested: str
    chosen: str
    why_en: str
    why_zh: str
    env: dict[str, str] = field(default_factory=dict)


def choose_dtype(requested: str, flags: Iterable[str]) -> Choice:
    """engine.dtype on a CPU: `auto` -> bfloat16 with AVX-512 BF16 / AMX, float32 otherwise."""
    isa = vector_isa(flags)
    if requested != "auto":
        return Choice("dtype", requested, requested, f"set in the profile (engine.dtype: {requested}); CPU: {isa}",
                      f"由配置指定（`engine.dtype: {requested}`）；CPU：{isa}")
    if has_native_bf16(flags):
        return Choice("dtype", "auto", "bfloat16",
                      f"the CPU has {isa}: oneDNN runs BF16 linear layers natively",
                      f"CPU 支持 {isa}：oneDNN 可原生执行 BF16 线性层")
    return Choice("dtype", "auto", "float32",
                  f"the CPU has {isa} but neither AVX-512 BF16 nor AMX: vLLM's oneDNN BF16 linear falls back to "
                  f"torch (about 2x slower than float32), so float32",
                  f"CPU 为 {isa}，无 AVX-512 BF16 与 AMX：vLLM 的 oneDNN BF16 线性层会回退到 torch（比 float32 慢约 2 倍），"
                  f"故用 float32")


def choose_binding(requested: str, cores: Optional[list[int]] = None) -> Choice:
    """engine.cpu_threads_bind: auto (every usable core, none reserved) | vllm (vLLM's default) | nobind | a list."""
    cores = usable_cores() if cores is None else cores
    if requested == "auto":
        lst = cpu_list(cores)
        return Choice("cpu_threads_bind", "auto", lst,
                      f"the engine's threads are bound to all {len(cores)} usable cores ({lst}); vLLM would reserve "
                      f"one for its front end, which idles while a single client waits",
                      f"引擎线程绑定到全部 {len(cores)} 个可用核心（{lst}）；vLLM 默认为前端预留一个核心，"
                      f"而单个客户端等待时前端几乎空闲",
                      {"VLLM_CPU_OMP_THREADS_BIND": lst})  # an explicit list: vLLM reserves nothing
    if requested == "vllm":
        return Choice("cpu_threads_bind", "vllm", "vLLM default",
                      "vLLM's own binding (it reserves a core per worker for the front end)",
                      "vLLM 自己的绑定方式（每个工作进程为前端预留一个核心）")
    return Choice("cpu_threads_bind", requested, requested, f"set in the profile (engine.cpu_threads_bind: {requested})",
                  f"由配置指定（`engine.cpu_threads_bind: {requested}`）", {"VLLM_CPU_OMP_THREADS_BIND": requested})
