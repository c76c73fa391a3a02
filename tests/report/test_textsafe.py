"""Untrusted text in HTML, Markdown and the terminal; the matplotlib CJK set-up."""
from __future__ import annotations

from bitcpm_validation.report import textsafe as T


def test_html_escape():
    assert T.html_escape('<script>"x"</script>') == "&lt;script&gt;&quot;x&quot;&lt;/script&gt;"
    assert T.html_escape("a\x1b[1mb\u202e") == "a\\x1b[1mb\\u202e"
    assert T.html_pre("<b>") == '<pre class="untrusted">&lt;b&gt;</pre>'


def test_html_table_escapes_cells_but_not_trusted_columns():
    h = T.html_table(["指标 Metric", "x"], [["<i>a</i>", "<b>✅</b>"]], trusted_cols=(1,))
    assert "&lt;i&gt;a&lt;/i&gt;" in h and "<b>✅</b>" in h


def test_md_text_keeps_code_spans_and_escapes_the_rest():
    assert T.md_text("结束原因 `stop`，*b* <i>") == "结束原因 `stop`，\\*b\\* &lt;i&gt;"
    assert T.md_text("`a|b` | c") == "`a\\|b` \\| c"  # a pipe never ends a table cell
    assert T.md_text("单个 ` 反引号") == T.md_escape("单个 ` 反引号")  # no pair: escaped as text


def test_md_escape_neutralises_markdown_and_html():
    s = T.md_escape('[x](https://e.com) <img src=x onerror=alert(1)> *b* | c\n# h')
    assert "<img" not in s and "](https://" not in s and "\\[x\\]" in s and "\\*b\\*" in s and "\\|" in s
    assert "\n" not in s and "<br>\\# h" in s
    assert "https://" not in s  # no autolink
    assert T.md_escape("0.32.0") == "0.32.0" and T.md_escape("1. x") == "1\\. x"


def test_md_table_one_line_per_row():
    t = T.md_table(["a", "b"], [["x|y", "line1\nline2"]])
    assert t.count("\n") == 2 and "x\\|y" in t and "line1<br>line2" in t


def test_md_code_fence_cannot_be_closed():
    s = T.md_code("a\n```\n<script>")
    assert s.startswith("````text\n") and s.endswith("\n````")


def test_terminal():
    assert T.term_safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert T.one_line("Traceback\n  x\x1b[31m\n") == "Traceback x"
    assert T.term_safe("abcdef", 4) == "abc…"


def test_plots_setup_uses_installed_cjk_font_only():
    import matplotlib

    from bitcpm_validation.report import plots

    font = plots.setup()
    fam = matplotlib.rcParams["font.family"]
    assert fam[0] == "DejaVu Sans"
    if font:
        from matplotlib import font_manager

        assert font in {f.name for f in font_manager.fontManager.ttflist}
        assert fam == ["DejaVu Sans", font]
    else:
        assert fam == ["DejaVu Sans"]


def test_chinese_figure_has_no_missing_glyphs():
    import io
    import warnings

    import matplotlib
    import pytest

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bitcpm_validation.report import plots

    if not plots.setup():
        pytest.skip("no CJK font installed (fonts-noto-cjk)")
    fig, ax = plt.subplots()
    ax.set_title("吞吐量 Throughput")
    ax.plot([1, 2], [3, 4], label="并发 concurrency")
    ax.legend()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    assert not [x for x in w if "missing from font" in str(x.message) or "Glyph" in str(x.message)]


def test_long_tokens_in_table_cells_may_wrap_but_words_and_numbers_not():
    from bitcpm_validation.report.textsafe import cell_html, html_table

    sha = "15fca806d7e074bdddf80e4f6f4cd9a1" * 2
    assert cell_html(sha) == f'<span class="bv-long">{sha}</span>'
    assert cell_html("16,898.6 ms") == "16,898.6 ms" and cell_html("Status") == "Status"
    evil = cell_html("<b>" + "x" * 30)  # escaped first: untrusted text never becomes markup
    assert "<b>" not in evil and "&lt;b&gt;" in evil and evil.startswith('<span class="bv-long">')
    assert '<span class="bv-long">' in html_table(["SHA-256"], [[sha]])


def test_identifiers_wrap_only_after_separators():
    from bitcpm_validation.report.render import wrap_points
    from bitcpm_validation.report.textsafe import break_points, cell_html

    assert break_points("--enforce-eager") == "--enforce-<wbr>eager"  # never after the leading "--"
    assert break_points("VLLM_CPU_OMP") == "VLLM_<wbr>CPU_<wbr>OMP" and break_points("AutoModelForCausalLM") == "AutoModelForCausalLM"
    assert break_points('<code class="a-b">x=1</code>') == '<code class="a-b">x=<wbr>1</code>'  # tags untouched
    assert break_points("a &amp;-b") == "a &amp;-b"
    assert cell_html("runs/20261203-081856-default/x.pdf").startswith('<span class="bv-path">runs/<wbr>')
    assert cell_html("a" * 64).startswith('<span class="bv-long">')  # a hash: no separator, may break anywhere
    html = '<p>stand-in</p><code>models/stand-in</code><pre>vllm serve --enforce-eager</pre><span class="bv-long">a/bbbbbbbbbbbbbbbbbbbbbbbbbbbb</span>'
    assert wrap_points(html) == ('<p>stand-in</p><code>models/<wbr>stand-<wbr>in</code><pre>vllm serve --enforce-<wbr>eager</pre>'
                                 '<span class="bv-path">a/<wbr>bbbbbbbbbbbbbbbbbbbbbbbbbbbb</span>')


