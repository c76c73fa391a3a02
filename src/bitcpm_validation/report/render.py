"""Render a run: one merged notebook -> report.html (self-contained) -> report.pdf (Chromium), + report.md.

    python -m bitcpm_validation render runs/<id>
    render(run_dir) -> RenderOutcome(html, pdf, md, notes)

The merged notebook puts the summary first, then the chapters in order. A failed chapter keeps its
executed cells and gets a banner with the error; a chapter without an executed notebook gets a stub.
Cells tagged lang-zh / lang-en are dropped when params `lang` selects the other language.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import nbformat

from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters
from bitcpm_validation.paths import REPORT_DIR
from bitcpm_validation.report.textsafe import html_escape, md_escape, md_table, visible_controls

TEMPLATE = "bitcpm"
REPORT_TITLE_ZH = "BitCPM4-0.5B 验证报告"
REPORT_TITLE_EN = "BitCPM4-0.5B validation report"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@dataclass
class RenderOutcome:
    html: Optional[Path] = None
    pdf: Optional[Path] = None
    md: Optional[Path] = None
    notes: list[str] = field(default_factory=list)  # e.g. "PDF skipped: chromium not installed"


# -- the merged notebook --------------------------------------------------------------------------------
def _chapter_ids(run_dir: Path) -> list[str]:
    ids = {p.stem for p in (run_dir / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    ids |= {p.stem for p in (run_dir / "results").glob("[0-9][0-9]_*.json")}
    ordered = sorted(ids - {SUMMARY_ID})
    return ([SUMMARY_ID] if SUMMARY_ID in ids else []) + ordered


def _info(cid: str) -> ChapterInfo:
    known = {c.id: c for c in all_chapters()}
    return known.get(cid) or ChapterInfo(cid, cid.split("_", 1)[-1].title(), cid.split("_", 1)[-1])


def _lang_of(run_dir: Path, lang: Optional[str]) -> str:
    if lang:
        return lang
    info = S.run_info(run_dir)
    if info.get("lang"):
        return info["lang"]
    try:
        from bitcpm_validation.params import load_params

        return load_params(run_dir / "params.yaml").lang
    except Exception:  # noqa: BLE001
        return "both"


def _keep(cell: Any, lang: str) -> bool:
    tags = set(cell.get("metadata", {}).get("tags", []))
    if lang == "zh" and "lang-en" in tags:
        return False
    if lang == "en" and "lang-zh" in tags:
        return False
    return "remove-cell" not in tags


_ACTIVE_MIME = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json",
                "application/vnd.jupyter.widget-state+json")


def _passive(cell: Any) -> Any:
    """Drop active output (JavaScript, widgets) from a cell: the report runs no code but its toggle."""
    if cell.get("cell_type") != "code":
        return cell
    outs = []
    for o in cell.get("outputs", []):
        data = o.get("data")
        if data:
            for m in _ACTIVE_MIME:
                data.pop(m, None)
            if not data:
                continue
        outs.append(o)
    cell["outputs"] = outs
    return cell


def _banner(res: Optional[R.ChapterResult], err: Optional[str], has_nb: bool) -> Optional[str]:
    if err:
        return (f'<div class="bv-banner bv-failed">❌ <b>结果文件无法读取 · Results file unreadable</b>'
                f"<pre>{html_escape(err)}</pre></div>")
    if res is None:
        why = "未运行 · did not run" if not has_nb else "未写入结果 · wrote no results"
        return f'<div class="bv-banner bv-missing">— <b>{why}</b></div>'
    if res.status == "failed" or res.status == "running":
        msg = res.error or ("interrupted: the chapter never finished" if res.status == "running" else "unknown error")
        return (f'<div class="bv-banner bv-failed">❌ <b>本章运行失败 · This chapter failed</b>'
                f"<pre>{html_escape(msg)}</pre>"
                f"<div>已记录的检查项保留在下方与总结中 · checks recorded before the failure are kept below and in the summary.</div></div>")
    if res.status == "skipped":
        return (f'<div class="bv-banner bv-skipped">— <b>本章跳过 · Chapter skipped</b>: '
                f"{html_escape(res.reason_zh or '')} · {html_escape(res.reason_en or '')}</div>")
    return None


def _environment(run_dir: Path) -> Optional[R.ChapterResult]:
    """The environment chapter's results (device, versions), or None if it did not run."""
    try:
        return R.load(run_dir / "results" / "01_environment.json")
    except R.ResultsError:
        return None


