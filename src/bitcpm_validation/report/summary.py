"""The summary chapter (page one of the report), derived from a run's results files, never written by hand.

    rows = check_matrix(run_dir)                  # one row per check, plus one per chapter that did not finish
    specs = bitcpm_validation.chapters.registry() # (the notebook passes it in: report never imports a chapter)
    scopes = scope_verdicts(rows, specs)          # {"engine": ScopeVerdict, "model": ScopeVerdict}
    found = findings(rows, specs)                 # each ❌ / ⚠️ in one line: what, impact, what to do
    claims = document_claims(rows)                # the original document's claims (never in a verdict)
    page = page_one(run_dir, params, rows, specs) # everything page one shows, as JSON-ready data

Verdicts, per scope (engine, model, performance, repository; see report.checks), each answering one question,
so that a slow host or a defect of the model's files never reads as "the engine is unfaithful":

- fail:            a check of the scope failed;
- incomplete:      else, a chapter with checks of the scope failed or was interrupted, its results are
                   unreadable, or a chapter recorded rows without a scope;
- not_comparable:  else, a check of the scope measured on an invalid basis (a busy host: see
                   chapters.performance and engine.hostload); the reasons say why, and page one says what to
                   re-run (RERUN_PERFORMANCE);
- incomplete:      else, where something was judged but a check is `not_run` or a chapter is skipped / missing;
- warn / pass:     else, the worst judged check;
- not_assessed:    nothing of the scope was judged (every check not_run, e.g. the model scope on a stand-in
                   trained on the probes) and no chapter of the scope failed: the reasons say why.

Document-scope rows (the original document's claims) are findings, never in a verdict. A row without a
scope (results written before the registry) counts in no verdict; it makes its chapter's scopes
incomplete and is listed as a finding, so it is never silently counted or silently dropped.

Data the summary notebook stores in results/00_summary.json (`data[...]`, read by render and publish;
every text is {"zh": ..., "en": ...}, marks are ✅ ⚠️ ❌ —):

- data["page_one"]: {"model", "weights" ("stand-in" | "real" | "dummy" | "unknown"), "weights_text",
  "also_measured_on" [weights labels of key metrics other than the run's own weights], "source"
  ({hub, repo_id, revision, commit} or None), "engine", "device", "device_kind", "profile",
  "first_line" (the assessed / not assessed sentence), "verdict" (overall), "next_command" (text or None:
  the highlighted box of a stand-in or CPU run), "document_line" (one line on the original document's
  claims, or None), "performance_basis" (what the performance figures were judged against, from chapter 07's
  data["judged_against"], or None), "rerun_performance" (the command, when the performance verdict is not
  comparable, else None)}
- data["scopes"]: {scope: {"verdict", "mark", "assessed", "counts" {pass, warn, fail, not_run},
  "reasons" [text: why incomplete / not assessed], "flagged" [text: the checks that gave a fail / warn
  verdict], "chapters" [chapter ids]}} for engine, model, performance and repository
- data["findings"]: [{"status", "mark", "scope" (engine | model | document | None), "chapter", "check_id",
  "what", "impact", "remedy", "line"}]: fail first, then warn
- data["document"]: [{"chapter", "check_id", "status", "mark", "claim", "says"}]
- data["matrix"]: [{"chapter", "chapter_title", "chapter_status", "kind" (check | chapter), "check_id", "scope",
  "status", "mark", "name", "reason"}] (every row, unfolded; reason shortened to one line)
- data["registry"]: [{"id", "chapter", "scope", "name", "criterion", "worst", "worst_reason"}]
- data["key_metrics"]: [{"chapter", "id", "name" (card_name: a name, never a formula), "value", "unit", "text",
  "measured_on"}] (not timing);
  data["timings"]["key_metrics"]: the same for timing metrics (volatile between runs)
- data["chapters"]: {chapter id: ok | failed | skipped | running | missing | unreadable}
- data["sections"]: {"probes"} (report.sections.sections_data); data["timings"]["sections"]: {"commands",
  "evidence", "change_log"} (run paths, file sizes and the previous run differ between identical runs)

Page one (the notebook's first cells) is a results card: the identity line (`validated_line`), the verdict per
scope with its plain reason (`scopes_table`; a check family's reasons grouped), the findings (`findings_table`,
at most PAGE_ONE_FINDINGS rows), one line on the document's claims, and one table (`results_card`:
metric | value | unit | n / ± | measured on | chapter); each fact once.
- metrics "verdict" (the overall verdict: the worst assessed scope, fail > incomplete > warn > pass, else
  not_assessed), "verdict_engine", "verdict_model", "checks_<status>" (counts of the rows in a verdict)

Verdict marks: ✅ pass, ⚠️ warn, ❌ fail, ◐ incomplete, ⊘ not comparable, — not assessed (VERDICT_MARK).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters, chapter
from bitcpm_validation.report.display import T

STATUS_WORD = {"pass": T("通过", "pass"), "warn": T("警告", "warn"), "fail": T("失败", "fail"),
               "not_run": T("未运行", "not run"), "not_comparable": T("不可比", "not comparable")}

# one question each: engine (runs this model faithfully), model (is good), performance (fast enough, relative to
# what), repository (the model's own files are consistent); the document's claims are findings, never a verdict
VERDICT_SCOPES = ("engine", "model", "performance", "repository")
SCOPE_WORD = {"engine": T("引擎", "engine"), "model": T("模型", "model"), "performance": T("性能", "performance"),
              "repository": T("模型文件", "repository"), "document": T("原文档", "document")}
VERDICT_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌", "incomplete": "◐", "not_comparable": "⊘",
                "not_assessed": "—"}
VERDICT_WORD = {"pass": T("通过", "pass"), "warn": T("警告", "warn"), "fail": T("失败", "fail"),
                "incomplete": T("不完整", "incomplete"), "not_comparable": T("不可比", "not comparable"),
                "not_assessed": T("未评估", "not assessed")}
_VERDICT_ORDER = ("fail", "incomplete", "not_comparable", "warn", "pass")  # worst first; not_assessed never decides
# what to run when a measurement was not comparable (a busy host): the performance chapter again, into the same run
RERUN_PERFORMANCE = "make report RESUME=runs/{run} ONLY=performance"

# chapter_status values of a chapter whose checks are (partly) missing
CHAPTER_PROBLEMS = ("failed", "running", "unreadable", "skipped", "missing", "not_selected")
_BROKEN = ("failed", "running", "unreadable")  # a failure, not a deliberate absence

_ASCEND_RUN = T("请在昇腾主机上运行 `make report PARAMS=params/ascend-910b3.yaml`（先设置 model.path，或使用 "
                "`MODEL=openbmb/BitCPM4-0.5B`）。",
                "On an Ascend host run make report PARAMS=params/ascend-910b3.yaml (set model.path, or "
                "MODEL=openbmb/BitCPM4-0.5B).")
NEXT_COMMAND = T("本次运行验证的是流程本身，而不是 BitCPM4 在昇腾上的表现。" + _ASCEND_RUN.zh,
                 "This run validates the pipeline, not BitCPM4 on Ascend. " + _ASCEND_RUN.en)
NEXT_COMMAND_CPU = T("本次运行在 CPU 上验证该模型，而不是在昇腾上。" + _ASCEND_RUN.zh,
                     "This run validates the model on a CPU, not on Ascend. " + _ASCEND_RUN.en)


def tdict(t: T | str) -> dict[str, str]:
    """A text as stored in results: {"zh": ..., "en": ...}."""
    return {"zh": t.zh, "en": t.en} if isinstance(t, T) else {"zh": str(t), "en": str(t)}


# -- the check matrix -------------------------------------------------------------------------------
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


def counts_in_verdict(row: MatrixRow) -> bool:
    """A chapter-level row or a check of the engine / model scope (not a document claim, not a row without scope)."""
    return row.kind == "chapter" or row.scope in VERDICT_SCOPES


def verdict_counts(rows: list[MatrixRow]) -> dict[str, int]:
    """✅ ⚠️ ❌ — counts of the rows that count in a verdict (document claims and rows without scope excluded)."""
    out = {k: 0 for k in R.STATUS_MARK}
    for r in rows:
        if counts_in_verdict(r):
            out[r.status] += 1
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


# -- verdicts per scope -----------------------------------------------------------------------------
@dataclass
class ScopeVerdict:
    scope: str
    verdict: str  # pass | warn | fail | incomplete | not_assessed
    counts: dict[str, int]
    reasons: list[T] = field(default_factory=list)  # why incomplete / not assessed (deduplicated)
    chapters: list[str] = field(default_factory=list)  # chapters with checks of this scope
    flagged: list[T] = field(default_factory=list)  # names of the checks that gave a fail / warn verdict

    @property
    def assessed(self) -> bool:
        return self.verdict != "not_assessed"

    @property
    def mark(self) -> str:
        return VERDICT_MARK[self.verdict]

    def to_data(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "mark": self.mark, "assessed": self.assessed, "counts": dict(self.counts),
                "reasons": [tdict(r) for r in self.reasons], "chapters": list(self.chapters),
                "flagged": [tdict(f) for f in self.flagged]}


def chapter_scopes(rows: Iterable[MatrixRow], specs: Iterable[CheckSpec] = ()) -> dict[str, set[str]]:
    """chapter id -> the scopes of its checks: from the registry and from what its rows recorded."""
    out: dict[str, set[str]] = {}
    for s in specs:
        out.setdefault(s.chapter, set()).add(s.scope)
    for r in rows:
        if r.kind == "check" and r.scope:
            out.setdefault(r.chapter, set()).add(r.scope)
    return out


def _affects(chapter: str, scope: str, scopes: dict[str, set[str]]) -> bool:
    """Does a problem of `chapter` touch `scope`? A chapter whose scopes are unknown touches every verdict scope."""
    mine = scopes.get(chapter, set()) & set(VERDICT_SCOPES)
    return scope in mine if mine else not scopes.get(chapter)


def _add(reasons: list[T], t: T) -> None:
    if t not in reasons:
        reasons.append(t)


def _chapter_problem(r: MatrixRow) -> T:
    n = r.title
    if r.chapter_status in ("failed", "skipped"):  # the row's reason reads "failed: …" / "skipped: …"
        return T(f"{n.zh}：{short(r.reason_zh, 90)}", f"chapter {n.en} {short(r.reason_en, 90)}")
    if r.chapter_status == "running":
        return T(f"{n.zh}：中断，未运行完", f"chapter {n.en} was interrupted")
    if r.chapter_status == "unreadable":
        return T(f"{n.zh}：结果文件无法读取", f"chapter {n.en}: results file unreadable")
    if r.chapter_status == "not_selected":
        return T(f"{n.zh}：本配置未选择此章节", f"chapter {n.en} not selected by the profile")
    return T(f"{n.zh}：未运行", f"chapter {n.en} did not run")


def scope_verdicts(rows: list[MatrixRow], specs: Iterable[CheckSpec] = ()) -> dict[str, ScopeVerdict]:
    """The verdict of each verdict scope (engine, model) from a run's matrix rows; see the module docstring."""
    specs = list(specs)
    scopes = chapter_scopes(rows, specs)
    problems = [r for r in rows if r.kind == "chapter" and r.chapter_status in CHAPTER_PROBLEMS]
    unscoped: dict[str, int] = {}
    for r in rows:
        if r.kind == "check" and r.scope is None:
            unscoped[r.chapter] = unscoped.get(r.chapter, 0) + 1
    titles = {r.chapter: r.title for r in rows}
    index = _spec_index(specs)
    out = {}
    for scope in VERDICT_SCOPES:
        mine = [r for r in rows if r.kind == "check" and r.scope == scope]
        counts = {k: sum(r.status == k for r in mine) for k in R.STATUS_MARK}
        failures: list[T] = []  # why the scope is incomplete or not assessed: failures first, then
        not_run: list[T] = []  # the checks that did not run (their own reasons), then absent chapters
        absent: list[T] = []
        broken = False
        for r in problems:
            if _affects(r.chapter, scope, scopes):
                _add(failures if r.chapter_status in _BROKEN else absent, _chapter_problem(r))
                broken = broken or r.chapter_status in _BROKEN
        legacy = False  # rows without a scope in a chapter of this scope: they cannot be counted
        for cid, n in unscoped.items():
            if _affects(cid, scope, scopes):
                legacy, t = True, titles[cid]
                _add(absent, T(f"{t.zh}：{n} 行没有范围（旧结果），不计入结论，请重新运行该章",
                               f"chapter {t.en}: {n} row(s) without a scope (old results) are not counted: "
                               f"re-run the chapter"))
        for t in _not_run_reasons(mine, index):
            _add(not_run, t)
        reasons = failures + not_run + absent
        judged = counts["pass"] + counts["warn"] + counts["fail"]
        if counts["fail"]:
            v = "fail"
        elif broken or legacy:
            v = "incomplete"
        elif counts["not_comparable"]:  # an invalid measurement (a busy host): neither ✅ nor ❌
            v = "not_comparable"
        elif not judged:
            v = "not_assessed"
            if not reasons:
                reasons.append(T("本次运行没有记录此范围的检查项", "this run recorded no check of this scope"))
        elif reasons:
            v = "incomplete"
        else:
            v = "warn" if counts["warn"] else "pass"
        chapters = sorted(c for c, s in scopes.items() if scope in s)
        flagged: list[T] = []
        for r in mine:
            if r.status == v == "not_comparable":  # the reason is what matters: "host busy: ..."
                _add(flagged, T(f"{r.name_t.zh}：{short(r.reason_t.zh, 90)}", f"{r.name_t.en}: {short(r.reason_t.en, 90)}"))
            elif r.status == v:
                _add(flagged, T(f"{r.title.zh.split(' ')[0]} {r.name_t.zh}", f"{r.title.en.split(' ')[0]} {r.name_t.en}"))
        out[scope] = ScopeVerdict(scope, v, counts, reasons, chapters, flagged)
    return out


