"""The summary chapter (report.summary): its stored data, the check matrix and registry tables, engine starts, the
Markdown tables. And notebooks/00_summary.ipynb executed (papermill, no engine) on a fake stand-in CPU run: page
one's highlighted next-command box, one language per output, and the data keys render/publish read."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from bitcpm_validation.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import LANG_KEY, T
from fake_run import chk, spec, scoped_run, SPECS, GOOD, env_result, fake_params, every_case_run


@pytest.fixture
def run(tmp_path) -> Path:
    return every_case_run(tmp_path)


def test_markdown_escapes_untrusted_reason(run):
    md = S.matrix_markdown(M.check_matrix(run))
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert md.count("\n") == len(M.check_matrix(run)) + 1  # one line per row, none broken


def test_summary_data_keys(tmp_path):
    rows_specs = SPECS
    scoped_run(tmp_path, GOOD)
    env_result(tmp_path, "cpu", "CPU")
    d = S.summary_data(tmp_path, fake_params(True), rows_specs)
    assert set(d) >= {"page_one", "scopes", "findings", "document", "matrix", "registry", "key_metrics", "timings",
                      "chapters"}
    assert set(d["scopes"]) == {"engine", "model", "performance", "repository"} and d["scopes"]["engine"]["verdict"] == "pass"
    assert d["registry"][0]["id"] == "kv" and d["registry"][0]["criterion"]["zh"] == "判据"
    R.validate({"chapter": "00_summary", "title_en": "s", "title_zh": "s", "data": d})  # JSON-ready


def test_matrix_folds_long_families_but_never_a_failure(tmp_path):
    why = [f"the model was trained on this prompt: {p}'s text occurs verbatim" for p in ("a", "b", "c", "d")]
    probes = [chk(f"probe:{p}", "not_run", "model", w) for p, w in zip("abcd", why)]
    probes += [chk("probe:e", "fail", "model", "answered noise"), chk("probe:f", "pass", "model", "ok"),
               chk("probe:g", "pass", "model", "ok")]
    rows = scoped_run(tmp_path, GOOD | {"03_inference": probes})
    spec_probe = spec("probe", "03_inference", "model", family=True)
    body = [r for r in S.matrix_display(rows, [spec_probe])[1] if r[0] == ("03 推理测试", "03 Inference") or
            (r[0] == "" and isinstance(r[2], T) and "probe" in r[2].en)]
    assert [(r[1], r[2].en, r[3].en) for r in body] == [
        ("—", "probe (4 items)", "the model was trained on this prompt…"),  # folded, with the reason they share
        ("❌", "probe:e", "answered noise"), ("✅", "probe:f", "ok"), ("✅", "probe:g", "ok")]  # 2 < fold: kept
    assert body[0][2].zh == "probe（4 项）"


def test_registry_appendix_says_why_a_check_cannot_fail():
    specs = [spec("batch", "04_determinism", "engine", worst="warn", worst_reason="no batch-invariance promise",
                  worst_reason_zh="不保证批次不变"), spec("restart", "04_determinism", "engine")]
    specs.append(spec("x<y", "05_chinese", "model"))
    headers, body = S.registry_table(specs)
    assert [h.en for h in headers] == ["Chapter", "Check and criterion", "Scope", "Worst"]
    assert [r[0] for r in body] == ["04", "", "05"] and [r[3] for r in body] == ["⚠️", "❌", "❌"]
    assert body[0][1].en == "<b>batch</b> (<code>batch</code>): criterion. At worst ⚠️: no batch-invariance promise"
    assert body[0][1].zh == "<b>batch</b>（<code>batch</code>）：判据。最差为 ⚠️：不保证批次不变"
    assert body[2][1].en == "<b>x&lt;y</b> (<code>x&lt;y</code>): criterion"  # a trusted cell: every part escaped
    data = S.registry_rows(specs)
    assert data[0]["worst_reason"] == {"zh": "不保证批次不变", "en": "no batch-invariance promise"}
    assert data[1]["worst_reason"] is None


def test_registry_appendix_shows_ids_and_backquoted_settings_as_code():
    """The Chinese appendix carries no English words: a check's id and `settings` in its criterion are code."""
    s = CheckSpec("repeat", "04_determinism", "engine", "repeat", "repeat", "runs `x` and a<b", "运行 `vllm bench serve` 且 a<b")
    _, body = S.registry_table([s])
    assert body[0][1].zh == "<b>repeat</b>（<code>repeat</code>）：运行 <code>vllm bench serve</code> 且 a&lt;b"
    assert body[0][1].en.endswith("runs <code>x</code> and a&lt;b")