def _cover(run_dir: Path, lang: str) -> str:
    info = S.run_info(run_dir)
    rows = S.check_matrix(run_dir)
    counts = S.verdict_counts(rows)
    env = _environment(run_dir)
    device = env.metric("device") if env else None
    meta = [
        ("运行 Run", run_dir.name),
        ("配置 Profile", info.get("profile", "?")),
        ("模型 Model", info.get("model", "?") + ("  (替身模型 stand-in, not BitCPM4)" if info.get("is_stand_in") else "")),
        ("设备 Device", device or "?"),
        ("日期 Date", info.get("finished") or info.get("started") or "?"),
        ("提交 Commit", info.get("git_commit") or "?"),
        ("检查 Checks", S.counts_line(counts)),
    ]
    trs = "".join(f"<tr><td>{html_escape(k)}</td><td>{html_escape(v)}</td></tr>" for k, v in meta)
    toc = "".join(
        f'<li><a href="#ch-{html_escape(cid)}">{html_escape(_info(cid).heading())}</a></li>' for cid in _chapter_ids(run_dir)
    )
    return (f'<div class="bv-cover"><h1>{REPORT_TITLE_ZH} · {REPORT_TITLE_EN}</h1>'
            f'<table class="bv-table bv-meta"><tbody>{trs}</tbody></table>'
            f'<div class="bv-toc"><b>目录 · Contents</b><ol>{toc}</ol></div></div>')


def merged_notebook(run_dir: str | Path, lang: Optional[str] = None) -> nbformat.NotebookNode:
    """One notebook: cover, then the summary, then every chapter (executed or stub), in order."""
    run_dir = Path(run_dir)
    lang = _lang_of(run_dir, lang)
    merged = nbformat.v4.new_notebook()
    merged.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}, "title": f"{REPORT_TITLE_ZH} · {REPORT_TITLE_EN} · {run_dir.name}"}
    merged.cells.append(nbformat.v4.new_markdown_cell(_cover(run_dir, lang)))
    for cid in _chapter_ids(run_dir):
        info = _info(cid)
        nb_path = run_dir / "notebooks" / f"{cid}.ipynb"
        res, err = S.load_chapter(run_dir / "results" / f"{cid}.json" if (run_dir / "results" / f"{cid}.json").exists() else None)
        cells: list[Any] = []
        if nb_path.exists():
            try:
                nb = nbformat.read(nb_path, as_version=4)
                cells = [_passive(copy.deepcopy(c)) for c in nb.cells if _keep(c, lang)]
            except Exception as e:  # noqa: BLE001
                err = err or f"executed notebook unreadable: {type(e).__name__}: {e}"
        anchor = f'<a id="ch-{html_escape(cid)}"></a>\n\n'
        if cells and cells[0].cell_type == "markdown" and cells[0].source.lstrip().startswith("#"):
            head = cells.pop(0)
            head.source = anchor + head.source
        else:
            head = nbformat.v4.new_markdown_cell(anchor + f"# {info.heading()}")
        tags = list(head.get("metadata", {}).get("tags", []))
        if cid != SUMMARY_ID:
            tags.append("bv-chapter-start")
        head.setdefault("metadata", {})["tags"] = tags
        head.pop("id", None)
        out = [head]
        b = _banner(res, err, nb_path.exists())
        if b:
            out.append(nbformat.v4.new_markdown_cell(b))
        out += cells
        for c in out:
            c.pop("id", None)
        merged.cells.extend(out)
    for i, c in enumerate(merged.cells):
        c["id"] = f"c{i:04d}"
    return merged