def _not_run_reasons(rows: list[MatrixRow], index: dict[tuple[str, str], CheckSpec]) -> list[T]:
    """Why checks did not run, one line per check family: "Probe (15 items): <their shared reason>" rather than
    fifteen lines that say the same (issue 20.2)."""
    families: dict[tuple[str, str], list[MatrixRow]] = {}
    for r in rows:
        if r.status == "not_run":
            families.setdefault((r.chapter, r.base_id if ":" in r.check_id else r.check_id), []).append(r)
    out: list[T] = []
    for (cid, base), g in families.items():
        if len(g) == 1:
            r = g[0]
            out.append(T(f"{r.name_t.zh}：{short(r.reason_t.zh, 90)}", f"{r.name_t.en}: {short(r.reason_t.en, 90)}"))
            continue
        spec = index.get((cid, base))
        zh, en = (spec.name_zh, spec.name_en) if spec else (base, base)
        out.append(T(f"{zh}（{len(g)} 项均未评判）：{_common_reason([x.reason_t.zh for x in g], 90)}",
                     f"{en} (all {len(g)} not judged): {_common_reason([x.reason_t.en for x in g], 90)}"))
    return out


def overall(verdicts: dict[str, ScopeVerdict] | Iterable[str]) -> str:
    """The run's one-word verdict: the worst assessed scope (fail > incomplete > warn > pass), else not_assessed."""
    vs = [v.verdict for v in verdicts.values()] if isinstance(verdicts, dict) else list(verdicts)
    for v in _VERDICT_ORDER:
        if v in vs:
            return v
    return "not_assessed"