def test_engine_starts_table_names_each_start_in_one_language():
    run = {"count": 2, "seconds": 60.0, "failed": 1, "starts": [
        {"chapter": "runner", "kind": "shared-server", "which": "real", "seconds": 32.1, "ok": True,
         "why": "the run's shared engine (every chapter that can share it)"},
        {"chapter": "04_determinism", "kind": "offline", "which": "real", "seconds": 28.0, "ok": True, "why": "restart",
         "mode": "in-process", "phases": {"import": 11.0, "config": 0.5, "model_load": 0.2, "other": 3.25}},
        {"chapter": "07_performance", "kind": "benchmark", "which": "dummy", "seconds": None, "ok": False,
         "why": "a reason the project does not know", "error": "port taken"}]}
    headers, rows = S.engine_starts_table(run)
    assert [h.en for h in headers] == ["Chapter", "Kind", "Weights", "Ready in", "Phases", "Why"]
    assert rows[0][3] == "32.1 s" and rows[0][5].zh.startswith("本次运行共享的引擎") and rows[0][1].en == "shared server"
    assert rows[1][5] == T("重启：与第一次运行的输出比较", "restart")
    assert rows[1][4] == T("进程内：导入 vLLM 11.0 s · 参数与检查 0.5 s · 模型加载 0.2 s · 其余 3.2 s",
                             "in process: import vLLM 11.0 s · config 0.5 s · model load 0.2 s · other 3.2 s")
    assert rows[0][4] == T("—", "—")  # a start recorded before phases were: nothing made up
    assert rows[2][3].en == "failed: port taken" and rows[2][5].zh == rows[2][5].en == "a reason the project does not know"
    assert rows[0][2] == T("真实权重", "real") and rows[2][2] == T("随机权重", "dummy")
    assert rows[0][0] == T("运行器", "runner") and rows[1][0] == "04_determinism"  # the runner's start in Chinese
    synthetic = {"chapter": "02_loading", "kind": "offline", "which": "synthetic", "seconds": 40.0, "ok": True,
                 "why": "the full-size architecture with the synthetic checkpoint (seeded ternary weights, read from files)"}
    _, (row,) = S.engine_starts_table({"starts": [synthetic]})
    assert row[2] == T("合成权重", "synthetic") and row[5].zh.startswith("完整尺寸结构，合成检查点")


def test_a_server_starts_phases_are_named_in_each_language():
    start = {"chapter": "runner", "kind": "shared-server", "which": "real", "seconds": 41.8, "ok": True, "why": "",
             "mode": "", "phases": {"api_server_process": 10.2, "engine_core_process": 10.4, "model_load": 0.0,
                                    "to_healthy": 4.1}}
    assert S.start_phases_text(start) == T(
        "API 服务进程启动 10.2 s · 引擎核心进程启动 10.4 s · 模型加载 0.0 s · 至健康检查通过 4.1 s",
        "API server process 10.2 s · engine core process 10.4 s · model load 0.0 s · until healthy 4.1 s")


def test_matrix_folds_a_chapters_passes_and_keeps_every_warning():
    def row(cid, status, name):
        return M.MatrixRow("02_loading", "02 · Loading", "ok", cid, name, name, status, "why " + name, "why " + name,
                           kind="check", title=T("02 模型加载", "02 Loading"))
    rows = [row("a", "pass", "A"), row("b", "pass", "B"), row("c", "pass", "C"), row("d", "warn", "D"), row("e", "pass", "E")]
    _, body = S.matrix_display(rows)
    assert [b[1] for b in body] == ["✅", "⚠️", "✅"]
    assert body[0][2].en == "3 checks passed" and body[0][3].en == "A, B, C" and body[0][0].en == "02 Loading"
    assert body[1][2].en == "D" and body[2][2].en == "E"  # fewer than three passes in a row stay as they are


