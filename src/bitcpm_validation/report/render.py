"""Render a run, one language at a time: merged notebook -> report.<lang>.html (self-contained) ->
report.<lang>.pdf (Chromium), plus report.md (the model card).

    python -m bitcpm_validation render runs/<id> [--lang zh|en|both]
    render(run_dir) -> RenderOutcome(html={lang: path}, pdf={lang: path}, md, notes)

`lang: both` (params) renders report.zh.* and report.en.*; each HTML links to the other language's
file. The merged notebook puts a one-line header first, then the summary, then the chapters in order.
A failed chapter keeps its executed cells and gets a banner with the error; a chapter without an
executed notebook gets a stub. For each language the renderer drops:

- cells tagged with the other language (lang-zh / lang-en) and cells tagged remove-cell;
- outputs whose metadata `bitcpm_lang` (report.display) names the other language;
- active output (JavaScript, widgets), stderr streams (library notices; the executed notebook keeps
  them) and bare expression values (`execute_result` with only text/plain: a Python repr, never meant
  for a reader).

Everything the notebooks produced is cleaned with nh3 (a maintained HTML sanitizer) before it is
placed into the report's template: no script, no event handler, no external URL survives.
After printing, the PDF's text is checked (`pdf_problems`) for empty or heading-only pages, numbers
split across lines, Python reprs and scientific notation; what it finds is reported as notes.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import nbformat

from bitcpm_validation.paths import REPORT_DIR
from bitcpm_validation.report import results as R
from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import page_one as P1
from bitcpm_validation.report import summary as S
from bitcpm_validation.report import verdicts as V
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters
from bitcpm_validation.report.display import LANG_KEY, LANGS, T, in_lang
from bitcpm_validation.report.textsafe import break_points, html_escape, md_escape, md_table, md_text, visible_controls

TEMPLATE = "bitcpm"
REPORT_TITLE = T("BitCPM4-0.5B 验证报告", "BitCPM4-0.5B validation report")
LANG_NAME = {"zh": "中文", "en": "English"}
HTML_LANG = {"zh": "zh-CN", "en": "en"}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

FRAME = {  # the report's own words around the notebooks
    "run": T("运行", "Run"), "profile": T("配置", "Profile"), "model": T("模型", "Model"),
    "device": T("设备", "Device"), "date": T("日期", "Date"), "commit": T("提交", "Commit"),
    "contents": T("目录", "Contents"),
    "stand_in": T("替身模型，不是 BitCPM4", "stand-in model, not BitCPM4"),
    "show_code": T("显示代码", "Show code"), "hide_code": T("隐藏代码", "Hide code"),
    "unreadable": T("结果文件无法读取", "Results file unreadable"),
    "did_not_run": T("未运行", "Did not run"), "no_results": T("未写入结果", "Wrote no results"),
    "failed": T("本章运行失败", "This chapter failed"),
    "failed_kept": T("失败前记录的检查项保留在下方与总结中。",
                     "Checks recorded before the failure are kept below and in the summary."),
    "interrupted": T("中断：本章未运行完", "interrupted: the chapter never finished"),
    "skipped": T("本章跳过", "Chapter skipped"),
    "no_notebook": T("没有已执行的笔记本，下面只有结果文件中的内容（见总结）。",
                     "No executed notebook: only its results file is shown (see the summary)."),
}


@dataclass
class RenderOutcome:
    html: dict[str, Path] = field(default_factory=dict)  # lang -> report.<lang>.html
    pdf: dict[str, Path] = field(default_factory=dict)  # lang -> report.<lang>.pdf
    md: Optional[Path] = None
    notes: list[str] = field(default_factory=list)  # e.g. "PDF skipped: chromium not installed"


def report_file(run_dir: str | Path, lang: str, ext: str) -> Path:
    """runs/<id>/report.<lang>.<ext> (ext: html | pdf)."""
    return Path(run_dir) / f"report.{lang}.{ext}"


# -- which languages -------------------------------------------------------------------------------------
def report_langs(run_dir: str | Path, lang: Optional[str] = None) -> list[str]:
    """The languages to render: `lang` if given, else the run's params `lang`; `both` -> zh and en."""
    if not lang:
        lang = M.run_info(run_dir).get("lang")
    if not lang:
        try:
            from bitcpm_validation.params import load_params

            lang = load_params(Path(run_dir) / "params.yaml").lang
        except Exception:  # noqa: BLE001  (an old or partial run: render both)
            lang = "both"
    if lang == "both":
        return list(LANGS)
    if lang not in LANGS:
        raise ValueError(f"report language {lang!r} is not one of zh, en, both: pass --lang zh|en|both")
    return [lang]


