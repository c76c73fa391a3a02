"""Write notebooks/00_summary.ipynb and notebooks/01_environment.ipynb (no outputs).

The notebooks are the source; this script is how they were generated (re-run it after editing here).
"""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from pathlib import Path

NB = Path(__file__).resolve().parents[1] / "notebooks"


def md(src, *tags):
    c = new_markdown_cell(src)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def code(src, *tags):
    c = new_code_cell(src)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


PARAMS = code('params_path = "params/default.yaml"\nrun_dir = "runs/lab"', "parameters")
META = {"kernelspec": {"name": "python3", "display_name": "Python 3 (bitcpm-validation)", "language": "python"},
        "language_info": {"name": "python"}}


def write(name, cells):
    nb = new_notebook(cells=cells, metadata=META)
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{i:02d}"
    nbformat.write(nb, NB / f"{name}.ipynb")


write("00_summary", [
    md("# 00 · 总结 · Summary"),
    md("本章由本次运行的各章节结果文件自动生成,不手写任何结论:检查矩阵列出每个检查项(✅ 通过、⚠️ 注意、❌ 失败、— 未运行)及其原因;"
       "关键指标表列出各章标记为关键的指标。未运行、失败或跳过的章节同样列出。", "lang-zh"),
    md("This chapter is derived from this run's results files, never written by hand: the check matrix lists every "
       "check (✅ pass, ⚠️ warn, ❌ fail, — not run) with its reason; the key-metrics table lists the metrics each "
       "chapter marked as key. Chapters that did not run, failed or were skipped are listed too.", "lang-en"),
    PARAMS,
    code("from bitcpm_validation.chapter import Chapter\n"
         "from bitcpm_validation import summary as S\n"
         "from bitcpm_validation.textsafe import show_table, show_md\n\n"
         'ch = Chapter.open("00_summary", params_path, run_dir)\n'
         "rows = S.check_matrix(ch.run_dir)\n"
         "counts = S.verdict_counts(rows)\n"
         "km = S.key_metrics(ch.run_dir)"),
    md("## 结论 · Verdict"),
    code('show_md(f"**{S.counts_line(counts)}** — 结论 verdict: **{S.verdict(counts)}**"'
         ' + ("  \\n替身模型:本次运行不是 BitCPM4-0.5B 本身 · stand-in model: this run is not BitCPM4-0.5B itself."'
         ' if ch.params.model.is_stand_in else ""))'),
    md("## 检查矩阵 · Check matrix"),
    code('headers, body = S.matrix_table(rows)\nshow_table(headers, body, cls="bv-table bv-matrix")'),
    md("## 关键指标 · Key metrics"),
    code('headers, body = S.metrics_table(km)\nshow_table(headers, body) if body else show_md("—")'),
    code("for k, n in counts.items():\n"
         '    ch.metric(f"checks_{k}", n, "", f"Checks: {k}", f"检查项:{S.STATUS_LABEL[k]}")\n'
         'ch.metric("verdict", S.verdict(counts), "", "Verdict", "结论", key=False)\n'
         'ch.data["chapters"] = S.chapter_statuses(ch.run_dir)\n'
         '# timing metrics differ between identical runs: kept apart (results.stable_view drops data["timings"])\n'
         'ch.data["key_metrics"] = [dict(chapter=m.chapter, id=m.id, value=m.value, unit=m.unit) for m in km if not m.timing]\n'
         'ch.data["timings"] = {"key_metrics": [dict(chapter=m.chapter, id=m.id, value=m.value, unit=m.unit) for m in km if m.timing]}\n'
         "ch.finish();"),
])

