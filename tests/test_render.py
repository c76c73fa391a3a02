"""Rendering a (fake) run: merged notebook, self-contained HTML, PDF with Chinese, report.md model card."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import nbformat
import pytest

from bitcpm_validation.report import render as RD
from bitcpm_validation.report import results as R
from bitcpm_validation.report.textsafe import html_pre, html_table, md_table

EVIL = '<script>alert("x")</script> <img src=x onerror=alert(1)> [click](https://evil.example/a) \x1b[31m'


def chapter_nb(cid: str, title: str, extra_cells=()) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    zh = nbformat.v4.new_markdown_cell("中文说明:这是中文段落。")
    zh.metadata["tags"] = ["lang-zh"]
    en = nbformat.v4.new_markdown_cell("English narrative paragraph.")
    en.metadata["tags"] = ["lang-en"]
    code = nbformat.v4.new_code_cell("print('hello')")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": html_pre(EVIL), "text/plain": "x"}),
        nbformat.v4.new_output("stream", name="stdout", text=EVIL + "\n"),
        nbformat.v4.new_output("display_data", data={"application/javascript": "window.pwned = 1",
                                                     "text/plain": "<js>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), zh, en, code, *extra_cells]
    return nb


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "20260101-000000-test"
    (d / "notebooks").mkdir(parents=True)
    nbs = {"00_summary": "00 · 总结 · Summary", "01_environment": "01 · 运行环境 · Environment",
           "02_loading": "02 · 模型加载 · Loading"}
    for cid, title in nbs.items():
        nbformat.write(chapter_nb(cid, title), d / "notebooks" / f"{cid}.ipynb")
    ok = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    ok.checks.append(R.Check("platform", "pass", "Device matches", "设备一致", EVIL, EVIL))
    ok.metrics.append(R.Metric("device", "CPU", "", "Device", "设备", key=True))
    ok.card.append({"title_en": "Environment", "title_zh": "运行环境", "markdown": md_table(["a", "b"], [["x", EVIL]])})
    R.save(ok, d / "results" / "01_environment.json")
    R.save(R.ChapterResult("02_loading", "Loading", "模型加载", status="failed", error="RuntimeError: " + EVIL),
           d / "results" / "02_loading.json")
    R.save(R.ChapterResult("03_inference", "Inference", "推理测试", status="skipped", reason_en="no model",
                           reason_zh="没有模型"), d / "results" / "03_inference.json")
    R.save(R.ChapterResult("00_summary", "Summary", "总结", status="ok"), d / "results" / "00_summary.json")
    RD.render(d)
    return d


@pytest.fixture(scope="module")
def html(run) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def test_outputs_exist(run):
    for f in ("report.html", "report.md", "report.ipynb"):
        assert (run / f).stat().st_size > 0


def test_summary_first_then_chapters_in_order(run):
    nb = nbformat.read(run / "report.ipynb", as_version=4)
    heads = [c.source for c in nb.cells if c.cell_type == "markdown" and re.search(r"^# \d\d ·", c.source, re.M)]
    assert [re.search(r"# (\d\d)", h).group(1) for h in heads] == ["00", "01", "02", "03"]


def test_headings_in_both_languages(html):
    for zh, en in [("总结", "Summary"), ("运行环境", "Environment"), ("模型加载", "Loading"), ("推理测试", "Inference")]:
        assert zh in html and en in html


def test_no_external_url(html):
    assert RD.external_refs(html) == []
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert "//cdn" not in html
    assert "require.js" not in html and "mathjax" not in html.lower().replace("mathjax_", "")


def test_untrusted_text_is_escaped(html):
    assert '<script>alert("x")</script>' not in html and "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert" in html
    assert "\x1b" not in html
    assert "window.pwned" not in html and "<script" not in html.lower()  # no active output survives


def test_failed_and_skipped_chapters_shown(html):
    assert "This chapter failed" in html and "RuntimeError:" in html
    assert "Chapter skipped" in html and "没有模型" in html


def test_code_hidden_by_default_with_inline_toggle(html):
    assert 'class="jp-Notebook bv-report bv-hide-code"' in html and 'id="bv-code-toggle"' in html
    assert "body.bv-hide-code .jp-CodeCell .jp-Cell-inputWrapper" in html
    assert "@page" in html and "A4" in html and "Noto Sans CJK SC" in html


def test_lang_filter(run, tmp_path):
    zh = RD.merged_notebook(run, lang="zh")
    en = RD.merged_notebook(run, lang="en")
    both = RD.merged_notebook(run, lang="both")
    src = lambda nb: "\n".join(c.source for c in nb.cells)  # noqa: E731
    assert "中文说明" in src(zh) and "English narrative" not in src(zh)
    assert "English narrative" in src(en) and "中文说明" not in src(en)
    assert "中文说明" in src(both) and "English narrative" in src(both)


def test_model_card(run):
    md = (run / "report.md").read_text(encoding="utf-8")
    assert md.startswith("---\n") and "\n---\n" in md[4:]
    import yaml

    front = yaml.safe_load(md.split("---\n")[1])
    assert front["model_name"] == "BitCPM4-0.5B" and "ternary" in front["tags"]
    assert front["validation"]["chapters"]["02_loading"] == "failed"
    assert front["validation"]["key_metrics"]["device"]["value"] == "CPU"
    assert "## 检查结果 · Check matrix" in md and "## 关键指标 · Key metrics" in md
    assert "<script>" not in md and "<img" not in md and "](https://evil" not in md
    assert "this chapter failed" in md


@pytest.mark.skipif(not RD.find_chromium(), reason="headless Chromium not installed (make setup installs it)")
def test_pdf_pages_and_chinese(run):
    from pypdf import PdfReader

    reader = PdfReader(str(run / "report.pdf"))
    assert len(reader.pages) >= 2
    # NFKC: CJK fonts map some glyphs to Kangxi radicals (U+2F8F for 行) in their ToUnicode tables
    text = unicodedata.normalize("NFKC", "".join(p.extract_text() or "" for p in reader.pages))
    assert "运行环境" in text and "总结" in text
    assert "<script>alert" in text  # shown as text, not executed or dropped
    box = reader.pages[0].mediabox
    assert abs(float(box.width) - 595) < 3 and abs(float(box.height) - 842) < 3  # A4 in points


def test_make_offline_strips_everything_external():
    raw = ('<script src="https://cdn.x/require.js"></script><link rel="stylesheet" href="//cdn.y/a.css">'
           '<img src="http://e.com/p.png"><a href="https://huggingface.co/openbmb">hf</a><a href="#local">l</a>'
           '<style>@import url("https://fonts.example/x.css"); .a{background:url(//cdn.z/b.png)}</style>')
    out = RD.make_offline(raw)
    assert RD.external_refs(out) == []
    assert '<a href="#local">' in out and ">hf</a>" in out
    assert "//cdn" not in out