# -- the merged notebook --------------------------------------------------------------------------------
def _chapter_ids(run_dir: Path) -> list[str]:
    ids = {p.stem for p in (run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    ids |= {p.stem for p in (run_dir / "results").glob("[0-9][0-9]_*.json")}
    ordered = sorted(ids - {SUMMARY_ID})
    return ([SUMMARY_ID] if SUMMARY_ID in ids else []) + ordered


def _info(cid: str) -> ChapterInfo:
    known = {c.id: c for c in all_chapters()}
    return known.get(cid) or ChapterInfo(cid, cid.split("_", 1)[-1].title(), cid.split("_", 1)[-1])


def chapter_heading(cid: str, lang: str) -> str:
    """"03 · 推理测试" / "03 · Inference": the chapter's heading in one language."""
    info = _info(cid)
    return f"{info.number} · {info.title_zh if lang == 'zh' else info.title_en}"


def _keep_cell(cell: Any, lang: str) -> bool:
    tags = set(cell.get("metadata", {}).get("tags", []))
    other = {"zh": "lang-en", "en": "lang-zh"}[lang]
    return other not in tags and "remove-cell" not in tags


_ACTIVE_MIME = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json",
                "application/vnd.jupyter.widget-state+json")


def _keep_output(o: Any, lang: str) -> bool:
    """False for an output the `lang` report must not show (see the module docstring)."""
    out_lang = (o.get("metadata") or {}).get(LANG_KEY)
    if out_lang and out_lang != lang:
        return False
    if o.get("output_type") == "stream" and o.get("name") == "stderr":
        return False
    data = o.get("data")
    if data is not None:
        for m in _ACTIVE_MIME:
            data.pop(m, None)
        if not data:
            return False
        if o.get("output_type") == "execute_result" and set(data) <= {"text/plain"}:
            return False  # the repr of a cell's last expression (e.g. a Metric returned by ch.metric)
    return True


def _for_lang(cell: Any, lang: str) -> Any:
    if cell.get("cell_type") == "code":
        cell["outputs"] = [o for o in cell.get("outputs", []) if _keep_output(o, lang)]
    return cell


_HEADING_ONLY = re.compile(r"^(?:\s*(?:<a [^>]*></a>)?\s*#{1,6} [^\n]*\n?)+\s*$")


def _banner(res: Optional[R.ChapterResult], err: Optional[str], has_nb: bool, lang: str) -> Optional[str]:
    t = lambda k: html_escape(in_lang(FRAME[k], lang))  # noqa: E731
    if err:
        return f'<div class="bv-banner bv-failed">❌ <b>{t("unreadable")}</b><pre>{html_escape(err)}</pre></div>'
    if res is None:
        return f'<div class="bv-banner bv-missing">— <b>{t("no_results" if has_nb else "did_not_run")}</b></div>'
    if res.status in ("failed", "running"):
        msg = res.error or (in_lang(FRAME["interrupted"], lang) if res.status == "running" else "unknown error")
        return (f'<div class="bv-banner bv-failed">❌ <b>{t("failed")}</b><pre>{html_escape(msg)}</pre>'
                f'<div>{t("failed_kept")}</div></div>')
    if res.status == "skipped":
        reason = res.reason_zh if lang == "zh" and res.reason_zh else res.reason_en
        sep = "：" if lang == "zh" else ": "
        return f'<div class="bv-banner bv-skipped">— <b>{t("skipped")}</b>{sep}{html_escape(reason or "")}</div>'
    if not has_nb:
        return f'<div class="bv-banner bv-missing">{t("no_notebook")}</div>'
    return None


def _environment(run_dir: Path) -> Optional[R.ChapterResult]:
    """The environment chapter's results (device, versions), or None if it did not run."""
    try:
        return R.load(run_dir / "results" / "01_environment.json")
    except R.ResultsError:
        return None


def detected(run_dir: str | Path) -> dict[str, Any]:
    """What the run found rather than what it asked for: device (name, kind) and engine (name, version)."""
    env = _environment(Path(run_dir))
    facts = (env.data.get("facts") or {}) if env else {}
    dev = facts.get("device") or {}
    versions = (facts.get("versions") or (env.data.get("versions") if env else None) or {})
    name = dev.get("name") or (env.metric("device") if env else None)
    kind = dev.get("kind")
    if versions.get("vllm_ascend"):
        engine = f"vLLM-Ascend {versions['vllm_ascend']} (vLLM {versions.get('vllm') or '?'})"
    elif versions.get("vllm"):
        engine = f"vLLM {versions['vllm']}"
    else:
        engine = None
    return {"device": name, "device_kind": kind, "engine": engine, "vllm": versions.get("vllm"),
            "vllm_ascend": versions.get("vllm_ascend")}


def _header(run_dir: Path, lang: str) -> str:
    """One compact block above the summary: title, which run (the summary's identity line says what ran: model,
    weights, engine, device; never twice on page one), and a contents line (HTML only)."""
    info = M.run_info(run_dir)
    t = lambda k: html_escape(in_lang(FRAME[k], lang))  # noqa: E731
    date = str(info.get("finished") or info.get("started") or "?")[:16].replace("T", " ")
    # the run, profile and commit are identifiers: code (the Chinese file's text carries no English word)
    facts = [(t("run"), f"<code>{html_escape(run_dir.name)}</code>"), (t("profile"), f"<code>{html_escape(info.get('profile', '?'))}</code>"),
             (t("date"), html_escape(date)), (t("commit"), html_escape(str(info.get("git_commit") or "?"))[:12])]
    meta = "".join(f'<span class="bv-fact"><span class="bv-k">{k}</span> {v}</span>' for k, v in facts)
    toc = "".join(f'<li><a href="#ch-{html_escape(cid)}">{html_escape(chapter_heading(cid, lang))}</a></li>'
                  for cid in _chapter_ids(run_dir))
    return (f'<div class="bv-cover"><h1 class="bv-title">{html_escape(in_lang(REPORT_TITLE, lang))}</h1>'
            f'<div class="bv-facts">{meta}</div>'
            f'<nav class="bv-toc"><b>{t("contents")}</b><ol>{toc}</ol></nav></div>')


_APPENDIX_HEAD = re.compile(r"^\s*(?:<a [^>]*></a>\s*)?##\s+(?:附录|Appendix)\b")
_H1_H2 = re.compile(r"^\s*(?:<a [^>]*></a>\s*)?#{1,2}\s", re.M)


def split_appendix(cells: list[Any]) -> tuple[list[Any], list[Any]]:
    """A chapter's cells without its appendices, and the appendices (a `## 附录…` / `## Appendix…` section or a
    cell tagged `bv-appendix`, up to the next level-1/2 heading): the report puts them after the chapters."""
    keep: list[Any] = []
    moved: list[Any] = []
    inside = False
    for c in cells:
        tags = c.get("metadata", {}).get("tags", [])
        src = c.source if c.cell_type == "markdown" else ""
        if "bv-appendix" in tags or _APPENDIX_HEAD.match(src):
            inside = True
        elif src and _H1_H2.match(src):
            inside = False
        # a code cell without output (hidden) stays where it ran
        (moved if inside and (c.cell_type != "code" or c.get("outputs")) else keep).append(c)
    return keep, moved


def merged_notebook(run_dir: str | Path, lang: Optional[str] = None) -> nbformat.NotebookNode:
    """One notebook in one language: header, then the summary, then every chapter (executed or stub)."""
    run_dir = Path(run_dir)
    lang = lang or report_langs(run_dir)[0]
    if lang not in LANGS:
        raise ValueError(f"merged_notebook renders one language (zh or en), got {lang!r}")
    merged = nbformat.v4.new_notebook()
    merged.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"},
                       "title": f"{in_lang(REPORT_TITLE, lang)} · {run_dir.name}"}
    merged.cells.append(nbformat.v4.new_markdown_cell(_header(run_dir, lang)))
    appendix: list[Any] = []
    for n, cid in enumerate(_chapter_ids(run_dir)):
        nb_path = run_dir / "notebooks" / f"{cid}.ipynb"
        rpath = run_dir / "results" / f"{cid}.json"
        res, err = M.load_chapter(rpath if rpath.exists() else None)
        cells: list[Any] = []
        if nb_path.exists():
            try:
                nb = nbformat.read(nb_path, as_version=4)
                cells = [_for_lang(copy.deepcopy(c), lang) for c in nb.cells if _keep_cell(c, lang)]
            except Exception as e:  # noqa: BLE001
                err = err or f"executed notebook unreadable: {type(e).__name__}: {e}"
        # the notebook's own title line may carry both languages: the report writes its own
        if cells and cells[0].cell_type == "markdown" and cells[0].source.lstrip().startswith("# "):
            rest = cells[0].source.lstrip().split("\n", 1)
            if len(rest) > 1 and rest[1].strip():
                cells[0].source = rest[1]
            else:
                cells.pop(0)
        cells, moved = split_appendix(cells)
        appendix += moved
        head = nbformat.v4.new_markdown_cell(f'<a id="ch-{html_escape(cid)}"></a>\n\n# {chapter_heading(cid, lang)}')
        # every chapter but the first starts a page (the first follows the header on page one)
        head.metadata["tags"] = ["bv-heading-only"] + (["bv-chapter-start"] if n else [])
        out = [head]
        b = _banner(res, err, nb_path.exists(), lang)
        if b:
            out.append(nbformat.v4.new_markdown_cell(b))
        for c in cells:
            if c.cell_type == "markdown" and _HEADING_ONLY.match(c.source):
                c.setdefault("metadata", {}).setdefault("tags", []).append("bv-heading-only")
            elif c.cell_type == "code" and not c.get("outputs"):
                c.setdefault("metadata", {}).setdefault("tags", []).append("bv-no-output")
        out += cells
        merged.cells.extend(out)
    if appendix:  # after every chapter, set off like a chapter (a forced page break here left an empty last page)
        appendix[0].setdefault("metadata", {}).setdefault("tags", []).append("bv-chapter-start")
        merged.cells.extend(appendix)
    for i, c in enumerate(merged.cells):
        c["id"] = f"c{i:04d}"
    return merged