write("01_environment", [
    md("# 01 · 运行环境 · Environment"),
    md("本章回答:报告在哪种设备上运行(昇腾 NPU、CUDA GPU 还是 CPU),并给出证据(`torch.cuda.is_available`、"
       "`torch.npu.is_available`、设备名称与显存、`npu-smi` / `nvidia-smi` 输出);以及所有相关软件版本和影响确定性的环境变量。",
       "lang-zh"),
    md("Which device ran this report (Ascend NPU, CUDA GPU or CPU), with the evidence (`torch.cuda.is_available`, "
       "`torch.npu.is_available`, device name and memory, `npu-smi` / `nvidia-smi` output), every version that "
       "matters, and the environment variables that affect determinism.", "lang-en"),
    PARAMS,
    code("from bitcpm_validation.chapter import Chapter\n"
         "from bitcpm_validation import envprobe\n"
         "from bitcpm_validation.textsafe import show_table, show_text, show_md\n\n"
         'ch = Chapter.open("01_environment", params_path, run_dir)\n'
         "facts = envprobe.probe()\n"
         "ch.evidence(envprobe.evidence_text(facts))\n"
         'ch.data["facts"] = {k: v for k, v in facts.items() if k != "tools"}\n'
         'ch.data["versions"] = facts["versions"]\n'
         "ch.save()"),
    md("## 设备 · Device"),
    code('dev = facts["device"]\n'
         'kind_label = {"npu": "昇腾 NPU · Ascend NPU", "cuda": "NVIDIA GPU (CUDA)", "cpu": "CPU (无加速器 · no accelerator)"}[dev["kind"]]\n'
         'show_md(f"**本报告运行于 · This report ran on: {kind_label}** — {dev[\'name\']}")\n'
         "rows = [\n"
         '    ["torch.cuda.is_available()", dev["cuda_available"]],\n'
         '    ["torch.npu.is_available()", dev["npu_available"] if dev["npu_available"] is not None else "torch_npu 未安装 · not installed"],\n'
         '    ["检测结果 Detected", dev["kind"]],\n'
         '    ["设备数量 Device count", dev["count"]],\n'
         "]\n"
         'rows += [[f"{d[\'kind\']}:{d[\'index\']}", f"{d[\'name\']}, {d[\'memory_gib\']} GiB"] for d in dev["devices"]]\n'
         'show_table(["项目 Item", "值 Value"], rows)\n'
         'ch.metric("device", dev["name"] if dev["kind"] != "cpu" else "CPU", "", "Device", "设备", key=True)\n'
         'ch.metric("device_kind", dev["kind"], "", "Device kind", "设备类型")\n'
         'ch.metric("device_count", dev["count"], "", "Device count", "设备数量")'),
    code('wanted = ch.params.platform\n'
         "ok = envprobe.platform_matches(facts, wanted)\n"
         'ch.check("platform", "pass" if ok else "fail", "Device matches the profile", "设备与配置一致",\n'
         '         detail_en=f"profile platform {wanted}, detected {dev[\'kind\']}",\n'
         '         detail_zh=f"配置要求 {wanted},检测到 {dev[\'kind\']}")\n'
         'ch.check("evidence", "pass" if (dev["kind"] == "cpu" or dev["devices"]) else "warn",\n'
         '         "Device evidence recorded", "设备证据已记录",\n'
         '         detail_en=f"see evidence/01_environment.log ({len(facts[\'tools\'])} tool output(s))",\n'
         '         detail_zh=f"见 evidence/01_environment.log({len(facts[\'tools\'])} 个工具输出)")'),
    md("### 设备工具输出 · Device tool output"),
    code('if facts["tools"]:\n'
         '    for tool, text in facts["tools"].items():\n'
         '        show_md(f"`$ {tool}`")\n'
         "        show_text(text)\n"
         "else:\n"
         '    show_md("本机没有 `npu-smi` 或 `nvidia-smi` · neither `npu-smi` nor `nvidia-smi` is installed on this host.")'),
    md("## 软件版本 · Versions"),
    code('v = facts["versions"]\n'
         "rows = [\n"
         '    ["OS", facts["os"]], ["内核 Kernel", facts["kernel"]], ["架构 Arch", facts["arch"]], ["Python", facts["python"]],\n'
         '    ["torch", v["torch"]], ["torch_npu", v["torch_npu"]], ["vLLM", v["vllm"]], ["vLLM-Ascend", v["vllm_ascend"]],\n'
         '    ["CANN", v["cann"]], ["NPU driver", v["npu_driver"]], ["CUDA (torch build)", v["cuda_runtime"]],\n'
         '    ["NVIDIA driver", v["cuda_driver"]], ["transformers", v["transformers"]], ["lm-eval", v["lm_eval"]],\n'
         '    ["papermill", v["papermill"]], ["bitcpm-validation", v["bitcpm_validation"]],\n'
         "]\n"
         'show_table(["组件 Component", "版本 Version"], [[k, x if x is not None else "—"] for k, x in rows])\n'
         'ch.metric("vllm", v["vllm"], "", "vLLM", "vLLM", key=True)\n'
         'ch.metric("torch", v["torch"], "", "torch", "torch")\n'
         'ch.check("engine_installed", "pass" if v["vllm"] else "fail", "vLLM installed", "已安装 vLLM",\n'
         '         detail_en=str(v["vllm"] or "import metadata not found"), detail_zh=str(v["vllm"] or "未找到"))'),
    md("## CPU 与内存 · CPU and memory"),
    code('c = facts["cpu"]\n'
         'show_table(["项目 Item", "值 Value"], [["CPU", c["model"]], ["逻辑核 Logical cores", c["logical_cores"]],\n'
         '           ["可用核 Usable cores", c["usable_cores"]], ["内存 Memory", f"{c[\'memory_gib\']} GiB"]])\n'
         'ch.metric("cpu_cores", c["usable_cores"], "", "Usable CPU cores", "可用 CPU 核数")\n'
         'ch.metric("memory_gib", c["memory_gib"], "GiB", "Memory", "内存")'),
    md("## 确定性相关环境变量 · Determinism environment variables"),
    md("昇腾上 `LCCL_DETERMINISTIC` / `HCCL_DETERMINISTIC` / `ATB_*` 控制通信与矩阵乘的确定性;CUDA 上 `CUBLAS_WORKSPACE_CONFIG`;"
       "vLLM 的 `VLLM_BATCH_INVARIANT` 让批内结果与单条一致。未设置即为默认值。", "lang-zh"),
    md("On Ascend `LCCL_DETERMINISTIC` / `HCCL_DETERMINISTIC` / `ATB_*` control deterministic communication and "
       "matmuls; on CUDA `CUBLAS_WORKSPACE_CONFIG`; vLLM's `VLLM_BATCH_INVARIANT` makes batched results equal "
       "single ones. Unset means the default.", "lang-en"),
    code('show_table(["变量 Variable", "值 Value"], [[k, x if x is not None else "(未设置 unset)"] for k, x in facts["env"].items()])\n'
         'ch.data["env"] = facts["env"]'),
    code('ch.card("Environment", "运行环境", envprobe.card_markdown(facts))\n'
         "ch.finish();"),
])
print("ok")
