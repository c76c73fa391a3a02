"""The check matrix and key metrics, read from a run's results files (never written by hand): one row per
check, plus one per chapter that did not finish (`check_matrix`), every chapter's key metrics (`key_metrics`),
each chapter's status and the run's run.json; and the text helpers the summary's modules share (`tdict`,
`short`, `common_reason`, `spec_index`).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters, chapter
from bitcpm_validation.report.display import T


def tdict(t: T | str) -> dict[str, str]:
    """A text as stored in results: {"zh": ..., "en": ...}."""
    return {"zh": t.zh, "en": t.en} if isinstance(t, T) else {"zh": str(t), "en": str(t)}


@dataclass
class MatrixRow:
    chapter: str  # chapter id
    heading: str  # "03 · 推理测试 · Inference"
    chapter_status: str  # ok | failed | skipped | running | missing | unreadable | not_selected
    check_id: str
    name_en: str
    name_zh: str
    status: str  # pass | warn | fail | not_run
    reason_en: str
    reason_zh: str
    scope: Optional[str] = None  # engine | model | document; None: a chapter-level row or a legacy row
    kind: str = "check"  # check: a recorded row; chapter: the chapter itself (did not run, failed, ...)
    title: T = T("", "")  # "03 推理测试" / "03 Inference"

    @property
    def mark(self) -> str:
        return R.STATUS_MARK[self.status]

    @property
    def name_t(self) -> T:
        return T(self.name_zh or self.name_en, self.name_en or self.name_zh)

    @property
    def reason_t(self) -> T:
        return T(self.reason_zh or self.reason_en, self.reason_en or self.reason_zh)

    @property
    def base_id(self) -> str:
        return self.check_id.split(":", 1)[0]


@dataclass
class KeyMetric:
    chapter: str
    heading: str
    id: str
    name_en: str
    name_zh: str
    value: Any
    unit: str
    note: str = ""
    timing: bool = False  # volatile between identical runs
    measured_on: str = ""  # "model · weights · device"

    @property
    def value_text(self) -> str:
        return format_value(self.value, self.unit)


def format_value(v: Any, unit: str = "") -> str:
    """A number as a reader reads it: thousands separators, no scientific notation, the unit after it."""
    if v is None:
        s = "—"
    elif isinstance(v, bool):
        s = "yes" if v else "no"
    elif isinstance(v, float):
        s = _format_float(v)
    elif isinstance(v, int):
        s = f"{v:,}"
    else:
        s = str(v)
    return f"{s} {unit}".strip() if unit and v is not None else s


def _format_float(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:,.1f}"
    if a >= 1:
        return f"{v:,.2f}"
    decimals = min(12, 3 - math.floor(math.log10(a)))  # four significant digits
    return f"{v:.{decimals}f}".rstrip("0").rstrip(".")


def _title(info: ChapterInfo) -> T:
    return T(f"{info.number} {info.title_zh}", f"{info.number} {info.title_en}")


def _chapters_for(run_dir: Path) -> list[tuple[ChapterInfo, Optional[Path]]]:
    rdir = R.results_dir(run_dir)
    known = {c.id: c for c in all_chapters()}
    for p in sorted(rdir.glob("[0-9][0-9]_*.json")):
        if p.stem not in known:
            known[p.stem] = ChapterInfo(p.stem, p.stem.split("_", 1)[-1].title(), p.stem.split("_", 1)[-1])
    out = []
    for cid in sorted(known):
        if cid == SUMMARY_ID:
            continue
        p = rdir / f"{cid}.json"
        out.append((known[cid], p if p.exists() else None))
    return out


def load_chapter(path: Optional[Path]) -> tuple[Optional[R.ChapterResult], Optional[str]]:
    """(result, error): an unreadable file gives (None, one-line reason)."""
    if path is None:
        return None, None
    try:
        return R.load(path), None
    except R.ResultsError as e:
        return None, str(e)


def chapter_results(run_dir: str | Path) -> dict[str, R.ChapterResult]:
    """The readable results of a run by chapter id (the summary's own excluded)."""
    out = {}
    for info, path in _chapters_for(Path(run_dir)):
        res, _ = load_chapter(path)
        if res is not None:
            out[info.id] = res
    return out


def selected_chapters(params: Any) -> Optional[list[str]]:
    """Chapter ids a profile's `chapters:` selects, or None for all (the summary's `check_matrix(selected=...)`)."""
    wanted = list(getattr(params, "chapters", None) or ["all"])
    if "all" in wanted:
        return None
    out = []
    for w in wanted:
        try:
            out.append(chapter(w).id)
        except KeyError:  # the runner refuses an unknown name before any chapter runs
            continue
    return out


def check_matrix(run_dir: str | Path, selected: Optional[list[str]] = None) -> list[MatrixRow]:
    """Every check of every chapter of a run, in chapter order.

    `selected`: chapter ids the run's params asked for (others without results read "not selected").
    """
    run_dir = Path(run_dir)
    rows: list[MatrixRow] = []
    for info, path in _chapters_for(run_dir):
        heading, title = info.heading(), _title(info)
        res, err = load_chapter(path)

        def chapter_row(status, name_en, name_zh, reason_en, reason_zh, chapter_status, cid="chapter"):
            rows.append(MatrixRow(info.id, heading, chapter_status, cid, name_en, name_zh, status, reason_en,
                                  reason_zh, None, "chapter", title))

        if res is None:
            if err:
                chapter_row("fail", "Results file", "结果文件", f"unreadable: {err}", f"无法读取：{err}", "unreadable",
                            "results")
            elif selected is not None and info.id not in selected:
                chapter_row("not_run", "Chapter", "章节", "not selected in this profile", "本配置未选择此章节",
                            "not_selected")
            else:
                chapter_row("not_run", "Chapter", "章节", "did not run (no results file)", "未运行（无结果文件）",
                            "missing")
            continue
        if res.status == "failed":
            chapter_row("fail", "Chapter ran to the end", "章节完整运行", f"failed: {res.error or 'unknown error'}",
                        f"运行失败：{res.error or '未知错误'}", "failed")
        elif res.status == "running":
            chapter_row("fail", "Chapter ran to the end", "章节完整运行", "interrupted: the chapter never finished",
                        "中断：章节未运行完", "running")
        elif res.status == "skipped":
            chapter_row("not_run", "Chapter", "章节", f"skipped: {res.reason_en or ''}".rstrip(": "),
                        f"跳过：{res.reason_zh}" if res.reason_zh else "跳过", "skipped")
        for c in res.checks:
            rows.append(MatrixRow(info.id, heading, res.status, c.id, c.name_en, c.name_zh, c.status, c.detail_en,
                                  c.detail_zh or c.detail_en, c.scope, "check", title))
        if res.status == "ok" and not res.checks:
            chapter_row("not_run", "Chapter", "章节", "ran, recorded no checks", "已运行，未记录检查项", "ok")
    return rows


def key_metrics(run_dir: str | Path) -> list[KeyMetric]:
    out: list[KeyMetric] = []
    for info, path in _chapters_for(Path(run_dir)):
        res, _ = load_chapter(path)
        if res is None:
            continue
        for m in res.metrics:
            if m.key:
                out.append(KeyMetric(info.id, info.heading(), m.id, m.name_en, m.name_zh, m.value, m.unit, m.note,
                                     m.timing, m.measured_on))
    return out


def chapter_statuses(run_dir: str | Path) -> dict[str, str]:
    """chapter id -> ok | failed | skipped | running | missing | unreadable (summary excluded)."""
    out = {}
    for info, path in _chapters_for(Path(run_dir)):
        res, err = load_chapter(path)
        out[info.id] = res.status if res else ("unreadable" if err else "missing")
    return out


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """run.json written by the runner (profile, params, started, chapters), or {}."""
    p = Path(run_dir) / "run.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- helpers the summary's modules share (verdicts, findings, page_one, summary) -----------------------------------
def spec_index(specs: Iterable[CheckSpec]) -> dict[tuple[str, str], CheckSpec]:
    """The registered checks by (chapter, check id)."""
    return {(s.chapter, s.id): s for s in specs}


def short(text: str, limit: int = 90) -> str:
    """One line of at most `limit` characters: the first sentence, else cut at a word (… marks the cut)."""
    s = " ".join(str(text or "").split())
    m = re.search(r"(?<=[.;!?])\s|(?<=[。；！？])", s)
    if m and 0 < m.start() <= limit:
        s = s[: m.start()].rstrip()
    if len(s) <= limit:
        return s
    cut = s[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:，；：") + "…"


def common_reason(texts: list[str], limit: int) -> str:
    """What a family's reasons share (their common start, cut at a word or clause), else the first, shortened."""
    prefix = os.path.commonprefix(texts)
    if len(set(texts)) == 1:
        return short(texts[0], limit)
    cut = max(prefix.rfind(c) for c in " :：，,；;")
    if cut >= 12:
        return short(prefix[:cut].rstrip(" :：，,；;"), limit - 1) + "…"
    return short(texts[0], limit)