# -- HTML ------------------------------------------------------------------------------------------------
_NH3_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "nav", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
}
_NH3_ATTRS = {
    "*": {"class", "id", "title", "lang", "dir"},
    "a": {"href", "name"}, "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}, "ol": {"start"}, "details": {"open"},
}
_DATA_IMAGE = re.compile(r"^data:image/(?:png|jpeg|gif|webp|svg\+xml);base64,", re.I)


def _local_only(tag: str, attr: str, value: str) -> Optional[str]:
    """nh3 attribute filter: URLs stay inside the file (anchors, inline images); anything else is dropped."""
    if attr == "href":
        return value if value.startswith("#") else None
    if attr == "src":
        return value if _DATA_IMAGE.match(value) else None
    return value


def clean_html(fragment: str) -> str:
    """Notebook-made HTML made safe for the report with nh3: allowed tags and attributes only, no script,
    style, event handler or external URL (links keep their text; inline data: images stay)."""
    import nh3

    return nh3.clean(fragment, tags=_NH3_TAGS, attributes=_NH3_ATTRS, attribute_filter=_local_only,
                     url_schemes={"data"}, link_rel=None, strip_comments=True)


def html_report(nb: nbformat.NotebookNode, title: str, lang: str = "en",
                switch: Optional[tuple[str, str]] = None) -> str:
    """The report's HTML for one language: nbconvert (template report/bitcpm) with every notebook-made
    part cleaned by nh3. `switch`: (href, label) of the other language's file."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(REPORT_DIR)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.language_code = HTML_LANG.get(lang, "en")
    # the template's per-cell sanitizer: nh3 with the report's own rules (nbconvert's default is bleach, a third of
    # the rendering time, and the <main> content is cleaned by nh3 once more below)
    exporter.register_filter("clean_html", clean_html)
    resources = {"metadata": {"name": title},
                 "bitcpm_css": (REPORT_DIR / TEMPLATE / "report.css").read_text(encoding="utf-8"),
                 "bv": {"lang": lang, "show_code": in_lang(FRAME["show_code"], lang),
                        "hide_code": in_lang(FRAME["hide_code"], lang),
                        "switch_href": switch[0] if switch else "", "switch_label": switch[1] if switch else ""}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    head, sep, rest = body.partition("<main>")
    content, sep2, tail = rest.rpartition("</main>")
    if not (sep and sep2):
        raise RuntimeError("report template lost its <main> element: cannot isolate the notebook content to clean")
    return head + sep + wrap_points(clean_html(content)) + sep2 + tail


_CODE_LIKE = re.compile(r"(<(code|pre)\b[^>]*>)(.*?)(</\2>)|<span class=\"bv-long\">([^<]*)</span>", re.S)


def wrap_points(html: str) -> str:
    """Commands and identifiers in code, preformatted text and long table tokens wrap only after / - _ =
    (a `<wbr>` there; CSS breaks them nowhere else), never mid-word ("--enforce-eage r"). Runs after nh3,
    which would drop `<wbr>`; the text is already escaped."""
    def fix(m: re.Match) -> str:
        if m.group(1):
            return m.group(1) + break_points(m.group(3)) + m.group(4)
        tok = m.group(5)
        marked = break_points(tok)
        return f'<span class="{"bv-path" if marked != tok else "bv-long"}">{marked}</span>'

    return _CODE_LIKE.sub(fix, html)


# -- PDF -------------------------------------------------------------------------------------------------
def find_chromium() -> Optional[str]:
    env = os.environ.get("BITCPM_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


def print_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 180) -> Optional[str]:
    """Print html_path to pdf_path with headless Chromium. Returns None or a one-line reason it failed."""
    exe = find_chromium()
    if not exe:
        return "PDF skipped: headless Chromium is not installed (make setup installs it as root with apt-get); HTML only"
    with tempfile.TemporaryDirectory(prefix="bitcpm-chromium-") as profile:
        tmp_pdf = pdf_path.with_name(f".{pdf_path.name}.tmp")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               f"--print-to-pdf={tmp_pdf}", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}", html_path.resolve().as_uri()]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, start_new_session=True)
        except subprocess.TimeoutExpired:
            tmp_pdf.unlink(missing_ok=True)
            return f"PDF failed: chromium did not finish within {timeout_s:.0f} s"
        if p.returncode != 0 or not tmp_pdf.exists() or tmp_pdf.stat().st_size == 0:
            tmp_pdf.unlink(missing_ok=True)
            last = (p.stderr.strip().splitlines() or ["no output"])[-1]
            return f"PDF failed: chromium exit {p.returncode}: {last[:200]}"
        os.replace(tmp_pdf, pdf_path)
    return None


# -- checks on what a reader sees -----------------------------------------------------------------------------
REPR = re.compile(r"\b(?:Metric|Check|ChapterResult|KeyMetric|MatrixRow|CheckSpec|Params|PosixPath)\(\w+=|"
                  r"\{'[A-Za-z_]\w*': |\bdict_(?:keys|values|items)\(|<[\w.]+ object at 0x")
SCIENTIFIC = re.compile(r"(?<![\w.])\d(?:\.\d+)?e[+-]\d{2,}\b")
BROKEN_NUMBER = (re.compile(r"\d[,.]$"), re.compile(r"^\d"))  # "16,898." / "63"
BROKEN_FRACTION = (re.compile(r"\d$"), re.compile(r"^[.,]\d"))  # "16,898" / ".63"
BROKEN_WORD = (re.compile(r"[A-Za-z]{3}$"), re.compile(r"^[a-z]$"))  # "Statu" / "s"
MAX_PAGES = 24  # page one and the chapters (issue 20.8: a report read on paper, not a dump)
MAX_APPENDIX_PAGES = 4  # the appendices after the chapters (the check registry), counted apart
APPENDIX_HEADING = re.compile(r"^\s*(?:Appendix|附录)\b", re.M)


def pdf_page_texts(pdf_path: str | Path) -> list[str]:
    """The text of every page in reading order, a wrapped table cell on consecutive lines (pdftotext
    from poppler; pypdf if poppler is missing)."""
    exe = shutil.which("pdftotext")
    if exe:
        out = subprocess.run([exe, "-enc", "UTF-8", str(pdf_path), "-"], capture_output=True, timeout=120)
        if out.returncode == 0:
            return out.stdout.decode("utf-8", "replace").split("\f")[:-1] or [""]
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(str(pdf_path)).pages]


def appendix_start(pages: list[str]) -> int:
    """The index of the first page an appendix heading opens (len(pages) when there is none)."""
    return next((i for i, text in enumerate(pages) if APPENDIX_HEADING.search(text)), len(pages))


# the summary's first section after page one: it starts page two (bv-page-break), so page two opens with it
PAGE_TWO_HEADING = re.compile(r"^\s*(?:原文档的说法|Claims of the original document)\s*$", re.M)


def page_one_overflow(pages: list[str]) -> list[str]:
    """Page one must fit one A4 page: where the summary's page-two heading is not the first line of page two,
    page one ran on (a font that sets wider on another machine). [] for a report without that heading."""
    at = next((i for i, text in enumerate(pages) if PAGE_TWO_HEADING.search(text)), None)
    if at is None:
        return []
    first = next((ln.strip() for ln in pages[at].splitlines() if ln.strip()), "")
    if at != 1 or not PAGE_TWO_HEADING.match(first):
        spill = next((ln.strip() for ln in pages[1].splitlines() if ln.strip()), "") if len(pages) > 1 else ""
        return [f"page one runs onto page {at + 1 if at else 2}: page 2 starts with {spill[:60]!r}"]
    return []


def text_problems(pages: list[str], max_pages: int = MAX_PAGES, max_appendix: int = MAX_APPENDIX_PAGES) -> list[str]:
    """What a reader would see wrong in a rendered report's page texts: one line per problem."""
    import unicodedata

    problems = []
    problems += page_one_overflow(pages)
    body = appendix_start(pages)
    if body > max_pages:
        problems.append(f"{body} pages before the appendix: more than {max_pages}")
    if len(pages) - body > max_appendix:
        problems.append(f"{len(pages) - body} appendix pages: more than {max_appendix}")
    for n, raw in enumerate(pages, 1):
        text = unicodedata.normalize("NFKC", raw)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            problems.append(f"page {n}: empty")
        elif len(lines) <= 2 and sum(len(ln) for ln in lines) < 80 and n < len(pages):
            problems.append(f"page {n}: only {lines[0][:60]!r}")
        for pat, what in ((REPR, "a Python repr"), (SCIENTIFIC, "scientific notation")):
            m = pat.search(text)
            if m:
                problems.append(f"page {n}: {what}: {text[max(0, m.start() - 20):m.end() + 20]!r}")
        for a, b in zip(lines, lines[1:]):
            for (end, start), what in ((BROKEN_NUMBER, "number"), (BROKEN_FRACTION, "number"), (BROKEN_WORD, "word")):
                if end.search(a) and start.search(b):
                    problems.append(f"page {n}: {what} split across lines: {a[-20:]!r} / {b[:20]!r}")
    return problems