# -- HTML ------------------------------------------------------------------------------------------------
_EXT_ATTR = re.compile(r"""(\s(?:src|href|action|poster|data|formaction|srcset)\s*=\s*)(["']?)\s*((?:https?:)?//[^"'\s>]*)\2""", re.I)
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=[^>]*>\s*</script>", re.I)
_LINK_EXT = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I)
_CSS_IMPORT = re.compile(r"@import\s+url\([\"']?(?:https?:)?//[^)]*\)\s*;?|url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.I)


def make_offline(html: str) -> str:
    """Remove every reference that would make a browser leave the file: external scripts, stylesheets,
    images and links (a link keeps its text; its URL is shown in the title, not followed)."""
    html = _SCRIPT_SRC.sub("", html)
    html = _LINK_EXT.sub("", html)
    html = _CSS_IMPORT.sub("none", html)

    def attr(m: re.Match) -> str:
        name = m.group(1).strip().rstrip("=").strip().lower()
        url = m.group(3)
        if name == "href":
            bare = re.sub(r"^(?:https?:)?//", "", url)
            return f' href="#" title="{html_escape("external link, not followed offline: " + bare)}"'
        return ' data-blocked=""'

    return _EXT_ATTR.sub(attr, html)


def external_refs(html: str) -> list[str]:
    """External URLs a browser would load or follow from this HTML (should be empty)."""
    found = [m.group(3) for m in _EXT_ATTR.finditer(html)]
    found += re.findall(r"""[\s"'(=]//cdn[^\s"'<>]*""", html)
    found += [m.group(0) for m in _CSS_IMPORT.finditer(html)]
    return found


def html_report(nb: nbformat.NotebookNode, title: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(REPORT_DIR)])
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": title}, "bitcpm_css": (REPORT_DIR / TEMPLATE / "report.css").read_text(encoding="utf-8")}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return make_offline(body)


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