def verdict(counts_or_rows: dict[str, int] | list[MatrixRow], specs: Iterable[CheckSpec] = ()) -> str:
    """The overall verdict. Given matrix rows: `overall(scope_verdicts(rows, specs))`. Given counts from
    `verdict_counts` (which leaves out document claims and rows without scope): fail / warn / pass / not_run."""
    if isinstance(counts_or_rows, list):
        return overall(scope_verdicts(counts_or_rows, specs))
    counts = counts_or_rows
    if counts.get("fail"):
        return "fail"
    if counts.get("warn"):
        return "warn"
    return "pass" if counts.get("pass") else "not_run"


def first_line(verdicts: dict[str, ScopeVerdict]) -> T:
    """Page one's first sentence: which scopes were assessed (with their verdict), which not and why."""
    done = [v for v in verdicts.values() if v.assessed]
    nope = [v for v in verdicts.values() if not v.assessed]
    zh, en = [], []
    if done:
        zh.append("已评估：" + "；".join(f"{SCOPE_WORD[v.scope].zh} {v.mark} {VERDICT_WORD[v.verdict].zh}" for v in done) + "。")
        en.append("Assessed: " + "; ".join(f"{SCOPE_WORD[v.scope].en} {v.mark} {VERDICT_WORD[v.verdict].en}"
                                           for v in done) + ".")
    if nope:
        zh.append("未评估：" + "；".join(f"{SCOPE_WORD[v.scope].zh}（{short(v.reasons[0].zh, 80)}）" for v in nope) + "。")
        en.append("Not assessed: " + "; ".join(f"{SCOPE_WORD[v.scope].en} ({short(v.reasons[0].en, 80)})"
                                               for v in nope) + ".")
    return T("".join(zh), " ".join(en))


# -- findings ---------------------------------------------------------------------------------------
_IMPACT = {  # short: page one holds every finding
    ("engine", "fail"): T("引擎在此设备上未忠实运行该模型，引擎结论失败", "engine not faithful here: engine verdict ❌"),
    ("engine", "warn"): T("引擎可运行，此项需复核", "engine runs; this needs a second look"),
    ("model", "fail"): T("模型未达判据，模型结论失败", "model misses the criterion: model verdict ❌"),
    ("model", "warn"): T("模型质量存疑", "model quality in doubt"),
    ("performance", "fail"): T("在安静的主机上仍明显慢于该设备可达到的速度，性能结论失败（不影响引擎结论）",
                               "slower than this device reaches, on a quiet host: performance verdict ❌ (the engine "
                               "verdict is not affected)"),
    ("performance", "warn"): T("速度低于该设备可达到的水平，需复核", "below what this device reaches; needs a second look"),
    ("repository", "fail"): T("模型目录自身的文件不一致，模型文件结论失败（不影响引擎结论）",
                              "the model's own files are inconsistent: repository verdict ❌ (the engine verdict is not "
                              "affected)"),
    ("repository", "warn"): T("模型目录的文件需复核", "the model's files need a second look"),
    ("document", "fail"): T("原文档的说法不成立（不计入结论）", "the document's claim does not hold (no verdict)"),
    ("document", "warn"): T("原文档的说法未完全证实（不计入结论）", "the document's claim is not fully borne out (no verdict)"),
}


@dataclass
class Finding:
    status: str  # fail | warn | not_comparable
    scope: Optional[str]  # engine | model | performance | repository | document | None (a chapter, a row without scope)
    chapter: str
    check_id: str
    what: T
    impact: T
    remedy: T

    @property
    def mark(self) -> str:
        return R.STATUS_MARK[self.status]

    @property
    def line(self) -> T:
        return T(f"{self.mark} {self.what.zh}：{self.impact.zh}；{self.remedy.zh}",
                 f"{self.mark} {self.what.en}: {self.impact.en}; {self.remedy.en}")

    def to_data(self) -> dict[str, Any]:
        return {"status": self.status, "mark": self.mark, "scope": self.scope, "chapter": self.chapter,
                "check_id": self.check_id, "what": tdict(self.what), "impact": tdict(self.impact),
                "remedy": tdict(self.remedy), "line": tdict(self.line)}


_END = ".;:,。；：，"  # a shortened reason's closing punctuation, dropped before ": impact"


def _spec_index(specs: Iterable[CheckSpec]) -> dict[tuple[str, str], CheckSpec]:
    return {(s.chapter, s.id): s for s in specs}


def _see_chapter(r: MatrixRow) -> T:
    number = r.title.en.split(" ", 1)[0]
    return T(f"见第 {number} 章", f"see chapter {number}")


def findings(rows: list[MatrixRow], specs: Iterable[CheckSpec] = ()) -> list[Finding]:
    """Each ❌, ⚠️ and ⊘ of the run in one line (what, impact, what to do): failures first, then warnings, then
    measurements that are not comparable; chapter failures and rows without a scope included, document claims
    last within each status."""
    index = _spec_index(specs)
    out: list[Finding] = []
    for r in rows:
        if r.status not in ("fail", "warn", "not_comparable"):
            continue
        what = T(f"{r.title.zh} {r.name_t.zh}：{short(r.reason_t.zh, 100).rstrip(_END)}",
                 f"{r.title.en} {r.name_t.en}: {short(r.reason_t.en, 100).rstrip(_END)}")
        if r.kind == "chapter":
            out.append(Finding(r.status, None, r.chapter, r.check_id, what,
                               T("本章的检查项缺失，相关结论不完整", "its checks are missing: verdicts incomplete"),
                               T(f"查看 evidence/{r.chapter}.log，修正后用 --resume 重新运行",
                                 f"read evidence/{r.chapter}.log, fix, re-run with --resume")))
            continue
        if r.scope is None:
            out.append(Finding(r.status, None, r.chapter, r.check_id, what,
                               T("此行没有范围（旧结果），不计入任何结论", "this row has no scope (old results) and "
                                 "counts in no verdict"),
                               T("用当前版本重新运行该章", "re-run the chapter with this version")))
            continue
        if r.status == "not_comparable":  # about the measurement, not the engine: one line per chapter
            same = [x for x in rows if x.chapter == r.chapter and x.status == "not_comparable"]
            if same[0] is not r:
                continue
            if len(same) > 1:
                what = T(f"{r.title.zh} {'、'.join(x.name_t.zh for x in same)}：{short(r.reason_t.zh, 100).rstrip(_END)}",
                         f"{r.title.en} {', '.join(x.name_t.en for x in same)}: {short(r.reason_t.en, 100).rstrip(_END)}")
            cmd = RERUN_PERFORMANCE.format(run="<id>")
            out.append(Finding(r.status, r.scope, r.chapter, r.check_id, what,
                               T("测量无效，数字不可比较（不是 ❌）", "invalid measurement: the figures cannot be compared "
                                 "(not a ❌)"),
                               T(f"在空闲主机上重新运行：{cmd}", f"re-run on a quiet host: {cmd}")))
            continue
        spec = index.get((r.chapter, r.base_id))
        impact = T(spec.impact_zh, spec.impact_en) if spec and spec.impact_en else _IMPACT[(r.scope, r.status)]
        remedy = T(spec.remedy_zh, spec.remedy_en) if spec and spec.remedy_en else _see_chapter(r)
        out.append(Finding(r.status, r.scope, r.chapter, r.check_id, what, impact, remedy))
    order = {"fail": 0, "warn": 1, "not_comparable": 2}
    return sorted(_group_findings(out, rows, index), key=lambda f: (order[f.status], f.scope == "document"))


