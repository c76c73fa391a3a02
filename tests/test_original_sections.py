"""Every section of the original validation document has a generated counterpart (issue 11.4).

/work/shared/reference/validation-report-original.md, section by section, against the notebook (and heading)
that now generates it from the run; both languages' narrative exists wherever a heading does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# original document's section -> (notebook, English heading or code that generates it)
SECTIONS = {
    "仓库说明 / model information (name, original model, source, architecture, parameters, dtype)": ("02_loading", "## 1. Model information"),
    "下载 (git lfs clone / ModelScope snapshot_download)": ("02_loading", "loading.download_commands("),
    "检查项 (check matrix with ✅)": ("00_summary", "## Check matrix"),
    "关键指标 (weight load, init, KV cache, speed)": ("00_summary", "S.results_card_table("),
    "组件版本 (versions)": ("01_environment", "## Versions"),
    "设备检测验证 (torch.npu.is_available, device name, memory)": ("01_environment", "## Device"),
    "部署: vllm serve, curl, Python LLM(...)": ("08_serving", "## Deployment guide"),
    "架构参数 (architecture table incl. hidden_act, torch_dtype, bos/eos, tie_word_embeddings)": ("02_loading", "## 5. Architecture"),
    "引擎初始化时间线 (engine initialisation timeline)": ("02_loading", "## 9. Engine initialisation timeline"),
    "vLLM-Ascend 关键日志 (platform plugin, device_config, parameters reset)": ("02_loading", "## 10. Key log lines"),
    "推理测试 / 推理输出 (prompts, outputs, graded)": ("03_inference", "## Outputs and grades"),
    "推理自洽性 (token-level determinism)": ("04_determinism", "## Token-level comparison"),
    "中文能力 (Chinese outputs)": ("05_chinese", "## Per output"),
    "精度 (logits-level comparison, GPU baseline)": ("06_precision", "## Agreement for every pair"),
    "精度: GPU / NPU baseline comparison": ("06_precision", "## Cross-device baselines"),
    "基准 (CEval / MMLU through lm_eval, published numbers)": ("09_accuracy", "## Against the published numbers"),
    "三值量化 (1.58 bit, ~0.3 GB, ~90%, 略快于原始模型)": ("10_quantization", "## The original document's claims"),
    "略快于原始模型 (slightly faster than the original model)": ("07_performance", "## The original document's claim: slightly faster"),
    "注意事项: trust_remote_code": ("11_provenance", "## Remote code (`trust_remote_code`)"),
    "文件列表 (file list with purposes)": ("02_loading", "## 6. Model directory files"),
    "tie_word_embeddings: False (the original's claim, checked)": ("02_loading", "## 12. The original document's claims"),
}


def _cells(chapter: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_original_section_is_generated(section):
    chapter, marker = SECTIONS[section]
    cells = _cells(chapter)
    if marker.startswith("#"):
        en = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "lang-en" in c["metadata"].get("tags", [])
              and any(line.startswith(marker) for line in "".join(c["source"]).splitlines())]
        assert en, f"{section}: no heading {marker!r} in notebooks/{chapter}.ipynb"
        level = marker.split(" ")[0] + " "
        near = cells[max(0, en[0] - 3):en[0] + 3]  # the Chinese heading sits next to the English one
        assert any(c["cell_type"] == "markdown" and "lang-zh" in c["metadata"].get("tags", [])
                   and any(line.startswith(level) for line in "".join(c["source"]).splitlines()) for c in near), \
            f"{section}: the Chinese report has no counterpart heading next to {marker!r} in {chapter}"
    else:
        assert any(marker in "".join(c["source"]) for c in cells if c["cell_type"] == "code"), (section, marker)


def test_change_log_is_the_published_run_history():
    """The original's change log: the published site's index lists every run per profile over time."""
    index = (ROOT / "report" / "publish" / "index.html.j2").read_text(encoding="utf-8")
    assert "history" in index.lower()