def test_matrix_leaves_the_claims_to_their_own_table(tmp_path):
    rows = scoped_run(tmp_path, GOOD | {"10_quantization": [
        R.Check("doc_ratio", "fail", "Original: ~90%", "原文档：约 90%", "71.8%", "71.8%", "document")]})
    names = lambda body: [c.en for r in body for c in r if isinstance(c, T)]  # noqa: E731
    assert "Original: ~90%" in names(S.matrix_display(rows)[1])
    assert "Original: ~90%" not in names(S.matrix_display(rows, document=False)[1])


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
    run = tmp_path_factory.mktemp("run")
    fake_stand_in_cpu_run(run)
    out = run / "00_summary.ipynb"
    pm.execute_notebook(str(NOTEBOOKS_DIR / "00_summary.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(PROJECT_ROOT), parameters={"params_path": "params/default.yaml", "run_dir": str(run)})
    return nbformat.read(out, as_version=4), R.load(run / "results" / "00_summary.json")


def notebook_outputs(nb, lang):
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("metadata", {}).get(LANG_KEY) == lang:
                yield "".join(o["data"].get("text/html", "") or o["data"].get("text/markdown", ""))


def test_next_command_box_in_both_languages(executed):
    nb, _ = executed
    for lang in ("zh", "en"):
        boxes = [o for o in notebook_outputs(nb, lang) if "bv-note-warn" in o]
        assert len(boxes) == 1, lang
        assert "make report PARAMS=params/ascend-910b3.yaml" in boxes[0]
    assert "This run validates the pipeline, not BitCPM4 on Ascend." in next(o for o in notebook_outputs(nb, "en") if "bv-note" in o)


def test_page_one_says_what_and_which_scopes_were_assessed(executed):
    nb, res = executed
    en = "\n".join(notebook_outputs(nb, "en"))
    # a verdict per scope with its plain reason, once (no first line that repeats the table)
    assert "not\u00a0assessed" in en and "stand-in trained on the probes" in en and "Assessed: engine" not in en
    # the results card: metric | value | unit | n | measured on | chapter (a link to it)
    card = next(o for o in notebook_outputs(nb, "en") if "bv-card" in o)
    assert re.search(r"<td>Latency</td><td[^>]*>16,898.6</td><td>ms</td><td>—</td><td>stand-in</td>", card)
    assert '<a href="#ch-03_inference">03</a>' in card
    assert ">Device<" not in card  # the identity line names the device: no fact twice
    assert "07 Performance" in en and "RuntimeError: died" in en  # a chapter failure is a finding
    assert "Original document&#x27;s claims: 1 checked (❌ 1)" in en or "Original document's claims: 1 checked (❌ 1)" in en  # one line on page one, then the table
    findings = [o for o in notebook_outputs(nb, "en") if "bv-findings" in o]
    assert len(findings) == 1 and "RuntimeError: died" in findings[0] and "&lt;b&gt;" in findings[0]
    assert "90% compression" not in findings[0] and "90% compression" in en  # the claim: in its own table
    assert "&lt;b&gt;capacity" in en and "<b>capacity" not in en  # row names are escaped
    for o in notebook_outputs(nb, "en"):  # one language per output
        assert not CJK.search(o), o[:200]
    assert res.data["page_one"]["weights"] == "stand-in" and res.data["page_one"]["next_command"]
    assert res.data["scopes"]["model"]["verdict"] == "not_assessed"
    assert res.data["scopes"]["engine"]["verdict"] == "incomplete"  # warn, and chapter 07 failed
    assert res.metric("verdict") == "incomplete" and res.metric("verdict_model") == "not_assessed"
    assert {"findings", "document", "matrix", "registry", "key_metrics", "chapters"} <= set(res.data)
    text = "\n".join(str(o) for c in nb.cells for o in c.get("outputs", []))
    assert "Metric(" not in text and "Check(" not in text and "ScopeVerdict(" not in text


def test_every_start_reason_the_project_gives_has_its_chinese():
    """The why of every start site (the runner's servers, the chapters' deliberate engines) reads in Chinese in the
    Chinese report: a reason missing from START_REASON_ZH would show as English there."""
    from bitcpm_validation.chapters.performance import BENCH_WHY
    from bitcpm_validation.engine.server import SHARED_WHY

    whys = [why for _kind, why in SHARED_WHY.values()] + list(BENCH_WHY.values())
    missing = [w for w in whys if w not in S.START_REASON_ZH]
    assert not missing, missing