# -- report.md (model card) ---------------------------------------------------------------------------------
CARD = {
    "intro": T("本报告由项目的笔记本自动生成，每个数字都来自本次运行的结果文件。",
               "This report was generated by the project's notebooks: every number comes from this run's results files."),
    "stand_in": T("**说明：**本次运行使用项目训练的替身模型，不是 BitCPM4-0.5B。",
                  "**Note:** this run used the project's stand-in model, not BitCPM4-0.5B."),
    "item": T("项目", "Item"), "value": T("内容", "Value"), "model": T("模型", "Model"),
    "model_path": T("模型路径", "Model path"), "stand_in_row": T("替身模型", "Stand-in"),
    "device": T("设备", "Device"), "engine": T("引擎", "Engine"), "profile": T("配置", "Profile"),
    "run": T("运行", "Run"), "date": T("日期", "Date"), "verdict": T("结论", "Verdict"),
    "checks": T("检查结果", "Checks"), "check": T("检查项", "Check"), "status": T("状态", "Status"),
    "detail": T("说明", "Detail"), "metrics": T("关键指标", "Key metrics"), "metric": T("指标", "Metric"),
    "measured_on": T("测量对象", "Measured on"), "yes": T("是", "yes"), "no": T("否", "no"),
    "unreadable": T("结果文件无法读取", "results file unreadable"), "not_run": T("未运行", "did not run"),
    "failed": T("本章运行失败", "this chapter failed"), "skipped": T("本章跳过", "skipped"),
    "chapter": T("章节", "Chapter"), "findings": T("发现", "Findings"),
    "cards_in_english": T("各章的数据表（表头为英文，数据为标识符与数值）只在下方英文部分给出一次，见其同名各章。",
                          "The chapters' data tables are in the English part."),
}