# -- report.md (model card) ---------------------------------------------------------------------------------
def model_card(run_dir: str | Path) -> str:
    import yaml

    run_dir = Path(run_dir)
    info = S.run_info(run_dir)
    rows = S.check_matrix(run_dir)
    counts = S.verdict_counts(rows)
    km = S.key_metrics(run_dir)
    statuses = S.chapter_statuses(run_dir)
    env = _environment(run_dir)
    device = env.metric("device") if env else None
    engine = (env.data.get("versions", {}).get("vllm") if env else None) or None
    model_name = info.get("model", "openbmb/BitCPM4-0.5B")
    front = {
        "model_name": "BitCPM4-0.5B",
        "base_model": model_name,
        "language": ["en", "zh"],
        "library_name": "vllm",
        "pipeline_tag": "text-generation",
        "tags": ["minicpm", "bitcpm", "ternary", "qat", "vllm", "vllm-ascend", "validation-report"],
        "validation": {
            "run_id": run_dir.name,
            "profile": info.get("profile"),
            "date": info.get("finished") or info.get("started"),
            "git_commit": info.get("git_commit"),
            "device": device,
            "engine": engine,
            "model_is_stand_in": bool(info.get("is_stand_in")),
            "verdict": S.verdict(counts),
            "checks": counts,
            "chapters": statuses,
            "key_metrics": {m.id: {"value": m.value, "unit": m.unit} for m in km},
        },
    }
    front = json.loads(json.dumps(R.jsonable(front)))

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return visible_controls(x) if isinstance(x, str) else x

    out = ["---", yaml.safe_dump(clean(front), allow_unicode=True, sort_keys=False, width=1000).rstrip(), "---", ""]
    out.append(f"# {REPORT_TITLE_ZH} · {REPORT_TITLE_EN}\n")
    stand = ("**注意 Note:** 本次运行使用项目训练的替身模型,不是 BitCPM4-0.5B · this run used the project's stand-in "
             "model, not BitCPM4-0.5B.\n" if info.get("is_stand_in") else "")
    out.append(
        "本报告由项目的 notebooks 自动生成:每个数字都来自本次运行的结果文件。 "
        "This report was generated by the project's notebooks: every number comes from this run's results files.\n"
    )
    if stand:
        out.append(stand)
    overview = [
        ("模型名称 Model", model_name),
        ("模型路径 Model path", info.get("model_path", "?")),
        ("替身模型 Stand-in", "yes" if info.get("is_stand_in") else "no"),
        ("设备 Device", device or "?"),
        ("引擎 Engine", engine or "?"),
        ("配置 Profile", info.get("profile", "?")),
        ("运行 Run", run_dir.name),
        ("日期 Date", info.get("finished") or "?"),
        ("结论 Verdict", f"{S.verdict(counts)} ({S.counts_line(counts)})"),
    ]
    out.append(md_table(["项目 Item", "内容 Value"], overview) + "\n")
    out.append("## 检查结果 · Check matrix\n")
    out.append(S.matrix_markdown(rows) + "\n")
    out.append("## 关键指标 · Key metrics\n")
    out.append((S.metrics_markdown(km) if km else "—") + "\n")
    for cid in _chapter_ids(run_dir):
        if cid == SUMMARY_ID:
            continue
        inf = _info(cid)
        res, err = S.load_chapter(run_dir / "results" / f"{cid}.json" if (run_dir / "results" / f"{cid}.json").exists() else None)
        out.append(f"## {md_escape(inf.heading())}\n")
        if err:
            out.append(f"❌ 结果文件无法读取 · results file unreadable: {md_escape(err)}\n")
            continue
        if res is None:
            out.append("— 未运行 · did not run\n")
            continue
        if res.status in ("failed", "running"):
            out.append(f"❌ 本章运行失败 · this chapter failed: {md_escape(res.error or 'interrupted')}\n")
        elif res.status == "skipped":
            out.append(f"— 本章跳过 · skipped: {md_escape(res.reason_zh or '')} · {md_escape(res.reason_en or '')}\n")
        for sec in res.card:
            out.append(f"### {md_escape(sec.get('title_zh', ''))} · {md_escape(sec.get('title_en', ''))}\n")
            out.append(sec.get("markdown", "").rstrip() + "\n")
        if not res.card and res.metrics:
            mrows = [(m.name_zh + " · " + m.name_en, S.format_value(m.value, m.unit)) for m in res.metrics]
            out.append(md_table(["指标 Metric", "值 Value"], mrows) + "\n")
    out.append(f"\n---\n*生成时间 Generated {_dt.datetime.now().astimezone().isoformat(timespec='seconds')} "
               f"by bitcpm-validation.*\n")
    return "\n".join(out)


def _readable(p: Path) -> None:
    """Reports are for sharing: rw-r--r-- (atomic writes create 0600 temp files)."""
    try:
        os.chmod(p, 0o644)
    except OSError:
        pass


# -- all of it ----------------------------------------------------------------------------------------------
def render(run_dir: str | Path, *, lang: Optional[str] = None, pdf: bool = True, out=sys.stdout) -> RenderOutcome:
    """Write run_dir/report.html, report.pdf (if Chromium is installed) and report.md."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    oc = RenderOutcome()
    nb = merged_notebook(run_dir, lang)
    nbformat.write(nb, run_dir / "report.ipynb")
    html = html_report(nb, f"{REPORT_TITLE_ZH} · {run_dir.name}")
    oc.html = run_dir / "report.html"
    R.write_atomic(oc.html, html)
    print(f"html {oc.html}", file=out, flush=True)
    oc.md = run_dir / "report.md"
    R.write_atomic(oc.md, model_card(run_dir))
    print(f"md   {oc.md}", file=out, flush=True)
    for f in (oc.html, oc.md, run_dir / "report.ipynb"):
        _readable(f)
    if pdf:
        why = print_pdf(oc.html, run_dir / "report.pdf")
        if why:
            oc.notes.append(why)
            print(why, file=out, flush=True)
        else:
            oc.pdf = run_dir / "report.pdf"
            _readable(oc.pdf)
            print(f"pdf  {oc.pdf}", file=out, flush=True)
    return oc
