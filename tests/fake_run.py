"""Test helpers, no engine: `notebook` writes a throwaway chapter notebook (runner and bad-input tests);
`make_run` a small fake run directory whose results and executed notebook carry untrusted text, rendered
with the project's render module (test_render, test_browser); `put`, `scoped_run` and the rest at the end write
chapter results for the summary's modules (tests/report/test_matrix.py, test_verdicts.py, test_findings.py,
test_page_one.py, test_summary.py)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nbformat

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.contents import all_chapters
from bitcpm_validation.report.matrix import MatrixRow, check_matrix
from bitcpm_validation.report.textsafe import md_code, md_escape, md_table

EVIL = ("<script>alert(1)</script> <img src=x onerror=alert(1)> [x](http://evil) "
        "\x1b[31mred\x1b[0m \u202eevil-bidi \x07bell **bold?** `tick` | pipe")

CELLS = [
    "from bitcpm_validation.report.textsafe import md_escape\n"
    "from bitcpm_validation.report.display import T, show_text, show_table, show_md, show_note\n"
    f"EVIL = {EVIL!r}",
    "show_text(EVIL)",
    'show_table([T("提示", "Prompt"), T("输出", "Output")], [(EVIL, EVIL), ("plain", "plain output")])',
    'show_text("中文输出")',
    'show_md(T("**模型输出：** " + md_escape(EVIL), "**Model output:** " + md_escape(EVIL)))',
    'show_note(T("这是替身模型。", "This is the stand-in model."), kind="warn")',
    'show_table([T("指标", "Metric"), T("值", "Value")], [[T("首 token 延迟", "Time to first token"), "16,898.6 ms"]])',
    "ch_metric = {'id': 'x'}\nch_metric  # a bare value: its repr must not reach the report",
    "from bitcpm_validation.report import plots\nplots.setup()\nimport matplotlib.pyplot as plt\nfrom IPython.display import display\n"
    "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 2, 3], [1, 4, 9])\nax.set_title('latency')\ndisplay(fig)\nplt.close(fig)",
    "from bitcpm_validation.report.display import show_figure, in_lang\n"
    "def draw(lang):\n    fig, ax = plt.subplots(figsize=(3, 2))\n    ax.bar([0, 1], [3, 5])\n"
    "    ax.set_title(in_lang(T('吞吐', 'Throughput'), lang))\n    return fig\nshow_figure(draw)",
]


def executed_notebook(path: Path, chapter_md: str) -> Path:
    """Execute a throwaway notebook (papermill, python3 kernel) that shows EVIL with textsafe helpers."""
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(chapter_md)] + [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = path.with_suffix(".src.ipynb")
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(path), kernel_name="python3", progress_bar=False)
    src.unlink()
    return path


def make_run(run_dir: Path) -> Path:
    for sub in ("results", "evidence", "notebooks", "artifacts"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_dir.name, "profile": "untrusted", "lang": "both", "model": "openbmb/BitCPM4-0.5B",
        "is_stand_in": True, "started": "2026-11-27T10:00:00+00:00", "finished": "2026-11-27T10:01:00+00:00"}))
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.checks = [R.Check("platform", "pass", "Device matches the profile", "设备与配置一致", "cpu", "cpu")]
    env.metrics = [R.Metric("device", "CPU", "", "Device", "设备", key=True)]
    R.save(env, run_dir / "results" / "01_environment.json")
    inf = R.ChapterResult("03_inference", "Inference", "推理测试", status="ok")
    inf.checks = [R.Check("probe_evil", "warn", "Probe " + EVIL, "探针 " + EVIL, "output: " + EVIL, "输出:" + EVIL)]
    inf.metrics = [R.Metric("answer", EVIL, "", "Answer", "回答", key=True)]
    inf.data = {"outputs": [{"prompt": EVIL, "text": EVIL}]}
    inf.card = [{"title_en": "Outputs", "title_zh": "输出",
                 "markdown": md_table(["提示 Prompt", "输出 Output"], [(EVIL, EVIL)]) + "\n\n" + md_code(EVIL) + "\n\n"
                 + "答案 Answer: " + md_escape(EVIL)}]
    R.save(inf, run_dir / "results" / "03_inference.json")
    bad = R.ChapterResult("04_determinism", "Determinism", "推理自洽性", status="failed", error="ValueError: " + EVIL)
    R.save(bad, run_dir / "results" / "04_determinism.json")
    executed_notebook(run_dir / "notebooks" / "03_inference.ipynb", "# 03 · Inference")
    return run_dir

def notebook(path: Path, cid: str, body: str) -> Path:
    """notebooks/<cid>.ipynb-like file: a heading, a `parameters` cell, then `body` (with {cid} filled in)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('params_path = "params/default.yaml"\nrun_dir = "runs/lab"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {cid}"), params, nbformat.v4.new_code_cell(body.format(cid=cid))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = path / f"{cid}.ipynb"
    nbformat.write(nb, p)
    return p


# -- chapter results for the summary's modules ---------------------------------------------------------------
def put(run: Path, chapter: str, status: str, checks=(), metrics=(), **kw) -> None:
    r = R.ChapterResult(chapter=chapter, title_en=chapter, title_zh=chapter, status=status, **kw)
    r.checks = [c if isinstance(c, R.Check) else R.Check(*c) for c in checks]
    r.metrics = [m if isinstance(m, R.Metric) else R.Metric(*m) for m in metrics]
    R.save(r, run / "results" / f"{chapter}.json")


def chk(cid, status, scope, detail="", name=None):
    return R.Check(cid, status, name or cid, (name or cid) + "（中）", detail, detail + "（中）" if detail else "", scope)


def spec(cid, chapter, scope, **kw) -> CheckSpec:
    # built directly, not with checks.define: tests must not add checks to the project's registry
    return CheckSpec(cid, chapter, scope, cid, cid, "criterion", "判据", **kw)


def every_case_run(tmp_path: Path) -> Path:
    """A run with every chapter case: ok, failed, skipped, interrupted, a new chapter, unreadable results, the
    summary's own results (left out); its rows are legacy rows without a scope."""
    put(tmp_path, "01_environment", "ok", checks=[("platform", "pass", "Device matches", "设备一致", "cpu", "cpu")],
        metrics=[("device", "CPU", "", "Device", "设备", True)])
    put(tmp_path, "02_loading", "failed", checks=[("config", "pass", "Config", "配置"), ("weights", "warn", "W", "权重", "slow")],
        metrics=[("init_s", 12.345, "s", "Init", "初始化", True, True), ("other", 1, "", "o", "o")],
        error="RuntimeError: engine died <script>")
    put(tmp_path, "03_inference", "skipped", reason_en="no model", reason_zh="无模型")
    put(tmp_path, "04_determinism", "running")
    put(tmp_path, "42_newthing", "ok", checks=[("x", "fail", "New check", "新检查", "bad")])
    (tmp_path / "results" / "05_chinese.json").write_text("{oops")
    put(tmp_path, "00_summary", "ok", checks=[("s", "pass", "S", "S")])
    return tmp_path


def scoped_run(tmp: Path, checks: dict[str, list[R.Check]], statuses: dict[str, str] | None = None) -> list[MatrixRow]:
    """A run where every registered chapter has results (status ok unless given) with the given checks."""
    statuses = statuses or {}
    for c in all_chapters():
        if c.id != "00_summary" and statuses.get(c.id) != "missing":
            extra = {"error": "boom"} if statuses.get(c.id) == "failed" else {}
            extra |= {"reason_en": "not on this host", "reason_zh": "不适用于此主机"} if statuses.get(c.id) == "skipped" else {}
            put(tmp, c.id, statuses.get(c.id, "ok"), checks=checks.get(c.id, []), **extra)
    return check_matrix(tmp)


SPECS = [spec("kv", "02_loading", "engine"), spec("probe", "03_inference", "model", family=True),
         spec("ratio", "10_quantization", "document"), spec("fidelity", "06_precision", "engine")]
GOOD = {"02_loading": [chk("kv", "pass", "engine")], "03_inference": [chk("probe:paris", "pass", "model")],
        "06_precision": [chk("fidelity", "pass", "engine")], "10_quantization": [chk("ratio", "pass", "document")]}


def env_result(tmp: Path, kind: str, name: str, vllm="0.11.0", ascend=None) -> None:
    r = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    r.metrics = [R.Metric("device", name, "", "Device", "设备", key=True), R.Metric("device_kind", kind, "", "k", "k"),
                 R.Metric("device_count", 1, "", "n", "n")]
    r.data = {"versions": {"vllm": vllm, "vllm_ascend": ascend}}
    R.save(r, tmp / "results" / "01_environment.json")


def fake_params(stand_in: bool, name="openbmb/BitCPM4-0.5B", source=None):
    return SimpleNamespace(profile="p", model=SimpleNamespace(name=name, is_stand_in=stand_in, source=source))
