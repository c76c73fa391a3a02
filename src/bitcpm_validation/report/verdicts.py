"""The verdict per scope, derived from the check matrix (report.matrix): engine, model, performance and repository
(see report.checks), each answering one question, so that a slow host or a defect of the model's files never reads
as "the engine is unfaithful":

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

The overall verdict (`overall`) is the worst assessed scope, fail > incomplete > not_comparable > warn > pass, else
not_assessed.

Verdict marks: ✅ pass, ⚠️ warn, ❌ fail, ◐ incomplete, ⊘ not comparable, — not assessed (VERDICT_MARK).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import T
from bitcpm_validation.report.matrix import MatrixRow, common_reason, short, spec_index, tdict

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
    index = spec_index(specs)
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
        out.append(T(f"{zh}（{len(g)} 项均未评判）：{common_reason([x.reason_t.zh for x in g], 90)}",
                     f"{en} (all {len(g)} not judged): {common_reason([x.reason_t.en for x in g], 90)}"))
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