def test_appendix_goes_after_the_chapters():
    import nbformat

    from bitcpm_validation.report.render import split_appendix

    md = nbformat.v4.new_markdown_cell
    shown = nbformat.v4.new_code_cell("table", outputs=[nbformat.v4.new_output("stream", text="x")])
    hidden = nbformat.v4.new_code_cell("metrics")  # no output: stays where it ran
    cells = [md("## Findings"), md("## Appendix: check registry\n\ntext"), shown, hidden, md("## More"), md("## 附录：登记表")]
    keep, moved = split_appendix(cells)
    assert [c.source[:9] for c in keep] == ["## Findin", "metrics", "## More"]
    assert [c.source[:5] for c in moved] == ["## Ap", "table", "## 附录"]


def test_print_problems_find_breaks_reprs_and_placeholders():
    from rendered_text import print_problems

    bad = ["run with --enforce-eage\nr and VLLM_CPU_OMP_THREADS_BIN\nD", "A\nutoModelForCausalLM from the stand-i\nn",
           "… max_bytes=None), device_config=cpu, x=StructuredOutputsConfig(backend= …", "thresholds in prompts.yaml grading: . Where"]
    found = print_problems(bad)
    assert sum("printed as" in p for p in found) == 4
    assert any("config repr" in p for p in found) and any("placeholder" in p for p in found)
    good = ["run with --enforce-\neager and VLLM_CPU_\nOMP_THREADS_BIND", "AutoModelForCausalLM from the stand-\nin",
            "torch.cuda.is_available() False; device_config=cpu", "the grading section of prompts.yaml. Where"]
    assert print_problems(good) == []


def test_english_words_outside_verbatim_and_names():
    from rendered_text import english_words

    html = ('<p>本章使用 vLLM 与 CPU，dummy 权重，derived 值</p><code>--enforce-eager model</code>'
            '<span class="bv-verbatim">Hello world</span><p>AutoModelForCausalLM、VLLM_CPU_OMP_THREADS_BIND、params/default.yaml</p>')
    assert english_words(html) == {"dummy": 1, "derived": 1}
    assert english_words("<p>本章 vLLM<wbr>CPU</p><p>dummy</p>") == {"dummy": 1}  # a <wbr> keeps the parser in step
    assert english_words("<p>本章 models/<wbr>stand-<wbr>in</p>") == {}  # one identifier, not the words "stand", "in"
    # a command's KEY=value and path are identifiers; the words around them still count
    assert english_words("<p>请在空闲主机上重新运行：make report RESUME=runs/&lt;id&gt; ONLY=performance</p>") == {
        "make": 1, "report": 1}
    # a Markdown cell's text is read (it lives in the cell's input wrapper); a code cell's input is hidden
    md = ('<div class="jp-Cell jp-MarkdownCell"><div class="jp-Cell-inputWrapper"><p>本章 dummy</p></div></div>'
          '<div class="jp-Cell jp-CodeCell"><div class="jp-Cell-inputWrapper"><div>x = derived</div></div>'
          '<div class="jp-Cell-outputWrapper"><p>输出 real</p></div></div>')
    assert english_words(md) == {"dummy": 1, "real": 1}
    # a hyphenated token with a digit or a path is one identifier, never a shorter word inside it
    assert english_words("<p>top-1 一致率；long-256、full-shape/short、full-shape-6c9f 与 distinct-2；top-k</p>") == {}
    assert english_words("<p>top 与 full 与 'Hello' 与 run's</p>") == {"top": 1, "full": 1, "Hello": 1, "run's": 1}


def test_orphan_headings():
    from rendered_text import orphan_headings

    assert orphan_headings("<h2>Runs and the restart</h2><h2>Next</h2><p>text</p>") == ["Runs and the restart"]
    assert orphan_headings("<h2>A</h2><h3>B</h3><table><tr><td>1</td></tr></table>") == []
    assert orphan_headings('<h2>A</h2><div class="jp-Cell-inputWrapper"><pre>code</pre></div>') == ["A"]


def test_table_cells_show_backquoted_spans_of_project_text_as_code():
    from bitcpm_validation.report.display import T, table_html

    rows = [[T("结束原因 `stop`，<b>", "finish `stop`, <b>"), "`raw` <i>"]]
    zh = table_html(["h"], rows, "zh")
    assert "<td>结束原因 <code>stop</code>，&lt;b&gt;</td>" in zh  # project text: spans as code, the rest escaped
    assert "<td>`raw` &lt;i&gt;</td>" in zh  # not project text (data): escaped as it is, no code
    assert "<code>stop</code>" in table_html(["h"], rows, "en")
    # a header too (a model directory's name as a column)
    assert "<th><code>stand-in</code></th>" in table_html([T("`stand-in`", "stand-in")], [], "zh")
    # a project-written cell in a verbatim column is still picked in the table's language
    assert ">未安装<" in table_html(["h"], [[T("未安装", "not installed")]], "zh", verbatim_cols=(0,))
