"""The summary chapter's content, derived from a run's results files (never written by hand).

    rows = check_matrix(run_dir)          # one row per check, plus one per chapter without checks
    km = key_metrics(run_dir)             # metrics with key: true, in chapter order
    counts = verdict_counts(rows)         # {"pass": n, "warn": n, "fail": n, "not_run": n}

A chapter that did not run, failed or was skipped still appears (— or ❌, with its reason). Chapters
are discovered from the registry, the notebooks folder and the results folder, so a chapter added
later shows up without editing anything here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters

STATUS_LABEL = {"pass": "通过 pass", "warn": "注意 warn", "fail": "失败 fail", "not_run": "未运行 not run"}


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

    @property
    def mark(self) -> str:
        return R.STATUS_MARK[self.status]

    @property
    def name(self) -> str:
        return f"{self.name_zh} · {self.name_en}" if self.name_zh and self.name_zh != self.name_en else self.name_en

    @property
    def reason(self) -> str:
        if self.reason_zh and self.reason_zh != self.reason_en:
            return f"{self.reason_zh} · {self.reason_en}" if self.reason_en else self.reason_zh
        return self.reason_en


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

    @property
    def name(self) -> str:
        return f"{self.name_zh} · {self.name_en}" if self.name_zh and self.name_zh != self.name_en else self.name_en

    @property
    def value_text(self) -> str:
        return format_value(self.value, self.unit)


def format_value(v: Any, unit: str = "") -> str:
    if v is None:
        s = "—"
    elif isinstance(v, bool):
        s = "yes" if v else "no"
    elif isinstance(v, float):
        s = f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    elif isinstance(v, int):
        s = f"{v:,}"
    else:
        s = str(v)
    return f"{s} {unit}".strip() if unit and v is not None else s


def _chapters_for(run_dir: Path, selected: Optional[list[str]] = None) -> list[tuple[ChapterInfo, Optional[Path]]]:
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


def check_matrix(run_dir: str | Path, selected: Optional[list[str]] = None) -> list[MatrixRow]:
    """Every check of every chapter of a run, in chapter order.

    `selected`: chapter ids the run's params asked for (others without results read "not selected").
    """
    run_dir = Path(run_dir)
    rows: list[MatrixRow] = []
    for info, path in _chapters_for(run_dir, selected):
        heading = info.heading()
        res, err = load_chapter(path)

        def add(status, cid, name_en, name_zh, reason_en, reason_zh, chapter_status):
            rows.append(MatrixRow(info.id, heading, chapter_status, cid, name_en, name_zh, status, reason_en, reason_zh))

        if res is None:
            if err:
                add("fail", "results", "Results file", "结果文件", f"unreadable: {err}", f"无法读取:{err}", "unreadable")
            elif selected is not None and info.id not in selected:
                add("not_run", "chapter", "Chapter", "章节", "not selected in this profile", "本配置未选择此章节",
                    "not_selected")
            else:
                add("not_run", "chapter", "Chapter", "章节", "did not run (no results file)", "未运行(无结果文件)",
                    "missing")
            continue
        if res.status == "failed":
            add("fail", "chapter", "Chapter ran to the end", "章节完整运行", f"failed: {res.error or 'unknown error'}",
                "运行失败", "failed")
        elif res.status == "running":
            add("fail", "chapter", "Chapter ran to the end", "章节完整运行", "interrupted: the chapter never finished",
                "中断:章节未运行完", "running")
        elif res.status == "skipped":
            add("not_run", "chapter", "Chapter", "章节", f"skipped: {res.reason_en or ''}".rstrip(": "),
                f"跳过:{res.reason_zh}" if res.reason_zh and res.reason_zh != res.reason_en else "跳过", "skipped")
        for c in res.checks:
            add(c.status, c.id, c.name_en, c.name_zh, c.detail_en, c.detail_zh or c.detail_en, res.status)
        if res.status == "ok" and not res.checks:
            add("not_run", "chapter", "Chapter", "章节", "ran, recorded no checks", "已运行,未记录检查项", "ok")
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
                                     m.timing))
    return out


def verdict_counts(rows: list[MatrixRow]) -> dict[str, int]:
    out = {k: 0 for k in R.STATUS_MARK}
    for r in rows:
        out[r.status] += 1
    return out


def chapter_statuses(run_dir: str | Path) -> dict[str, str]:
    """chapter id -> ok | failed | skipped | running | missing | unreadable (summary excluded)."""
    out = {}
    for info, path in _chapters_for(Path(run_dir)):
        res, err = load_chapter(path)
        out[info.id] = res.status if res else ("unreadable" if err else "missing")
    return out


def verdict(counts: dict[str, int]) -> str:
    if counts.get("fail"):
        return "fail"
    if counts.get("warn"):
        return "warn"
    return "pass" if counts.get("pass") else "not_run"


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """run.json written by the runner (profile, params, started, chapters), or {}."""
    p = Path(run_dir) / "run.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- rendering ------------------------------------------------------------------------------------
def matrix_table(rows: list[MatrixRow]) -> tuple[list[str], list[list[str]]]:
    headers = ["章节 Chapter", "检查项 Check", "状态 Status", "说明 Reason"]
    body = [[r.heading, r.name, r.mark, r.reason] for r in rows]
    return headers, body


def metrics_table(km: list[KeyMetric]) -> tuple[list[str], list[list[str]]]:
    headers = ["章节 Chapter", "指标 Metric", "值 Value"]
    return headers, [[m.heading, m.name, m.value_text] for m in km]


def matrix_markdown(rows: list[MatrixRow]) -> str:
    from bitcpm_validation.report.textsafe import md_table

    h, b = matrix_table(rows)
    return md_table(h, b, trusted_cols=(2,))


def metrics_markdown(km: list[KeyMetric]) -> str:
    from bitcpm_validation.report.textsafe import md_table

    h, b = metrics_table(km)
    return md_table(h, b)


def counts_line(counts: dict[str, int]) -> str:
    return " · ".join(f"{R.STATUS_MARK[k]} {counts.get(k, 0)}" for k in R.STATUS_MARK)