def summary_data(run_dir: str | Path) -> dict[str, Any]:
    """results/00_summary.json `data` (keys documented in report.summary), or {} when the summary did not run."""
    try:
        return R.load(Path(run_dir) / "results" / "00_summary.json").data or {}
    except R.ResultsError:
        return {}


def _pick(x: Any, lang: str = "en") -> Any:
    """A summary text ({"zh", "en"}) in one language; anything else as is."""
    return (x.get(lang) or x.get("en")) if isinstance(x, dict) and ("en" in x or "zh" in x) else x


def card_front_matter(run_dir: str | Path) -> dict[str, Any]:
    """The model card's YAML front matter from what the run loaded and detected (never the profile's wishes):
    the summary's page-one facts and verdicts where the summary ran, else the environment chapter's facts."""
    run_dir = Path(run_dir)
    info = M.run_info(run_dir)
    found = detected(run_dir)
    data = summary_data(run_dir)
    page = data.get("page_one") if isinstance(data.get("page_one"), dict) else {}
    rows = M.check_matrix(run_dir)
    counts = V.verdict_counts(rows)
    stand_in = bool(info.get("is_stand_in")) or page.get("weights") == "stand-in"
    name = str(page.get("model") or info.get("model") or "?")
    device_kind = page.get("device_kind") or found["device_kind"]
    engine = _pick(page.get("engine")) or found["engine"]
    tags = ["minicpm", "ternary", "qat", "vllm", "validation-report"]
    if not stand_in:
        tags.insert(1, "bitcpm")
    if found["vllm_ascend"] or device_kind == "npu":
        tags.insert(tags.index("vllm") + 1, "vllm-ascend")
    front: dict[str, Any] = {"model_name": name}
    if not stand_in:
        front["base_model"] = name
    scopes = {k: v.get("verdict") for k, v in (data.get("scopes") or {}).items() if isinstance(v, dict)}
    if data.get("key_metrics"):
        km = {m["id"]: {"value": m.get("value"), "unit": m.get("unit", ""), "measured_on": m.get("measured_on", "")}
              for m in data["key_metrics"] if isinstance(m, dict) and m.get("id")}
    else:
        km = {m.id: {"value": m.value, "unit": m.unit} for m in M.key_metrics(run_dir)}
    front.update({
        "language": ["en", "zh"], "library_name": "vllm", "pipeline_tag": "text-generation", "tags": tags,
        "validation": {
            "run_id": run_dir.name, "profile": info.get("profile"),
            "date": info.get("finished") or info.get("started"), "git_commit": info.get("git_commit"),
            "model": name, "model_is_stand_in": stand_in, "weights": page.get("weights"),
            "device": _pick(page.get("device")) or found["device"], "device_kind": device_kind, "engine": engine,
            "verdict": page.get("verdict") or V.verdict(counts), "scopes": scopes or None, "checks": counts,
            "chapters": M.chapter_statuses(run_dir), "key_metrics": km,
        },
    })
    return json.loads(json.dumps(R.jsonable(front)))


