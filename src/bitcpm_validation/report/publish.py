"""Publish runs as a static site that works opened from disk, offline, with a SHA-256 manifest.

    python -m bitcpm_validation publish [--runs runs] [--site site]     (make publish)
    python -m bitcpm_validation verify site/                            (or: cd site && sha256sum -c MANIFEST.sha256)

site/
  index.html                 every run: date, host, device, model, verdict counts, links
  runs/<run-id>/index.html   the run's files: report.html/.pdf/.md, results, evidence logs, executed notebooks
  runs/<run-id>/...          a copy of the run directory (hidden files and symlinks left out)
  MANIFEST.sha256            `sha256sum -c` format: every file of the site except the manifest itself

The site is built beside the old one and swapped in at the end, so a failed build leaves the old
site intact. Every link is relative; no page refers to anything outside the site.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from bitcpm_validation.report import results as R
from bitcpm_validation.report import summary as S
from bitcpm_validation.engine.files import sha256_file
from bitcpm_validation.paths import PROJECT_ROOT, RUNS_DIR
from bitcpm_validation.report.textsafe import html_escape

MANIFEST = "MANIFEST.sha256"
SKIP_RUNS = ("latest", "lab")
SITE_DIR = PROJECT_ROOT / "site"
REPORT_FILES = ("report.html", "report.pdf", "report.md")
GROUPS = (  # (folder, label) in a run's page, in this order
    ("results", "结果文件 Results"),
    ("evidence", "证据日志 Evidence logs"),
    ("notebooks", "已执行的 notebooks · Executed notebooks"),
    ("artifacts", "工具输出 Artifacts"),
)
CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC",system-ui,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border:1px solid #ccc;padding:.35em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.n{text-align:right;white-space:nowrap}code{font-size:.9em}a{color:#0550ae}.muted{color:#666}
.v-PASS{color:#1a7f37;font-weight:bold}.v-WARN{color:#9a6700;font-weight:bold}.v-FAIL{color:#cf222e;font-weight:bold}
ul.files{columns:2;font-size:.92em}
"""


class PublishError(RuntimeError):
    """The site cannot be built or verified; one-line message."""


@dataclass
class RunEntry:
    run_id: str
    date: str = "?"
    host: str = "?"
    device: str = "?"
    model: str = "?"
    stand_in: bool = False
    profile: str = "?"
    counts: dict[str, int] = field(default_factory=dict)
    verdict: str = "?"
    chapters: dict[str, str] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # group -> relative paths inside the run


