"""Publish runs as a static site that works opened from disk, offline, with a SHA-256 manifest.

    python -m bitcpm_validation publish [--runs runs] [--site site]     (make publish)
    python -m bitcpm_validation verify site/                            (or: cd site && sha256sum -c MANIFEST.sha256)

site/
  index.html, index.zh.html  run history per profile over time (English / Chinese): date, host, device,
                             model, the verdict per scope, check counts, key metrics; a cell that differs
                             from the profile's previous run is highlighted
  runs/<run-id>/index.html   the run's page (and index.zh.html): verdicts, key metrics, reports, every file
  runs/<run-id>/...          a copy of the run directory (hidden files and symlinks left out)
  runs.json                  the same entries as data
  MANIFEST.sha256            `sha256sum -c` format: every file of the site except the manifest itself

Pages are Jinja2 templates (report/publish/*.html.j2, autoescaped). Verdicts per scope and key metrics come
from results/00_summary.json (`data["scopes"]`, `data["key_metrics"]`, see report.summary); a run
without them (older, or its summary did not run) falls back to the counts of its check rows.
The site is built beside the old one and swapped in at the end, so a failed build leaves the old
site intact. Every link is relative; no page refers to anything outside the site.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.files import sha256_file
from bitcpm_validation.paths import PROJECT_ROOT, REPORT_DIR, RUNS_DIR
from bitcpm_validation.report import results as R
from bitcpm_validation.report import matrix as M
from bitcpm_validation.report import verdicts as V

MANIFEST = "MANIFEST.sha256"
SKIP_RUNS = ("latest", "lab")
SITE_DIR = PROJECT_ROOT / "site"
TEMPLATES = REPORT_DIR / "publish"
REPORT_FILES = ("report.zh.html", "report.en.html", "report.zh.pdf", "report.en.pdf", "report.md",
                "report.html", "report.pdf")  # the last two: runs rendered before one-language reports
SCOPES = V.VERDICT_SCOPES
LEGACY_SCOPES = ("engine", "model")  # runs summarised before performance and repository had verdicts
INDEX = {"en": "index.html", "zh": "index.zh.html"}
GROUP_IDS = ("results", "evidence", "notebooks", "artifacts")

WORDS: dict[str, dict[str, Any]] = {
    "en": {"title": "BitCPM4-0.5B validation reports", "colon": ": ", "runs_built": "%d run(s) · built %s", "profile": "Profile",
           "date": "Date", "run": "Run", "host": "Host", "device": "Device", "model": "Model",
           "reports": "Reports", "stand_in": "stand-in", "checks": "Checks", "key_metrics": "Key metrics",
           "metric": "Metric", "value": "Value", "measured_on": "Measured on", "chapters": "Chapters",
           "all_runs": "All runs", "verify": "Verify",
           "verify_text": "Every file's SHA-256 is in the manifest; check it with",
           "changed_note": "Highlighted: differs from the previous run of the same profile.",
           "scope": {"engine": "Engine verdict", "model": "Model verdict", "performance": "Performance verdict",
                     "repository": "Repository verdict"},
           "verdict": {"pass": "pass", "warn": "warn", "fail": "fail", "incomplete": "incomplete",
                       "not_assessed": "not assessed", "not_run": "not run",
                       "not_comparable": "not comparable"},
           "groups": {"results": "Results", "evidence": "Evidence logs", "notebooks": "Executed notebooks",
                      "artifacts": "Artifacts", "other": "Other"}},
    "zh": {"title": "BitCPM4-0.5B 验证报告", "colon": "：", "runs_built": "%d 次运行 · 生成于 %s", "profile": "配置",
           "date": "日期", "run": "运行", "host": "主机", "device": "设备", "model": "模型", "reports": "报告",
           "stand_in": "替身模型", "checks": "检查", "key_metrics": "关键指标", "metric": "指标", "value": "值",
           "measured_on": "测量对象", "chapters": "章节", "all_runs": "所有运行", "verify": "校验",
           "verify_text": "每个文件的 SHA-256 记录在清单中，校验命令：",
           "changed_note": "高亮：与同一配置的上一次运行不同。",
           "scope": {"engine": "引擎结论", "model": "模型结论", "performance": "性能结论", "repository": "模型文件结论"},
           "verdict": {"pass": "通过", "warn": "警告", "fail": "失败", "incomplete": "不完整",
                       "not_assessed": "未评估", "not_run": "未运行",
                       "not_comparable": "不可比"},
           "groups": {"results": "结果文件", "evidence": "证据日志", "notebooks": "已执行的笔记本",
                      "artifacts": "工具输出", "other": "其他"}},
}


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
    scopes: dict[str, str] = field(default_factory=dict)  # engine | model -> pass | warn | fail | incomplete | ...
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {name {zh, en}, text, measured_on}
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


def _summary_data(run_dir: Path) -> dict[str, Any]:
    try:
        return R.load(run_dir / "results" / "00_summary.json").data or {}
    except R.ResultsError:
        return {}


def _text(x: Any, lang: str = "en") -> str:
    """A summary text ({"zh", "en"} or plain) in one language."""
    if isinstance(x, dict):
        return str(x.get(lang) or x.get("en") or "")
    return "" if x is None else str(x)


def run_entry(run_dir: str | Path) -> RunEntry:
    run_dir = Path(run_dir)
    info = M.run_info(run_dir)
    e = RunEntry(run_id=run_dir.name)
    e.date = str(info.get("finished") or info.get("started") or "?")
    e.profile = str(info.get("profile") or "?")
    e.model = str(info.get("model") or "?")
    e.stand_in = bool(info.get("is_stand_in"))
    try:
        res = R.load(run_dir / "results" / "01_environment.json")
        dev = (res.data.get("facts") or {}).get("device") or {}
        e.device = str(dev.get("name") or res.metric("device") or "?")
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
        rows = M.check_matrix(run_dir)
        e.counts = V.verdict_counts(rows)
        e.verdict = V.verdict(e.counts)
        e.chapters = {k: str(v) for k, v in M.chapter_statuses(run_dir).items()}
    except Exception as err:  # noqa: BLE001  (an unreadable run still gets listed)
        e.verdict = f"unreadable: {type(err).__name__}"
    summary = _summary_data(run_dir)
    scopes = summary.get("scopes") if isinstance(summary.get("scopes"), dict) else {}
    for scope in SCOPES:
        v = scopes.get(scope)
        if isinstance(v, dict) and v.get("verdict"):
            e.scopes[scope] = str(v["verdict"])
    if not e.scopes and e.counts:  # no summary data (an old run): one verdict from all rows, for its two scopes
        e.scopes = {scope: e.verdict for scope in LEGACY_SCOPES}
    page = summary.get("page_one") if isinstance(summary.get("page_one"), dict) else {}
    if page.get("device") and e.device == "?":
        e.device = _text(page["device"])
    for m in summary.get("key_metrics") or []:
        if isinstance(m, dict) and m.get("id"):
            name = m.get("name") if isinstance(m.get("name"), dict) else {"en": str(m.get("name") or m["id"])}
            e.metrics[f"{m.get('chapter', '')}:{m['id']}"] = {
                "name": {"zh": name.get("zh") or name.get("en"), "en": name.get("en") or name.get("zh")},
                "text": str(m.get("text") or M.format_value(m.get("value"), m.get("unit") or "")),
                "measured_on": str(m.get("measured_on") or "")}
    if not e.metrics:
        for km in M.key_metrics(run_dir):
            if km.timing:
                continue
            e.metrics[f"{km.chapter}:{km.id}"] = {"name": {"zh": km.name_zh or km.name_en, "en": km.name_en},
                                                  "text": km.value_text,
                                                  "measured_on": getattr(km, "measured_on", "") or ""}
    rels = _files(run_dir)
    e.reports = [f for f in REPORT_FILES if (run_dir / f).is_file()]
    for group in GROUP_IDS:
        e.files[group] = [str(r) for r in rels if r.parts[0] == group]
    e.files["other"] = [str(r) for r in rels if r.parts[0] not in GROUP_IDS and str(r) not in e.reports]
    return e


# -- history ------------------------------------------------------------------------------------------------
def _signature(e: RunEntry) -> dict[str, Any]:
    """What the index compares between a run and the previous run of its profile."""
    sig: dict[str, Any] = {"device": e.device, "model": e.model}
    sig.update({f"scope:{k}": v for k, v in e.scopes.items()})
    sig.update({f"count:{k}": v for k, v in e.counts.items()})
    sig.update({f"metric:{k}": m.get("text") for k, m in e.metrics.items()})
    return sig


def history(entries: list[RunEntry], lang: str = "en", max_metrics: int = 8) -> list[dict[str, Any]]:
    """Per profile: its runs newest first, each with the keys that changed since the profile's previous
    run, and the key metrics shown as columns (those the most runs have, at most max_metrics)."""
    out = []
    for profile in sorted({e.profile for e in entries}):
        runs = sorted((e for e in entries if e.profile == profile), key=lambda x: x.run_id)
        rows, prev = [], None
        for e in runs:
            sig = _signature(e)
            changed = set() if prev is None else {k for k in set(sig) | set(prev) if sig.get(k) != prev.get(k)}
            rows.append({"entry": e, "changed": changed})
            prev = sig
        seen: dict[str, int] = {}
        names: dict[str, str] = {}
        for e in runs:
            for k, m in e.metrics.items():
                if k.endswith(":device"):
                    continue  # the Device column shows it
                seen[k] = seen.get(k, 0) + 1
                names[k] = _text(m.get("name"), lang)
        ids = sorted(seen, key=lambda k: (-seen[k], list(seen).index(k)))[:max_metrics]
        out.append({"name": profile, "rows": rows[::-1], "metrics": [{"id": k, "name": names[k]} for k in ids]})
    return out


# -- HTML -----------------------------------------------------------------------------------------------------
def _env():
    import jinja2

    if not (TEMPLATES / "index.html.j2").is_file():
        raise PublishError(f"{TEMPLATES}: site templates not found (a source checkout holds report/publish/)")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False)


def _switch(lang: str, names: dict[str, str]) -> dict[str, str]:
    other = "zh" if lang == "en" else "en"
    return {"href": names[other], "label": "中文" if other == "zh" else "English"}


def index_html(entries: list[RunEntry], built: str, lang: str = "en") -> str:
    return _env().get_template("index.html.j2").render(
        lang=lang, t=WORDS[lang], title=WORDS[lang]["title"], switch=_switch(lang, INDEX), entries=entries,
        built=built, profiles=history(entries, lang), scopes=SCOPES, manifest=MANIFEST)


def run_html(e: RunEntry, lang: str = "en") -> str:
    t = WORDS[lang]
    groups = [(g, t["groups"][g]) for g in GROUP_IDS + ("other",)]
    return _env().get_template("run.html.j2").render(
        lang=lang, t=t, title=f"{e.run_id} · BitCPM4-0.5B", switch=_switch(lang, INDEX), e=e, scopes=SCOPES,
        groups=groups, index_name=INDEX[lang])


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
            for lang, name in INDEX.items():
                (dest / name).write_text(run_html(e, lang), encoding="utf-8")
            entries.append(e)
        built = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
        for lang, name in INDEX.items():
            (tmp / name).write_text(index_html(entries, built, lang), encoding="utf-8")
        (tmp / "runs.json").write_text(json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=2) + "\n",
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