def _card_body(run_dir: Path, lang: str) -> list[str]:
    c = lambda k: in_lang(CARD[k], lang)  # noqa: E731
    info = M.run_info(run_dir)
    found = detected(run_dir)
    rows = M.check_matrix(run_dir)
    counts = V.verdict_counts(rows)
    data = summary_data(run_dir)
    page = data.get("page_one") if isinstance(data.get("page_one"), dict) else {}
    out = [f"# {in_lang(REPORT_TITLE, lang)}\n", c("intro") + "\n"]
    if info.get("is_stand_in"):
        out.append(c("stand_in") + "\n")
    if page.get("first_line"):
        out.append(f"**{md_text(_pick(page['first_line'], lang))}**\n")
    if page.get("next_command"):
        out.append("> " + md_text(_pick(page["next_command"], lang)) + "\n")
    lines = [f.get("line") for f in data.get("findings") or [] if isinstance(f, dict) and f.get("line")]
    if lines:
        out.append(f"## {c('findings')}\n")
        out.append("\n".join(f"- {md_text(_pick(x, lang))}" for x in lines) + "\n")
    verdict = page.get("verdict") or V.verdict(counts)
    overview = [(c("model"), info.get("model", "?")), (c("model_path"), info.get("model_path", "?")),
                (c("stand_in_row"), c("yes") if info.get("is_stand_in") else c("no")),
                (c("device"), found["device"] or "?"), (c("engine"), found["engine"] or "?"),
                (c("profile"), info.get("profile", "?")), (c("run"), run_dir.name),
                (c("date"), info.get("finished") or "?"),
                (c("verdict"), f"{in_lang(V.VERDICT_WORD.get(verdict, verdict), lang)} ({S.counts_line(counts)})")]
    out.append(md_table([c("item"), c("value")], overview) + "\n")
    out.append(f"## {c('checks')}\n")
    mrows = [[chapter_heading(r.chapter, lang), md_text(r.name_zh if lang == "zh" and r.name_zh else r.name_en), r.mark,
              md_text(r.reason_zh if lang == "zh" and r.reason_zh else r.reason_en)] for r in rows]
    out.append(md_table([c("chapter"), c("check"), c("status"), c("detail")], mrows,
                        trusted_cols=(1, 2, 3)) + "\n")  # names and reasons: md_text keeps their `code`
    card = P1.results_card(M.key_metrics(run_dir), M.chapter_results(run_dir))  # page one's table, the same rows
    out.append(f"## {c('metrics')}\n")
    krows = [[chapter_heading(r.chapter, lang), md_text(in_lang(r.name, lang)),
              f"{r.value} {in_lang(r.unit, lang)}".strip(), r.n, in_lang(r.measured_on, lang)] for r in card]
    out.append((md_table([c("chapter"), c("metric"), c("value"), "n / ±", c("measured_on")], krows, trusted_cols=(1,))
                if card else "—") + "\n")
    pointed = False
    for cid in _chapter_ids(run_dir):
        if cid == SUMMARY_ID:
            continue
        rpath = run_dir / "results" / f"{cid}.json"
        res, err = M.load_chapter(rpath if rpath.exists() else None)
        # the chapters' data tables are written in English once: the Chinese part says so once, and shows a
        # chapter of its own only where it has something to say (failed, skipped, unreadable, not run)
        if lang == "zh" and not err and res is not None and res.card and res.status == "ok":
            if not pointed:
                out.append(c("cards_in_english") + "\n")
                pointed = True
            continue
        out.append(f"## {md_escape(chapter_heading(cid, lang))}\n")
        if err:
            out.append(f"❌ {c('unreadable')}: {md_escape(err)}\n")
            continue
        if res is None:
            out.append(f"— {c('not_run')}\n")
            continue
        if res.status in ("failed", "running"):
            out.append(f"❌ {c('failed')}: {md_escape(res.error or 'interrupted')}\n")
        elif res.status == "skipped":
            reason = res.reason_zh if lang == "zh" and res.reason_zh else res.reason_en
            out.append(f"— {c('skipped')}: {md_text(reason or '')}\n")
        for sec in res.card if lang != "zh" else ():
            title = sec.get("title_zh") if lang == "zh" and sec.get("title_zh") else sec.get("title_en", "")
            out.append(f"### {md_escape(title)}\n")
            out.append(sec.get("markdown", "").rstrip() + "\n")
        if not res.card and res.metrics:
            out.append(md_table([c("metric"), c("value")],
                                [(m.name_zh if lang == "zh" and m.name_zh else m.name_en,
                                  M.format_value(m.value, m.unit)) for m in res.metrics]) + "\n")
    return out


