"""The default run's rendered report, one language per file (issue 11): every chapter's heading in the
file's language only, self-contained HTML, only its language outside technical terms and model output,
and PDFs of at most 24 pages for page one and the chapters (4 more for the appendices) with no empty or heading-only page, no number split across lines, no
Python repr and no scientific notation. Runs on the session's e2e run (BITCPM_E2E_RUN_DIR reuses one)."""
from __future__ import annotations

import re

import pytest
import yaml

from bitcpm_validation.report import render as RD
from bitcpm_validation.report import results as R
import rendered_text as RT
from bitcpm_validation.report.contents import all_chapters

pytestmark = pytest.mark.e2e
LANGS = ("zh", "en")


def present():
    return [c for c in all_chapters() if c.notebook.exists()]


def html_of(e2e_run, lang: str) -> str:
    p = RD.report_file(e2e_run["run_dir"], lang, "html")
    assert p.is_file(), e2e_run["output"][-3000:]
    return p.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", LANGS)
def test_every_chapter_heading_in_the_file_language(e2e_run, lang):
    html = html_of(e2e_run, lang)
    for c in present():
        mine, other = (c.title_zh, c.title_en) if lang == "zh" else (c.title_en, c.title_zh)
        assert f"{c.number} · {mine}" in html, c.id
        assert f"{c.number} · {other}" not in html, c.id
        assert f'id="ch-{c.id}"' in html


@pytest.mark.parametrize("lang", LANGS)
def test_html_is_self_contained(e2e_run, lang):
    html = html_of(e2e_run, lang)
    assert RT.external_refs(html) == []
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)


@pytest.mark.parametrize("lang", LANGS)
def test_html_carries_only_its_language(e2e_run, lang):
    leaks = RT.language_leaks(html_of(e2e_run, lang), lang)
    assert leaks == [], f"{len(leaks)} passage(s) in the other language, e.g. {leaks[:5]}"


def pdf_pages(e2e_run, lang: str) -> list[str]:
    """The page texts of the run's PDF in `lang` (skips where Chromium, hence the PDF, is missing)."""
    if not RD.find_chromium():
        pytest.skip("headless Chromium not installed: HTML-only report")
    return RD.pdf_page_texts(RD.report_file(e2e_run["run_dir"], lang, "pdf"))


@pytest.mark.parametrize("lang", LANGS)
def test_pdf_reads_clean(e2e_run, lang):
    assert RD.text_problems(pdf_pages(e2e_run, lang)) == []


def test_model_card_says_what_ran(e2e_run):
    md = (e2e_run["run_dir"] / "report.md").read_text(encoding="utf-8")
    front = yaml.safe_load(md.split("---\n")[1])
    v = front["validation"]
    assert v["device"] and v["engine"] and v["verdict"]
    if v["model_is_stand_in"]:
        assert "base_model" not in front and "bitcpm" not in front["tags"]
    if v["device_kind"] != "npu":
        assert "vllm-ascend" not in front["tags"]


# -- issue 20: text that survives printing, each language whole ----------------------------------------------
@pytest.mark.parametrize("lang", LANGS)
def test_pdf_has_no_midword_break_repr_or_placeholder(e2e_run, lang):
    assert RT.print_problems(pdf_pages(e2e_run, lang)) == []


@pytest.mark.parametrize("lang", LANGS)
def test_no_heading_without_content(e2e_run, lang):
    assert RT.orphan_headings(html_of(e2e_run, lang)) == []


def host_cpu_name(e2e_run) -> str:
    """The CPU's model name as the environment chapter recorded it (/proc/cpuinfo): data, whatever the host."""
    env = R.load(e2e_run["run_dir"] / "results" / "01_environment.json")
    return str(((env.data.get("facts") or {}).get("cpu") or {}).get("model") or "")


def test_chinese_file_has_no_new_english_words(e2e_run):
    """Outside verbatim data, code and the glossary's names (report/glossary.yaml), no English word that is not
    on the glossary's list of words still to translate (issue 20.5: that list only shrinks)."""
    words = RT.english_words(html_of(e2e_run, "zh"))
    host = set(RT.LATIN_WORD.findall(host_cpu_name(e2e_run)))  # data of this host ("Intel(R) Xeon(R) Processor")
    host |= set(RT.LATIN_WORD.findall(e2e_run["run_dir"].name))  # the run's directory name, in the page title (data)
    new = {w: n for w, n in words.items() if w not in set(RT.glossary()["pending"]) | host}
    assert new == {}, (f"{sum(new.values())} English words in the Chinese file that report/glossary.yaml neither "
                       f"allows nor lists as pending: {sorted(new, key=new.get, reverse=True)[:30]}")


def test_glossary_pending_words_are_not_allowed_names():
    """A word is either a name kept in Latin letters or one still to translate, never both."""
    g = RT.glossary()
    assert not set(g["pending"]) & set(g["allow"])


def test_registry_appendix_after_the_chapters(e2e_run):
    html = html_of(e2e_run, "en")
    last = max(html.find(f'id="ch-{c.id}"') for c in present())
    assert html.find('class="bv-table bv-registry"') > last