def _group_findings(found: list[Finding], rows: list[MatrixRow], index: dict[tuple[str, str], CheckSpec]
                    ) -> list[Finding]:
    """Members of one check family with one status (probes that failed, ...) as one finding that counts them
    and gives their shared reason: a repeated reason is one line (issue 20.2)."""
    by_id = {(r.chapter, r.check_id): r for r in rows}
    families: dict[tuple[str, str, str], list[Finding]] = {}
    for f in found:
        if ":" in f.check_id:
            families.setdefault((f.chapter, f.check_id.split(":", 1)[0], f.status), []).append(f)
    out: list[Finding] = []
    for f in found:
        key = (f.chapter, f.check_id.split(":", 1)[0], f.status)
        g = families.get(key) if ":" in f.check_id else None
        if not g or len(g) < 2:
            out.append(f)
            continue
        if g[0] is not f:
            continue
        members = [by_id[(x.chapter, x.check_id)] for x in g]
        r, spec = members[0], index.get((f.chapter, key[1]))
        zh, en = (spec.name_zh, spec.name_en) if spec else (key[1], key[1])
        what = T(f"{r.title.zh} {zh}（{len(g)} 项）：{_common_reason([x.reason_t.zh for x in members], 100).rstrip(_END)}",
                 f"{r.title.en} {en} ({len(g)} items): {_common_reason([x.reason_t.en for x in members], 100).rstrip(_END)}")
        out.append(Finding(f.status, f.scope, f.chapter, key[1], what, f.impact, f.remedy))
    return out


def document_claims(rows: list[MatrixRow]) -> list[dict[str, Any]]:
    """The original document's claims as checked by this run (claim, verdict, what files / measurements say)."""
    return [{"chapter": r.chapter, "check_id": r.check_id, "status": r.status, "mark": r.mark,
             "claim": tdict(r.name_t), "says": tdict(r.reason_t)}
            for r in rows if r.kind == "check" and r.scope == "document"]


def document_line(claims: list[dict[str, Any]]) -> Optional[T]:
    """Page one's one line on the original document's claims (the table follows page one), or None."""
    if not claims:
        return None
    n = {k: sum(c["status"] == k for c in claims) for k in R.STATUS_MARK}
    marks = " · ".join(f"{R.STATUS_MARK[k]} {n[k]}" for k in R.STATUS_MARK if n[k])
    return T(f"原文档的说法：核对 {len(claims)} 条（{marks}），见[下页的表](#claims)；不计入结论。",
             f"Original document's claims: {len(claims)} checked ({marks}), [table on the next page](#claims); "
             f"never in a verdict.")


# -- what was validated ------------------------------------------------------------------------------
WEIGHTS_TEXT = {
    "stand-in": T("替身模型：项目自行训练的小型三值 MiniCPM，不是 BitCPM4", "stand-in: the project's small ternary "
                  "MiniCPM, not BitCPM4"),
    "real": T("真实权重（来自 model.path）", "real weights (from model.path)"),
    "synthetic": T("合成权重：按模型结构以固定种子生成的三值权重，不是 BitCPM4", "synthetic: seeded ternary weights at "
                   "the model's shape, not BitCPM4"),
    "dummy": T("随机权重（仅完整尺寸结构）", "dummy weights (random values, full-size shape only)"),
    "unknown": T("未知：第 02 章未记录加载了哪些权重", "unknown: chapter 02 did not record which weights it loaded"),
}


def measured_on_parts(text: str) -> tuple[str, str, str]:
    """("model", "weights", "device") of a Metric.measured_on text "model · weights · device" ("" where absent)."""
    parts = [p.strip() for p in (text or "").split("·")]
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _weights(is_stand_in: bool, loading: Optional[R.ChapterResult]) -> str:
    if is_stand_in:
        return "stand-in"
    data = loading.data if loading else {}
    if data.get("real"):
        return "real"
    if data.get("dummy"):
        return "dummy"
    return "unknown"


def _engine_text(env: Optional[R.ChapterResult]) -> T:
    if env is None:
        return T("未检测（第 01 章没有结果）", "not detected (chapter 01 has no results)")
    versions = env.data.get("versions") or {}
    vllm = versions.get("vllm") or env.metric("vllm")
    ascend = versions.get("vllm_ascend")
    if not vllm:
        return T("未检测到 vLLM", "vLLM not detected")
    s = f"vLLM {vllm}" + (f" + vLLM-Ascend {ascend}" if ascend else "")
    return T(s, s)


def _device(env: Optional[R.ChapterResult]) -> tuple[T, Optional[str]]:
    if env is None:
        return T("未检测（第 01 章没有结果）", "not detected (chapter 01 has no results)"), None
    name, kind = env.metric("device"), env.metric("device_kind")
    if not name:
        return T("未检测", "not detected"), kind
    count = env.metric("device_count")
    s = str(name) + (f" × {count}" if isinstance(count, int) and count > 1 and kind != "cpu" else "")
    return T(s, s), kind


def _source(params: Any) -> Optional[dict[str, Any]]:
    src = getattr(getattr(params, "model", None), "source", None)
    if src is None:
        return None
    return {k: getattr(src, k, None) for k in ("hub", "repo_id", "revision", "commit")}


def next_command(is_stand_in: bool, device_kind: Optional[str]) -> Optional[T]:
    """Page one's highlighted box: what this run does not show and the command that does, or None.
    A stand-in run or a CPU run says nothing about BitCPM4 on Ascend."""
    if is_stand_in:
        return NEXT_COMMAND
    return NEXT_COMMAND_CPU if device_kind == "cpu" else None


def _params_from_run_json(run_dir: Path) -> Any:
    """The few params page one needs, from the runner's run.json (for a reader without the run's params)."""
    from types import SimpleNamespace

    info = run_info(run_dir)
    model = SimpleNamespace(name=info.get("model") or "?", is_stand_in=bool(info.get("is_stand_in")), source=None)
    return SimpleNamespace(model=model, profile=info.get("profile"))


def platform_override(run_dir: Path) -> Optional[dict[str, str]]:
    """Page one's note where the run went on past a platform mismatch (run.json platform_check, --allow-platform-mismatch)."""
    c = run_info(run_dir).get("platform_check") or {}
    if not c.get("allowed"):
        return None
    return tdict(T(f"配置要求 {c.get('profile')}，本次运行在 {c.get('detected')} 上（--allow-platform-mismatch 强制继续）",
                   f"the profile asks for {c.get('profile')}; this run ran on {c.get('detected')} "
                   f"(forced with --allow-platform-mismatch)"))