def model_card(run_dir: str | Path, langs: Iterable[str] = LANGS) -> str:
    """report.md: YAML front matter (what the run loaded and detected), then the card once per language."""
    import yaml

    run_dir = Path(run_dir)

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return visible_controls(x) if isinstance(x, str) else x

    front = clean(card_front_matter(run_dir))
    out = ["---", yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000).rstrip(), "---", ""]
    for lang in langs:
        out += _card_body(run_dir, lang)
    out.append(f"\n---\n*{_dt.datetime.now().astimezone().isoformat(timespec='seconds')} · bitcpm-validation*\n")
    return "\n".join(out)


def _readable(p: Path) -> None:
    """Reports are for sharing: rw-r--r-- (atomic writes create 0600 temp files)."""
    try:
        os.chmod(p, 0o644)
    except OSError:
        pass


# -- all of it ----------------------------------------------------------------------------------------------
def language_html(run_dir: Path, lg: str, langs: Sequence[str]) -> str:
    """One language's report.<lang>.html content (its switch links to the other language's file)."""
    others = [x for x in langs if x != lg]
    switch = (report_file(".", others[0], "html").name, LANG_NAME[others[0]]) if others else None
    return html_report(merged_notebook(run_dir, lg), f"{in_lang(REPORT_TITLE, lg)} · {run_dir.name}", lg, switch)


