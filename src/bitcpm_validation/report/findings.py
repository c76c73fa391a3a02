"""Findings: each ❌ / ⚠️ of a run in one line (what, impact, what to do), fail first; and the original
document's claims, which are findings and never in a verdict: the claims table, page one's line on them and
a chapter's pointer to that table.

    found = findings(rows, specs)     # rows: report.matrix.check_matrix; specs: chapters.registry()
    claims = document_claims(rows)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.checks import CheckSpec
from bitcpm_validation.report.display import T
from bitcpm_validation.report.matrix import MatrixRow, common_reason, short, spec_index, tdict
from bitcpm_validation.report.verdicts import RERUN_PERFORMANCE

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


def _see_chapter(r: MatrixRow) -> T:
    number = r.title.en.split(" ", 1)[0]
    return T(f"见第 {number} 章", f"see chapter {number}")


def findings(rows: list[MatrixRow], specs: Iterable[CheckSpec] = ()) -> list[Finding]:
    """Each ❌, ⚠️ and ⊘ of the run in one line (what, impact, what to do): failures first, then warnings, then
    measurements that are not comparable; chapter failures and rows without a scope included, document claims
    last within each status."""
    index = spec_index(specs)
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
        what = T(f"{r.title.zh} {zh}（{len(g)} 项）：{common_reason([x.reason_t.zh for x in members], 100).rstrip(_END)}",
                 f"{r.title.en} {en} ({len(g)} items): {common_reason([x.reason_t.en for x in members], 100).rstrip(_END)}")
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
