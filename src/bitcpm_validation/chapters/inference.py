"""Grade one model output against its prompt's expectation (params/prompts.yaml `expect:`).

Every condition the expectation gives must hold; the grade is ✅ pass or ⚠️ warn, never ❌: a small
model answering a probe badly is a finding about the model, not a failure of the deployment. The
reason lists each condition with what was found, in English and Chinese.

    g = grade(text, prompt.expect)
    g.status            # "pass" | "warn"
    g.detail_en, g.detail_zh

Matching of `contains_*` / `not_contains` is case-insensitive (the answer "paris" counts as Paris).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bitcpm_validation.chapters.chinese import cjk_share
from bitcpm_validation.params import Expectation


@dataclass
class Grade:
    status: str  # pass | warn
    reasons_en: list[str] = field(default_factory=list)
    reasons_zh: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # ids of the conditions that did not hold

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def detail_en(self) -> str:
        return "; ".join(self.reasons_en)

    @property
    def detail_zh(self) -> str:
        return "；".join(self.reasons_zh)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(detail_en=self.detail_en, detail_zh=self.detail_zh)
        return d


def _q(xs: list[str]) -> str:
    return ", ".join(repr(x) for x in xs)


def grade(text: str, expect: Expectation) -> Grade:
    """pass when every condition of `expect` holds, else warn; reasons name each condition."""
    en: list[str] = []
    zh: list[str] = []
    failed: list[str] = []
    low = (text or "").lower()
    n = len((text or "").strip())

    def cond(ok: bool, cid: str, ok_en: str, ok_zh: str, bad_en: str, bad_zh: str) -> None:
        if ok:
            en.append(ok_en)
            zh.append(ok_zh)
        else:
            failed.append(cid)
            en.append("✗ " + bad_en)
            zh.append("✗ " + bad_zh)

    if expect.min_chars > 1 or (expect.min_chars == 1 and n < 1):
        cond(n >= expect.min_chars, "min_chars",
             f"{n} characters (>= {expect.min_chars})", f"{n} 个字符（≥ {expect.min_chars}）",
             f"only {n} characters (< {expect.min_chars})", f"仅 {n} 个字符（< {expect.min_chars}）")
    if expect.contains_any:
        hits = [w for w in expect.contains_any if w.lower() in low]
        cond(bool(hits), "contains_any",
             f"contains {_q(hits)}", f"包含 {_q(hits)}",
             f"none of {_q(expect.contains_any)} found", f"未出现 {_q(expect.contains_any)} 中任何一个")
    if expect.contains_all:
        missing = [w for w in expect.contains_all if w.lower() not in low]
        cond(not missing, "contains_all",
             f"contains all of {_q(expect.contains_all)}", f"包含全部 {_q(expect.contains_all)}",
             f"missing {_q(missing)}", f"缺少 {_q(missing)}")
    if expect.not_contains:
        bad = [w for w in expect.not_contains if w.lower() in low]
        cond(not bad, "not_contains",
             f"none of {_q(expect.not_contains)}", f"不含 {_q(expect.not_contains)}",
             f"contains forbidden {_q(bad)}", f"含有不应出现的 {_q(bad)}")
    if expect.min_cjk_share is not None:
        share = cjk_share(text or "")
        cond(share >= expect.min_cjk_share, "min_cjk_share",
             f"CJK share {share:.2f} (>= {expect.min_cjk_share})", f"汉字比例 {share:.2f}（≥ {expect.min_cjk_share}）",
             f"CJK share {share:.2f} (< {expect.min_cjk_share})", f"汉字比例 {share:.2f}（< {expect.min_cjk_share}）")
    status = "warn" if failed else "pass"
    note_en = expect.note_en or ""
    note_zh = expect.note_zh or note_en
    if note_en:
        en.insert(0, f"expected: {note_en}")
        zh.insert(0, f"预期：{note_zh}")
    return Grade(status, en, zh, failed)