# -- reading runs ---------------------------------------------------------------------------------------------
def discover_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories (with a run.json or a results/ folder), oldest first; `latest`, `lab` (JupyterLab
    scratch) and hidden folders skipped."""
    d = Path(runs_dir)
    if not d.is_dir():
        return []
    out = [p for p in d.iterdir()
           if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name not in SKIP_RUNS
           and ((p / "run.json").is_file() or (p / "results").is_dir())]
    return sorted(out, key=lambda p: p.name)


def _files(run_dir: Path) -> list[Path]:
    """Every regular file of a run, relative, hidden files / symlinks / scratch left out."""
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if any(part.startswith(".") for part in rel.parts) or p.is_symlink() or not p.is_file():
            continue
        if any(c in str(rel) for c in "\n\r\\"):
            continue  # not representable in a sha256sum manifest line
        out.append(rel)
    return out


def run_entry(run_dir: str | Path) -> RunEntry:
    run_dir = Path(run_dir)
    info = S.run_info(run_dir)
    e = RunEntry(run_id=run_dir.name)
    e.date = str(info.get("finished") or info.get("started") or "?")
    e.profile = str(info.get("profile") or "?")
    e.model = str(info.get("model") or "?")
    e.stand_in = bool(info.get("is_stand_in"))
    for cid, fn in (("01_environment", "device"),):
        try:
            res = R.load(run_dir / "results" / f"{cid}.json")
            e.device = str(res.metric(fn) or "?")
        except R.ResultsError:
            pass
    try:
        prov = R.load(run_dir / "results" / "11_provenance.json").data.get("provenance", {})
        e.host = str(prov.get("host", {}).get("hostname") or "?")
    except R.ResultsError:
        pass
    if e.host == "?":
        e.host = str(info.get("host") or info.get("hostname") or "?")
    try:
        rows = S.check_matrix(run_dir)
        e.counts = S.verdict_counts(rows)
        e.verdict = S.verdict(e.counts)
        e.chapters = {k: str(v) for k, v in S.chapter_statuses(run_dir).items()}
    except Exception as err:  # noqa: BLE001  (an unreadable run still gets listed)
        e.verdict = f"unreadable: {type(err).__name__}"
    rels = _files(run_dir)
    e.reports = [f for f in REPORT_FILES if (run_dir / f).is_file()]
    for group, _ in GROUPS:
        e.files[group] = [str(r) for r in rels if r.parts[0] == group]
    e.files["other"] = [str(r) for r in rels if r.parts[0] not in {g for g, _ in GROUPS} and str(r) not in e.reports]
    return e


# -- HTML -----------------------------------------------------------------------------------------------------
def _href(rel: str) -> str:
    return quote(rel.replace(os.sep, "/"), safe="/")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html_escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _counts_cells(c: dict[str, int]) -> str:
    return "".join(f'<td class="n">{R.STATUS_MARK[k]} {int(c.get(k, 0))}</td>' for k in ("pass", "warn", "fail", "not_run"))


def index_html(entries: list[RunEntry], built: str) -> str:
    rows = []
    for e in sorted(entries, key=lambda x: x.run_id, reverse=True):
        base = f"runs/{_href(e.run_id)}/"
        links = " · ".join(f'<a href="{base}{_href(f)}">{html_escape(f.split(".")[-1].upper())}</a>' for f in e.reports)
        links = (links + " · " if links else "") + f'<a href="{base}index.html">文件 files</a>'
        model = html_escape(e.model) + (' <span class="muted">(替身 stand-in)</span>' if e.stand_in else "")
        vclass = html_escape(e.verdict.split()[0].upper()) if e.verdict else ""
        rows.append(
            f"<tr><td>{html_escape(e.date)}</td><td><a href=\"{base}index.html\">{html_escape(e.run_id)}</a></td>"
            f"<td>{html_escape(e.host)}</td><td>{html_escape(e.device)}</td><td>{model}</td>"
            f"<td>{html_escape(e.profile)}</td>{_counts_cells(e.counts)}"
            f'<td class="v-{vclass}">{html_escape(e.verdict)}</td><td>{links}</td></tr>')
    head = ("<tr><th>日期 Date</th><th>运行 Run</th><th>主机 Host</th><th>设备 Device</th><th>模型 Model</th>"
            "<th>配置 Profile</th><th>✅ 通过</th><th>⚠️ 注意</th><th>❌ 失败</th><th>— 未运行</th>"
            "<th>结论 Verdict</th><th>报告 Reports</th></tr>")
    body = (f"<h1>BitCPM4-0.5B 验证报告 · Validation reports</h1>"
            f'<p class="muted">{len(entries)} 次运行 run(s) · 生成于 built {html_escape(built)}</p>'
            f"<table><thead>{head}</thead><tbody>{''.join(rows) or '<tr><td colspan=12>—</td></tr>'}</tbody></table>"
            f"<h2>校验 · Verify</h2><p>每个文件的 SHA-256 记录在 <a href=\"{MANIFEST}\">{MANIFEST}</a>。"
            f"Every file's SHA-256 is in the manifest; check it with</p>"
            f"<pre>cd site &amp;&amp; sha256sum -c {MANIFEST}\npython -m bitcpm_validation verify site/</pre>")
    return _page("BitCPM4-0.5B validation reports", body)


def run_html(e: RunEntry) -> str:
    parts = ['<p><a href="../../index.html">← 所有运行 All runs</a></p>',
             f"<h1>{html_escape(e.run_id)}</h1>",
             "<table><tbody>"
             + "".join(f"<tr><th>{html_escape(k)}</th><td>{html_escape(v)}</td></tr>" for k, v in (
                 ("日期 Date", e.date), ("主机 Host", e.host), ("设备 Device", e.device),
                 ("模型 Model", e.model + (" (stand-in 替身)" if e.stand_in else "")), ("配置 Profile", e.profile),
                 ("结论 Verdict", e.verdict),
                 ("检查 Checks", " ".join(f"{R.STATUS_MARK[k]} {e.counts.get(k, 0)}" for k in ("pass", "warn", "fail", "not_run")))))
             + "</tbody></table>"]
    if e.reports:
        parts.append("<h2>报告 · Report</h2><ul>"
                     + "".join(f'<li><a href="{_href(f)}">{html_escape(f)}</a></li>' for f in e.reports) + "</ul>")
    if e.chapters:
        parts.append("<h2>章节 · Chapters</h2><table><tbody>" + "".join(
            f"<tr><td>{html_escape(k)}</td><td>{html_escape(v)}</td></tr>" for k, v in e.chapters.items()) + "</tbody></table>")
    for group, label in GROUPS + (("other", "其他 Other"),):
        fs = e.files.get(group) or []
        if fs:
            parts.append(f"<h2>{html_escape(label)}</h2><ul class=\"files\">"
                         + "".join(f'<li><a href="{_href(f)}">{html_escape(f)}</a></li>' for f in fs) + "</ul>")
    return _page(f"{e.run_id} · BitCPM4-0.5B", "\n".join(parts))


# -- manifest ---------------------------------------------------------------------------------------------------
def write_manifest(site: Path) -> int:
    """MANIFEST.sha256 of every file under site (except itself), `sha256sum -c` format. Returns the count."""
    lines = []
    for p in sorted(site.rglob("*")):
        rel = p.relative_to(site).as_posix()
        if rel == MANIFEST or not p.is_file() or p.is_symlink():
            continue
        lines.append(f"{sha256_file(p)}  {rel}\n")
    R.write_atomic(site / MANIFEST, "".join(lines))
    os.chmod(site / MANIFEST, 0o644)
    return len(lines)


def verify(site: str | Path) -> list[str]:
    """Problems with a published site (empty: every file matches the manifest, none missing or extra)."""
    site = Path(site)
    man = site / MANIFEST
    if not man.is_file():
        raise PublishError(f"{man}: manifest not found: build the site with `make publish`")
    problems, listed = [], set()
    for n, line in enumerate(man.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"{MANIFEST}:{n}: malformed line")
            continue
        listed.add(rel)
        p = site / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: path outside the site")
        elif not p.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{rel}: SHA-256 mismatch (changed after publishing)")
    for p in sorted(site.rglob("*")):
        rel = p.relative_to(site).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not in the manifest (added after publishing)")
    return problems


# -- building -----------------------------------------------------------------------------------------------------
def build_site(runs_dir: str | Path = RUNS_DIR, site_dir: str | Path = SITE_DIR,
               run_dirs: Optional[list[Path]] = None) -> tuple[Path, list[RunEntry], int]:
    """Copy every run into a fresh site, write the pages and the manifest, then swap it in.
    Returns (site_dir, entries, files in the manifest)."""
    site_dir = Path(site_dir).resolve()
    runs = run_dirs if run_dirs is not None else discover_runs(runs_dir)
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{site_dir.name}.new-", dir=site_dir.parent))
    try:
        entries = []
        for rd in runs:
            rd = Path(rd)
            e = run_entry(rd)
            dest = tmp / "runs" / rd.name
            for rel in _files(rd):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(rd / rel, dest / rel)
                os.chmod(dest / rel, 0o644)
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "index.html").write_text(run_html(e), encoding="utf-8")
            entries.append(e)
        built = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
        (tmp / "index.html").write_text(index_html(entries, built), encoding="utf-8")
        (tmp / "runs.json").write_text(json.dumps([e.__dict__ for e in entries], ensure_ascii=False, indent=2) + "\n",
                                       encoding="utf-8")
        n = write_manifest(tmp)
        os.chmod(tmp, 0o755)
        old = None
        if site_dir.exists():
            old = site_dir.with_name(f".{site_dir.name}.old-{os.getpid()}")
            os.replace(site_dir, old)
        os.replace(tmp, site_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return site_dir, entries, n