def page_one(run_dir: str | Path, params: Any = None, rows: Optional[list[MatrixRow]] = None,
             specs: Iterable[CheckSpec] = ()) -> dict[str, Any]:
    """What page one shows (JSON-ready; texts as {"zh", "en"}): see data["page_one"] in the module docstring.
    `params` is the run's Params (model.name, model.is_stand_in, model.source, profile); None reads the
    model and stand-in flag from the run's run.json."""
    run_dir = Path(run_dir)
    params = _params_from_run_json(run_dir) if params is None else params
    specs = list(specs)
    rows = check_matrix(run_dir, selected_chapters(params)) if rows is None else rows
    res = chapter_results(run_dir)
    env, loading = res.get("01_environment"), res.get("02_loading")
    is_stand_in = bool(params.model.is_stand_in)
    # what the model directory declares (model.weights_kind); a run.json of older runs has no such field
    weights = "synthetic" if getattr(params.model, "weights_kind", None) == "synthetic" else _weights(is_stand_in, loading)
    device, kind = _device(env)
    verdicts = scope_verdicts(rows, specs)
    # figures measured on other weights than the run's own (issue 11: stand-in beside full-size dummy figures)
    labels = {measured_on_parts(m.measured_on)[1] for m in key_metrics(run_dir)}
    other = (lambda w: "dummy" not in w) if weights == "dummy" else (lambda w: "dummy" in w or "random" in w)
    also = sorted(w for w in labels if w and w not in ("—", "-") and other(w))
    nxt = next_command(is_stand_in, kind)
    perf = verdicts.get("performance")
    return {
        "model": params.model.name,
        "weights": weights,
        "weights_text": tdict(WEIGHTS_TEXT[weights]),
        "also_measured_on": also,
        "source": _source(params),
        "engine": tdict(_engine_text(env)),
        "device": tdict(device),
        "device_kind": kind,
        "profile": getattr(params, "profile", None),
        "first_line": tdict(first_line(verdicts)),
        "verdict": overall(verdicts),
        "next_command": tdict(nxt) if nxt else None,
        "document_line": tdict(doc) if (doc := document_line(document_claims(rows))) else None,
        "platform_override": platform_override(run_dir),
        "performance_basis": performance_basis(res.get("07_performance")),
        "rerun_performance": (RERUN_PERFORMANCE.format(run=run_dir.name)
                              if perf is not None and perf.verdict == "not_comparable" else None),
    }


def performance_basis(perf: Optional[R.ChapterResult]) -> Optional[dict[str, str]]:
    """What the performance figures were judged against (chapter 07's data["judged_against"]: {"zh", "en"}), so
    that the performance verdict never reads as an absolute "fast" or "slow"."""
    basis = (perf.data.get("judged_against") if perf is not None else None) or None
    return {"zh": str(basis.get("zh", "")), "en": str(basis.get("en", ""))} if isinstance(basis, dict) else None


# -- tables (cells are T: one language at a time, see report.display) ----------------------------------
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


def validated_table(page: dict[str, Any], also_measured: bool = True) -> tuple[list[T], list[list[Any]]]:
    """What was validated: model, weights, engine, device, profile (and the hub source where there is one);
    `also_measured`: the weights row names the other weights some metrics were measured on."""
    def t(d: dict[str, str]) -> T:
        return T(d["zh"], d["en"])

    weights = t(page["weights_text"])
    if page["also_measured_on"] and also_measured:
        extra = "、".join(page["also_measured_on"]), ", ".join(page["also_measured_on"])
        weights = T(f"{weights.zh}；另有测量基于：{extra[0]}", f"{weights.en}; some metrics on: {extra[1]}")
    rows: list[list[Any]] = [[T("模型", "Model"), page["model"]], [T("权重", "Weights"), weights]]
    src = page.get("source")
    if src and src.get("repo_id"):
        rev = src.get("commit") or src.get("revision") or "—"
        rows.append([T("来源", "Source"), f"{src.get('hub')}: {src['repo_id']} @ {str(rev)[:12]}"])
    if page.get("platform_override"):
        rows.append([T("⚠️ 平台", "⚠️ Platform"), t(page["platform_override"])])
    rows += [[T("引擎", "Engine"), t(page["engine"])], [T("设备", "Device"), t(page["device"])],
             [T("配置", "Profile"), page.get("profile") or "—"]]
    return [T("项目", "Item"), T("内容", "Value")], rows


def validated_line(page: dict[str, Any]) -> T:
    """What was validated, as one Markdown paragraph per language (values escaped: names come from files)."""
    from bitcpm_validation.report.textsafe import md_escape

    _, rows = validated_table(page, also_measured=False)  # the results card says what each figure was measured on
    parts = [(k, v) for k, v in rows if k.en != "Profile"]  # the report's header names the profile
    return T(" · ".join(f"**{k.zh}** {md_escape(v.zh if isinstance(v, T) else v)}" for k, v in parts),
             " · ".join(f"**{k.en}** {md_escape(v.en if isinstance(v, T) else v)}" for k, v in parts))


def scopes_table(verdicts: dict[str, ScopeVerdict], page: Optional[dict[str, Any]] = None
                 ) -> tuple[list[T], list[list[Any]]]:
    """One row per verdict scope. With `page` (page_one's data), the performance row says what its figures were
    judged against and, when not comparable, the command that re-runs them."""
    headers = [T("范围", "Scope"), T("结论", "Verdict"), T("检查项", "Checks"), T("说明", "Why")]
    body = []
    page = page or {}
    for v in verdicts.values():
        c = v.counts
        counts = "\u2002".join(f"{R.STATUS_MARK[k]}\u00a0{c[k]}" for k in R.STATUS_MARK if c[k]) or "—"
        said = v.flagged if v.verdict in ("fail", "warn", "not_comparable") else v.reasons  # what decided it
        why = said[:1]  # page one: the first (failures first); all of them are in data["scopes"]
        more = len(said) - len(why)
        why_t = T("；".join(short(r.zh, 70) for r in why) + (f"；另 {more} 项" if more else ""),
                  "; ".join(short(r.en, 70) for r in why) + (f"; {more} more" if more else ""))
        if v.scope == "performance" and (page.get("performance_basis") or page.get("rerun_performance")):
            basis, cmd = page.get("performance_basis"), page.get("rerun_performance")
            zh = ([why_t.zh] if said else []) + ([f"相对于：{basis['zh']}"] if basis else []) + \
                ([f"请在空闲主机上重新运行：{cmd}"] if cmd else [])
            en = ([why_t.en] if said else []) + ([f"relative to: {basis['en']}"] if basis else []) + \
                ([f"re-run on a quiet host: {cmd}"] if cmd else [])
            why_t, said = T("；".join(zh), "; ".join(en)), True
        body.append([SCOPE_WORD[v.scope], T(f"{v.mark}\u00a0{VERDICT_WORD[v.verdict].zh}",
                                            f"{v.mark}\u00a0{VERDICT_WORD[v.verdict].en.replace(' ', chr(0xa0))}"),
                     counts, why_t if said else "—"])
    return headers, body


