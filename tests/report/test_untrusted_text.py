"""Issue 7 point 4: prompts and model outputs carrying HTML, Markdown links and control characters appear as
text in report.<lang>.html, in the text of report.<lang>.pdf and in report.md; nothing of them is live markup."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml

from bitcpm_validation.report import render
from fake_run import EVIL, make_run


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
    oc = render.render(run_dir, pdf=render.find_chromium() is not None)
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
