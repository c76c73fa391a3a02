"""notebooks/00_summary.ipynb executed (papermill, no engine) on a fake stand-in CPU run: page one's
highlighted next-command box, one language per output, and the data keys render/publish read."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from bitcpm_validation.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from bitcpm_validation.report import results as R
from bitcpm_validation.report.display import LANG_KEY

CJK = re.compile(r"[\u4e00-\u9fff（），。：；]")


def fake_stand_in_cpu_run(run: Path) -> None:
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.metrics = [R.Metric("device", "CPU", "", "Device", "设备", key=True, measured_on="— · — · CPU"),
                   R.Metric("device_kind", "cpu", "", "Device kind", "设备类型")]
    env.data = {"versions": {"vllm": "0.11.0"}}
    R.save(env, run / "results" / "01_environment.json")
    inf = R.ChapterResult("03_inference", "Inference", "推理测试", status="ok")
    inf.checks = [R.Check("probe:paris", "not_run", "Probe paris", "探针 paris", "stand-in trained on the probes",
                          "替身模型在探针上训练过", "model"),
                  R.Check("kv", "warn", "KV <b>capacity</b>", "KV 容量", "12 tokens < 64", "12 个 token < 64", "engine")]
    inf.metrics = [R.Metric("latency", 16898.63, "ms", "Latency", "延迟", key=True,
                            measured_on="stand-in · trained ternary · CPU")]
    R.save(inf, run / "results" / "03_inference.json")
    quant = R.ChapterResult("10_quantization", "Quantization", "三值量化", status="ok")
    quant.checks = [R.Check("doc_ratio", "fail", "Original claim: ~90% compression", "原文档：约 90% 压缩",
                            "71.8% smaller", "小 71.8%", "document")]
    R.save(quant, run / "results" / "10_quantization.json")
    failed = R.ChapterResult("07_performance", "Performance", "性能", status="failed", error="RuntimeError: died")
    R.save(failed, run / "results" / "07_performance.json")


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, R.ChapterResult]:
    import papermill as pm

    run = tmp_path_factory.mktemp("run")
    fake_stand_in_cpu_run(run)
    out = run / "00_summary.ipynb"
    pm.execute_notebook(str(NOTEBOOKS_DIR / "00_summary.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(PROJECT_ROOT), parameters={"params_path": "params/default.yaml", "run_dir": str(run)})
    return nbformat.read(out, as_version=4), R.load(run / "results" / "00_summary.json")


def outputs(nb, lang):
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("metadata", {}).get(LANG_KEY) == lang:
                yield "".join(o["data"].get("text/html", "") or o["data"].get("text/markdown", ""))


def test_next_command_box_in_both_languages(executed):
    nb, _ = executed
    for lang in ("zh", "en"):
        boxes = [o for o in outputs(nb, lang) if "bv-note-warn" in o]
        assert len(boxes) == 1, lang
        assert "make report PARAMS=params/ascend-910b3.yaml" in boxes[0]
    assert "This run validates the pipeline, not BitCPM4 on Ascend." in next(o for o in outputs(nb, "en") if "bv-note" in o)


def test_page_one_says_what_and_which_scopes_were_assessed(executed):
    nb, res = executed
    en = "\n".join(outputs(nb, "en"))
    # a verdict per scope with its plain reason, once (no first line that repeats the table)
    assert "not\u00a0assessed" in en and "stand-in trained on the probes" in en and "Assessed: engine" not in en
    # the results card: metric | value | unit | n | measured on | chapter (a link to it)
    card = next(o for o in outputs(nb, "en") if "bv-card" in o)
    assert re.search(r"<td>Latency</td><td[^>]*>16,898.6</td><td>ms</td><td>—</td><td>stand-in</td>", card)
    assert '<a href="#ch-03_inference">03</a>' in card
    assert ">Device<" not in card  # the identity line names the device: no fact twice
    assert "07 Performance" in en and "RuntimeError: died" in en  # a chapter failure is a finding
    assert "Original document&#x27;s claims: 1 checked (❌ 1)" in en or "Original document's claims: 1 checked (❌ 1)" in en  # one line on page one, then the table
    findings = [o for o in outputs(nb, "en") if "bv-findings" in o]
    assert len(findings) == 1 and "RuntimeError: died" in findings[0] and "&lt;b&gt;" in findings[0]
    assert "90% compression" not in findings[0] and "90% compression" in en  # the claim: in its own table
    assert "&lt;b&gt;capacity" in en and "<b>capacity" not in en  # row names are escaped
    for o in outputs(nb, "en"):  # one language per output
        assert not CJK.search(o), o[:200]
    assert res.data["page_one"]["weights"] == "stand-in" and res.data["page_one"]["next_command"]
    assert res.data["scopes"]["model"]["verdict"] == "not_assessed"
    assert res.data["scopes"]["engine"]["verdict"] == "incomplete"  # warn, and chapter 07 failed
    assert res.metric("verdict") == "incomplete" and res.metric("verdict_model") == "not_assessed"
    assert {"findings", "document", "matrix", "registry", "key_metrics", "chapters"} <= set(res.data)
    text = "\n".join(str(o) for c in nb.cells for o in c.get("outputs", []))
    assert "Metric(" not in text and "Check(" not in text and "ScopeVerdict(" not in text