PAGE_ONE_FINDINGS = 6  # page one fits one A4 page: beyond this many findings, one row points to the check matrix


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a space where there is one in the second half (… marks the cut)."""
    s = " ".join(str(text or "").split())
    if len(s) <= limit:
        return s
    cut = s[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:，；：") + "…"


def findings_table(found: list[Finding], *, document: bool = True, limit: Optional[int] = None,
                   not_comparable: bool = True) -> tuple[list[Any], list[list[Any]]]:
    """The findings as a table (mark, what, impact, what to do): one row each; `document=False` leaves out the
    original document's claims (page one gives them one line, `document_line`); `not_comparable=False` the
    invalid measurements (page one's performance row says why and gives the re-run command). With `limit`, more
    findings than that keep the first `limit - 1` rows and one row that counts the rest (all are in the check
    matrix)."""
    headers = ["", T("发现", "Finding"), T("影响与处理", "Impact and what to do")]
    found = [f for f in found if (document or f.scope != "document")
             and (not_comparable or f.status != "not_comparable")]
    if limit is None:
        body = [[f.mark, f.what, T(f"{f.impact.zh}；{f.remedy.zh}", f"{f.impact.en}; {f.remedy.en}")] for f in found]
    else:  # page one: a line or two each (the chapter and the check matrix say the rest)
        body = [[f.mark, T(_cut(f.what.zh, 60), _cut(f.what.en, 110)),
                 T(f"{_cut(f.impact.zh, 24)}；{_cut(f.remedy.zh, 20)}", f"{_cut(f.impact.en, 45)}; {_cut(f.remedy.en, 40)}")]
                for f in found]
    if limit is not None and len(body) > limit:
        rest = found[limit - 1:]
        marks = " ".join(f"{m}\u00a0{sum(f.mark == m for f in rest)}" for m in dict.fromkeys(f.mark for f in rest))
        body = body[:limit - 1] + [["…", T(f"另有 {len(rest)} 项（{marks}）", f"{len(rest)} more ({marks})"),
                                    T("见检查矩阵与各章", "see the check matrix and the chapters")]]
    return headers, body


# -- page one's results card (issue 20.1): one row per figure, named, with its unit, n, what it was measured on ----
# a figure's name on page one: what it is, never how it is computed (the chapter gives the formula)
CARD_NAMES = {
    "decode_tok_s": T("单请求解码速度", "Batch-1 decode speed"),
    "prefill_tok_s": T("预填充速度", "Prefill speed"),
    "serve_b1_output_tok_s": T("单请求输出速度（端到端）", "Batch-1 output speed, end to end"),
    "ttft_ms_p50": T("首词元时延，中位数", "Time to first token, median"),
    "tpot_ms_p50": T("每输出词元时间，中位数", "Time per output token, median"),
    "kv_cache_tokens": T("KV 缓存容量", "KV cache capacity"),
    "max_concurrency": T("KV 缓存可容纳的满长请求", "Full-length requests the KV cache holds"),
    "identical_tokens": T("重复运行中相同的词元", "Identical tokens in repeated runs"),
    "probes_passed": T("探针通过（已评判的）", "Probes passed, of those judged"),
    "zh_passed": T("中文输出通过（已评判的）", "Chinese outputs passed, of those judged"),
    "greedy_equal": T("服务与离线的贪心输出一致", "Greedy answers equal, server and offline"),
    "compression_base3": T("可达压缩率（三进制打包，整模型）", "Achievable size reduction, base-3 packing"),
    "remote_code_files": T("执行的远程代码文件", "Remote-code files executed"),
}
# shown in the identity line or the header already: never a row
CARD_ELSEWHERE = {"device", "vllm", "model_commit", "git_commit"}
# one fact, two metrics: the second is left out where the first is there (the run's shared server is the engine
# chapter 02 timed)
CARD_SAME_FACT = {"server_startup_s": "init_s"}
CARD_UNIT_ZH = {"tokens": "词元", "requests": "个请求", "nat": "奈特"}
_FRACTION = re.compile(r"^\s*([\d,]+)\s*/\s*([\d,]+)\s*$")
_N_IN_NAME = re.compile(r"\s*[（(]n\s*([\d,]+)[)）]\s*$")
_REQUESTS_UNIT = re.compile(r"^×\s*([\d,]+)-token requests$")


@dataclass
class CardRow:
    chapter: str
    id: str
    name: T
    value: str
    unit: T
    n: str  # the sample behind the figure ("—" where it is one measurement)
    measured_on: T


def measured_on_label(text: str) -> T:
    """A metric's "model · weights · device" as page one's short label: stand-in, full shape (with its weights)
    or real model; "—" for a fact of the run (no model behind it)."""
    model, weights, _ = measured_on_parts(text)
    if not model or model in ("—", "-"):
        return T("—", "—")
    if model == "stand-in":
        return T("替身模型", "stand-in")
    if weights == "dummy weights":
        return T("完整规模（随机权重）", "full shape, dummy weights")
    if weights == "random weights":
        return T("完整规模（合成权重）", "full shape, synthetic weights")
    if model.endswith(" shape"):
        return T("完整规模", "full shape")
    return T("真实模型", "real model")


def _figure_samples(results: dict[str, R.ChapterResult]) -> dict[tuple[str, str], Any]:
    """(chapter, metric id) -> the samples behind it, where a chapter's data lists them (chapter 07's figures)."""
    out: dict[tuple[str, str], Any] = {}
    for cid, res in results.items():
        figures = res.data.get("figures") if isinstance(res.data, dict) else None
        for row in (figures or {}).get("rows", []) if isinstance(figures, dict) else []:
            if isinstance(row, dict) and row.get("id") and row.get("samples") is not None:
                out[(cid, row["id"])] = row["samples"]
    return out


def _score_spread(results: dict[str, R.ChapterResult]) -> dict[str, tuple[Any, Any]]:
    """task -> (n, standard error as a fraction) of chapter 09's headline scores (data["tasks"][i]["score"]: points)."""
    acc = results.get("09_accuracy")
    out: dict[str, tuple[Any, Any]] = {}
    for t in (acc.data.get("tasks") or []) if acc is not None and isinstance(acc.data, dict) else []:
        score = t.get("score") if isinstance(t, dict) else None
        if isinstance(score, dict) and t.get("task"):
            se = score.get("se")
            out[str(t["task"])] = (score.get("n"), se / 100 if isinstance(se, (int, float)) else None)
    return out


def card_name(m: KeyMetric) -> T:
    """A key metric's name as page one (and the published site) shows it: CARD_NAMES, else its own name without a
    formula (" = …") or an "(n …)" the n column carries."""
    name = CARD_NAMES.get(m.id) or T(m.name_zh or m.name_en, m.name_en or m.name_zh)
    return T(_N_IN_NAME.sub("", name.zh).split(" = ")[0], _N_IN_NAME.sub("", name.en).split(" = ")[0])


def results_card(km: list[KeyMetric], results: Optional[dict[str, R.ChapterResult]] = None) -> list[CardRow]:
    """Page one's figures, one row each: key metrics less those the identity line shows, a second copy of one
    fact, descriptive texts (the chapter shows them) and fractions of nothing judged ("0/0")."""
    ids = {m.id for m in km}
    samples = _figure_samples(results or {})
    spread = _score_spread(results or {})
    rows: list[CardRow] = []
    for m in km:
        if m.id in CARD_ELSEWHERE or CARD_SAME_FACT.get(m.id) in ids:
            continue
        name = card_name(m)
        found_n = _N_IN_NAME.search(m.name_en or "")
        n = found_n.group(1) if found_n else None
        unit: T = T(CARD_UNIT_ZH.get(m.unit, m.unit), m.unit)
        value = m.value
        if isinstance(value, int) and not isinstance(value, bool) and m.unit.startswith("/"):  # 3 of "/3"
            value, unit = f"{value}{m.unit}", T("", "")
        frac = _FRACTION.match(value) if isinstance(value, str) else None
        if frac:
            if int(frac.group(2).replace(",", "")) == 0:
                continue  # nothing judged: the verdict's reason says why
            text, n = f"{frac.group(1)}/{frac.group(2)}", frac.group(2)
            unit = unit if m.unit == "tokens" else T("", "")
        elif isinstance(value, str):
            continue  # a description (shapes compared, a granularity): the chapter shows it
        else:
            text = format_value(value)
            req = _REQUESTS_UNIT.match(m.unit or "")
            if req:
                unit = T(f"个 {req.group(1)} 词元的请求", f"requests of {req.group(1)} tokens")
        if n is None and (m.chapter, m.id) in samples:
            n = format_value(samples[(m.chapter, m.id)])
        task = m.id.rsplit("_", 1)[0] if m.chapter == "09_accuracy" else None
        if task in spread:  # an accuracy score: its n and standard error
            items, se = spread[task]
            n = (format_value(items) if items is not None else n or "—") + (f" / ±{format_value(se)}" if se else "")
        rows.append(CardRow(m.chapter, m.id, name, text, unit, n or "—", measured_on_label(m.measured_on)))
    return rows


def compared_line(km: list[KeyMetric]) -> Optional[T]:
    """Which shapes and prompt lengths the precision chapter compared with its golden (its `compared_lengths`
    metric, a description the card leaves out), as one line under the card: what the engine verdict covers."""
    m = next((m for m in km if m.id == "compared_lengths" and m.value), None)
    if m is None:
        return None
    value = str(m.value).replace("`", "'")
    return T(f"引擎结论所覆盖的比较（与黄金实现，按形状与提示长度，单位词元）：`{value}`",
             f"What the engine verdict covers (compared with the golden, by shape and prompt length in tokens): `{value}`")