def _html_per_language(run_dir: Path, langs: Sequence[str]) -> list[tuple[str, str]]:
    """[(lang, html)] in `langs` order. Two languages are built in two forked processes at once: nbconvert is
    pure Python (one core each), and the pair then takes the time of one."""
    import multiprocessing

    if len(langs) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [(lg, language_html(run_dir, lg, langs)) for lg in langs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=len(langs), mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [(lg, pool.submit(language_html, run_dir, lg, list(langs))) for lg in langs]
        return [(lg, f.result()) for lg, f in futures]


def render(run_dir: str | Path, *, lang: Optional[str] = None, pdf: bool = True, out=sys.stdout) -> RenderOutcome:
    """Write run_dir/report.<lang>.html and .pdf (if Chromium is installed) per language, and report.md."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    langs = report_langs(run_dir, lang)
    oc = RenderOutcome()
    for lg, html in _html_per_language(run_dir, langs):
        path = report_file(run_dir, lg, "html")
        R.write_atomic(path, html)
        _readable(path)
        oc.html[lg] = path
        print(f"html {path}", file=out, flush=True)
    oc.md = run_dir / "report.md"
    R.write_atomic(oc.md, model_card(run_dir, langs))
    _readable(oc.md)
    print(f"md   {oc.md}", file=out, flush=True)
    if not pdf:
        return oc
    # both languages print at once: Chromium spends most of a print single-threaded (layout), on a 2-core
    # host the pair takes the time of one
    with ThreadPoolExecutor(max_workers=len(oc.html) or 1) as pool:
        printed = {lg: pool.submit(print_pdf, html_path, report_file(run_dir, lg, "pdf"))
                   for lg, html_path in oc.html.items()}
    for lg, html_path in oc.html.items():
        pdf_path = report_file(run_dir, lg, "pdf")
        why = printed[lg].result()
        if why:
            if why not in oc.notes:  # Chromium missing: one note, not one per language
                oc.notes.append(why)
                print(why, file=out, flush=True)
            continue
        oc.pdf[lg] = pdf_path
        _readable(pdf_path)
        print(f"pdf  {pdf_path}", file=out, flush=True)
        try:
            problems = text_problems(pdf_page_texts(pdf_path))
        except Exception as e:  # noqa: BLE001  (the check is advice; the PDF stands)
            problems = [f"could not read the PDF's text: {type(e).__name__}: {e}"]
        for p in problems:
            note = f"{pdf_path.name}: {p}"
            oc.notes.append(note)
            print(f"note {note}", file=out, flush=True)
    return oc