def results_card_table(rows: list[CardRow]) -> tuple[list[T], list[list[Any]]]:
    """The results card as a table: metric | value | unit | n | measured on | chapter (a link to it: the chapter
    cell is HTML made here, show with `trusted_cols=(5,)`)."""
    from bitcpm_validation.report.textsafe import html_escape

    headers = [T("指标", "Metric"), T("值", "Value"), T("单位", "Unit"), T("样本 n / 标准误", "n / ±"),
               T("测量对象", "Measured on"), T("章节", "Chapter")]
    body = [[r.name, r.value, r.unit, r.n, r.measured_on,
             f'<a href="#ch-{html_escape(r.chapter)}">{html_escape(r.chapter.split("_", 1)[0])}</a>'] for r in rows]
    return headers, body


def _common_reason(texts: list[str], limit: int) -> str:
    """What a family's reasons share (their common start, cut at a word or clause), else the first, shortened."""
    prefix = os.path.commonprefix(texts)
    if len(set(texts)) == 1:
        return short(texts[0], limit)
    cut = max(prefix.rfind(c) for c in " :：，,；;")
    if cut >= 12:
        return short(prefix[:cut].rstrip(" :：，,；;"), limit - 1) + "…"
    return short(texts[0], limit)


def matrix_display(rows: list[MatrixRow], specs: Iterable[CheckSpec] = (), limit: int = 60,
                   fold: int = 3, document: bool = True) -> tuple[list[T], list[list[Any]]]:
    """The compact check matrix: chapter (on its first row only), mark, check name, short reason.

    `fold` or more consecutive ✅ rows of a chapter become one row "n checks passed" naming them, and `fold` or
    more consecutive — rows of one family (one probe per row, ...) one row "name (n items)" with their shared
    reason; every ❌ and ⚠️ keeps its own row. Details stay in the chapters."""
    index = _spec_index(specs)
    headers = [T("章节", "Chapter"), "", T("检查项", "Check"), T("原因", "Reason")]
    if not document:  # the original document's claims have their own table: not twice
        rows = [r for r in rows if r.scope != "document"]
    first = {}
    for i, r in enumerate(rows):
        first.setdefault((r.chapter, r.base_id), i)
    rows = sorted(rows, key=lambda r: first[(r.chapter, r.base_id)])  # stable: a family's rows side by side

    def fold_key(r: MatrixRow) -> Optional[tuple]:
        if r.kind != "check":
            return None
        if r.status == "pass":
            return (r.chapter, "pass")
        if r.status == "not_run" and ":" in r.check_id:
            return (r.chapter, r.base_id, "not_run")
        return None

    groups: list[list[MatrixRow]] = []
    for r in rows:
        key = fold_key(r)
        if key is not None and groups and fold_key(groups[-1][-1]) == key:
            groups[-1].append(r)
        else:
            groups.append([r])
    body, last = [], None
    for g in groups:
        r = g[0]
        chapter = r.title if r.chapter != last else ""
        last = r.chapter
        if len(g) >= fold and r.status == "pass":
            names = list(dict.fromkeys((x.name_t.zh, x.name_t.en) for x in g))
            body.append([chapter, r.mark, T(f"{len(g)} 项检查通过", f"{len(g)} checks passed"),
                         T(short("、".join(n[0] for n in names), limit // 2 + 5), short(", ".join(n[1] for n in names), limit))])
            continue
        if len(g) >= fold:
            spec = index.get((r.chapter, r.base_id))
            base_zh, base_en = (spec.name_zh, spec.name_en) if spec else (r.base_id, r.base_id)
            name: Any = T(f"{base_zh}（{len(g)} 项）", f"{base_en} ({len(g)} items)")
            reason: Any = T(_common_reason([x.reason_t.zh for x in g], limit // 2 + 5),
                            _common_reason([x.reason_t.en for x in g], limit))
            body.append([chapter, r.mark, name, reason])
            continue
        for x in g:
            reason = T(short(x.reason_t.zh, limit // 2 + 5), short(x.reason_t.en, limit)) if x.reason_en or x.reason_zh else ""
            body.append([chapter, x.mark, x.name_t, reason])
            chapter = ""
    return headers, body


def document_table(claims: list[dict[str, Any]]) -> tuple[list[T], list[list[Any]]]:
    """Every claim of the original document once: claim, verdict, what the files say in one line, and a link to
    the chapter that shows the evidence (HTML made here from escaped parts: show with `trusted_cols=(3,)`)."""
    from bitcpm_validation.report.textsafe import html_escape

    headers = [T("原文档的说法", "Claim of the original document"), T("结果", "Verdict"),
               T("文件与测量显示", "What the files and measurements say"), T("章节", "Chapter")]
    # in full: the chapters point here instead of showing their claim rows again (issue 20.2: each table once)
    return headers, [[T(c["claim"]["zh"], c["claim"]["en"]), c["mark"], T(c["says"]["zh"], c["says"]["en"]),
                      f'<a href="#ch-{html_escape(c["chapter"])}">{html_escape(c["chapter"].split("_", 1)[0])}</a>']
                     for c in claims]


def document_pointer(checks: Iterable[R.Check]) -> T:
    """A chapter's one line on the original document's claims it checked: each claim with its mark, and where
    they are shown with what the files say (the summary's claims table, anchor #claims), so the rows are not
    shown twice."""
    checks = list(checks)
    if not checks:
        return T("本章没有核对原文档的说法。", "This chapter checked no claim of the original document.")
    zh = "；".join(f"{R.STATUS_MARK[c.status]} {c.name_zh}" for c in checks)
    en = "; ".join(f"{R.STATUS_MARK[c.status]} {c.name_en}" for c in checks)
    return T(f"{zh}。每条说法与文件、测量的对照见总结的[说法表](#claims)。",
             f"{en}. Each claim with what the files and measurements say: the summary's [claims table](#claims).")


def registry_rows(specs: Iterable[CheckSpec]) -> list[dict[str, Any]]:
    return [{"id": s.id, "chapter": s.chapter, "scope": s.scope, "name": {"zh": s.name_zh, "en": s.name_en},
             "criterion": {"zh": s.criterion_zh, "en": s.criterion_en}, "worst": s.worst,
             "worst_reason": {"zh": s.worst_reason_zh or s.worst_reason, "en": s.worst_reason} if s.worst_reason else None,
             "family": s.family} for s in specs]


def registry_table(specs: Iterable[CheckSpec]) -> tuple[list[T], list[list[Any]]]:
    """The appendix: every registered check with its chapter (on its first row), scope and worst status; the
    check cell is "**name** (id): criterion" (a check whose worst is ⚠️ says why after it), HTML made here
    from escaped parts: show with `trusted_cols=(1,)`."""
    from bitcpm_validation.report.display import note_html as e  # escaped; `settings`, `commands` as code
    from bitcpm_validation.report.textsafe import html_escape

    headers = [T("章节", "Chapter"), T("检查项与判据", "Check and criterion"), T("范围", "Scope"), T("最差", "Worst")]
    body, last = [], None
    for s in specs:
        cid = f"<code>{html_escape(s.id)}</code>"  # an identifier (checks.yaml), not a word of either language
        zh = f"<b>{html_escape(s.name_zh)}</b>（{cid}）：{e(s.criterion_zh)}"
        en = f"<b>{html_escape(s.name_en)}</b> ({cid}): {e(s.criterion_en)}"
        if s.worst_reason:
            zh = zh.rstrip("。") + f"。最差为 ⚠️：{e(s.worst_reason_zh or s.worst_reason)}"
            en = en.rstrip(".") + f". At worst ⚠️: {e(s.worst_reason)}"
        body.append([s.chapter.split("_", 1)[0] if s.chapter != last else "", T(zh, en), SCOPE_WORD[s.scope],
                     R.STATUS_MARK[s.worst]])
        last = s.chapter
    return headers, body


# -- one language's Markdown tables (the `summary` command of the CLI) ------------------------------------------
def matrix_markdown(rows: list[MatrixRow], lang: str = "en") -> str:
    """The check matrix as one language's Markdown table (the `summary` command, report.md)."""
    from bitcpm_validation.report.textsafe import md_table

    pick = (lambda x: x.zh) if lang == "zh" else (lambda x: x.en)
    headers = [pick(T("章节", "Chapter")), pick(T("检查项", "Check")), pick(T("状态", "Status")), pick(T("说明", "Reason"))]
    return md_table(headers, [[pick(r.title), pick(r.name_t), r.mark, pick(r.reason_t)] for r in rows], trusted_cols=(2,))


def metrics_markdown(km: list[KeyMetric], lang: str = "en") -> str:
    from bitcpm_validation.report.textsafe import md_table

    pick = (lambda x: x.zh) if lang == "zh" else (lambda x: x.en)
    return md_table([pick(T("指标", "Metric")), pick(T("值", "Value")), pick(T("测量对象", "Measured on"))],
                    [[m.name_zh if lang == "zh" else m.name_en, m.value_text, m.measured_on or "—"] for m in km])


def counts_line(counts: dict[str, int]) -> str:
    return " · ".join(f"{R.STATUS_MARK[k]} {counts.get(k, 0)}" for k in R.STATUS_MARK)


# -- what the summary notebook stores -------------------------------------------------------------------
def summary_data(run_dir: str | Path, params: Any, specs: Sequence[CheckSpec] = ()) -> dict[str, Any]:
    """Every data key of results/00_summary.json (see the module docstring), computed once."""
    rows = check_matrix(run_dir, selected_chapters(params))
    verdicts = scope_verdicts(rows, specs)
    km = key_metrics(run_dir)

    def metric_data(m: KeyMetric) -> dict[str, Any]:
        return {"chapter": m.chapter, "id": m.id, "name": tdict(card_name(m)), "value": m.value,
                "unit": m.unit, "text": m.value_text, "measured_on": m.measured_on}

    return {
        "page_one": page_one(run_dir, params, rows, specs),
        "scopes": {s: v.to_data() for s, v in verdicts.items()},
        "findings": [f.to_data() for f in findings(rows, specs)],
        "document": document_claims(rows),
        "matrix": [{"chapter": r.chapter, "chapter_title": tdict(r.title), "chapter_status": r.chapter_status,
                    "kind": r.kind, "check_id": r.check_id, "scope": r.scope,
                    "status": r.status, "mark": r.mark, "name": tdict(r.name_t),
                    "reason": {"zh": short(r.reason_t.zh, 45), "en": short(r.reason_t.en, 90)}} for r in rows],
        "registry": registry_rows(specs),
        "key_metrics": [metric_data(m) for m in km if not m.timing],
        "timings": {"key_metrics": [metric_data(m) for m in km if m.timing]},
        "chapters": chapter_statuses(run_dir),
    }


# -- engine starts ------------------------------------------------------------------------------------------------
# The reasons the project's own start sites give (engine.offline / engine.server `why=`), in Chinese; any other
# reason is shown as recorded.
START_REASON_ZH = {
    "the run's shared engine (every chapter that can share it)": "本次运行共享的引擎（所有可共享的章节都使用它）",
    "the full-size architecture with dummy weights (load_format=dummy)": "完整尺寸结构，随机权重（load_format=dummy）",
    "the full-size architecture with the synthetic checkpoint (seeded ternary weights, read from files)":
        "完整尺寸结构，合成检查点（固定种子的三值权重，从文件读入）",
    "the full 0.5B shape: a synthetic checkpoint vs the fp32 reference": "完整 0.5B 形状：合成检查点与 fp32 参考实现比较",
    "restart": "重启：与第一次运行的输出比较",
    "float32 engine: separates BF16 rounding from implementation differences": "float32 引擎：区分 BF16 舍入与实现差异",
    "benchmarks at the full 0.5B shape (dummy weights)": "完整 0.5B 形状的基准测试（随机权重）",
    "benchmarks at the full 0.5B shape (synthetic checkpoint)": "完整 0.5B 形状的基准测试（合成检查点）",
    "benchmarks on the model's own weights": "模型自身权重上的基准测试",
    "base model for the document's speed claim": "原文档速度说法所需的基础模型",
    "offline reference for the server comparison (chapter 04 left none)": "服务对比的离线参考（第 04 章未留下）",
}


# an engine start's weights (engine.identity.model_source's `which`) in Chinese
START_WEIGHTS_ZH = {"real": "真实权重", "synthetic": "合成权重", "dummy": "随机权重"}


# Phases of an engine start (engine.startup.phases; a server's: engine.startup.server_phases) and where it ran
# (engine.startup.choose_mode)
START_PHASES = {"import": ("导入 vLLM", "import vLLM"), "config": ("参数与检查", "config"),
                "api_server_process": ("API 服务进程启动", "API server process"),
                "engine_core_process": ("引擎核心进程启动", "engine core process"),
                "worker_process": ("工作进程启动", "worker process"), "model_load": ("模型加载", "model load"),
                "kv_cache_and_warmup": ("KV 缓存与预热", "KV cache and warm-up"), "compile": ("编译", "compile"),
                "other": ("其余", "other"), "to_healthy": ("至健康检查通过", "until healthy")}
START_MODES = {"in-process": ("进程内", "in process"), "multiprocess": ("多进程", "multiprocess")}


def start_phases_text(start: dict[str, Any]) -> T:
    """One start's mode and phases as one line ("in process: import vLLM 11.2 s · config 0.8 s · …"); — without."""
    phases = start.get("phases") or {}
    if not phases:
        return T("—", "—")
    zh = " · ".join(f"{START_PHASES.get(k, (k, k))[0]} {v:,.1f} s" for k, v in phases.items())
    en = " · ".join(f"{START_PHASES.get(k, (k, k))[1]} {v:,.1f} s" for k, v in phases.items())
    mode = START_MODES.get(start.get("mode") or "")
    return T(f"{mode[0]}：{zh}", f"{mode[1]}: {en}") if mode else T(zh, en)


def engine_starts_table(run: dict[str, Any]) -> tuple[list[T], list[list[Any]]]:
    """Every engine / server start of a run (engine.starts.of_run): chapter, kind, weights, seconds, phases, why."""
    kind = {"offline": T("离线引擎", "offline engine"), "server": T("服务", "server"),
            "shared-server": T("共享服务", "shared server"), "benchmark": T("基准测试服务", "benchmark server")}
    rows = []
    for s in run.get("starts", []):
        why = s.get("why") or ""
        seconds = "—" if s.get("seconds") is None else f"{s['seconds']:,.1f} s"
        status = seconds if s.get("ok", True) else T(f"失败：{s.get('error') or ''}", f"failed: {s.get('error') or ''}")
        which = s.get("which", "—")
        rows.append([s.get("chapter", "—"), kind.get(s.get("kind"), s.get("kind")), T(START_WEIGHTS_ZH.get(which, which), which), status,
                     start_phases_text(s), T(START_REASON_ZH.get(why, why), why)])
    return [T("章节", "Chapter"), T("类型", "Kind"), T("权重", "Weights"), T("就绪耗时", "Ready in"),
            T("各阶段", "Phases"), T("原因", "Why")], rows
