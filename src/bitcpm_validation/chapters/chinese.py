"""Chinese-output metrics: CJK share, distinct-n, longest repeated span, and a per-output verdict.

The original document judged Chinese answers by eye ("repetition severe", 重复严重). Here every
judgement is a number compared with a documented threshold from `params.chinese`:

- **CJK share** = CJK ideographs / (letters + digits), counted per character; whitespace and
  punctuation (ASCII or full-width, e.g. `，。？`) are not counted. Below `min_cjk_share`: the answer
  is not really Chinese.
- **distinct-n** = distinct character n-grams / all character n-grams (whitespace removed; characters,
  because Chinese has no spaces between words). 1.0: nothing repeats; low values: loops. Below
  `min_distinct_2`: repetition is severe.
- **longest repeated span**: the longest substring that occurs at least twice without overlapping
  (whitespace kept). Its **repeat share** = span length × its non-overlapping occurrences / text
  length: the part of the answer taken by the repeats of that span. Above `max_repeat_share`:
  repetition is severe. (A span of 1-2 characters repeated is normal language, so spans shorter than
  `MIN_SPAN` characters are not counted as repetition.)

Before those, every output must be language at all (`grading.gate`, prompts.yaml `grading:`): recognised
words (wordfreq; jieba segmentation), no looped unit. Noise (random characters, shuffled characters, a
looped prompt echo) is ❌; not Chinese or severe repetition is ⚠️ (the original document's "能力有限");
Chinese without severe repetition is ✅. A prompt the model was trained on is not judged (not_run).

    ch.record(judge_chinese(prompt, text, params.chinese, prompt_set.grading, trained_on))
"""
from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

from bitcpm_validation.report import grading

from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

CHAPTER = "05_chinese"
MIN_SPAN = 4  # repeated spans shorter than this are ordinary language, not a loop


def _counted(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in ("L", "N")


def cjk_share(text: str) -> float:
    """CJK ideographs / letters-and-digits (0.0 for text without any)."""
    counted = [c for c in text if _counted(c)]
    if not counted:
        return 0.0
    return sum(1 for c in counted if grading.is_cjk(c)) / len(counted)


def distinct_n(text: str, n: int) -> Optional[float]:
    """Distinct character n-grams / all character n-grams (whitespace removed); None if too short."""
    s = "".join(text.split())
    grams = [s[i:i + n] for i in range(len(s) - n + 1)]
    if not grams:
        return None
    return len(set(grams)) / len(grams)


def longest_repeated_span(text: str) -> str:
    """The longest substring occurring twice without overlap (the first such, leftmost)."""
    s = text
    n = len(s)
    best_len, best_end = 0, 0
    prev = [0] * (n + 1)
    for i in range(1, n + 1):
        cur = [0] * (n + 1)
        ci = s[i - 1]
        for j in range(i + 1, n + 1):
            if ci == s[j - 1] and prev[j - 1] < (j - i):
                cur[j] = prev[j - 1] + 1
                if cur[j] > best_len:
                    best_len, best_end = cur[j], i
        prev = cur
    return s[best_end - best_len:best_end] if best_len else ""


def count_non_overlapping(text: str, span: str) -> int:
    if not span:
        return 0
    n, i = 0, text.find(span)
    while i >= 0:
        n += 1
        i = text.find(span, i + len(span))
    return n


@dataclass
class ChineseMetrics:
    chars: int
    cjk_share: float
    distinct_1: Optional[float]
    distinct_2: Optional[float]
    distinct_3: Optional[float]
    longest_repeat: str
    longest_repeat_len: int
    longest_repeat_count: int
    repeat_share: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics(text: str) -> ChineseMetrics:
    span_eff = longest_repeated_span(text)
    count = count_non_overlapping(text, span_eff)
    share = 0.0 if len(span_eff.strip()) < MIN_SPAN else len(span_eff) * count / len(text)

    def r(x):
        return None if x is None else round(x, 4)

    return ChineseMetrics(
        chars=len(text), cjk_share=round(cjk_share(text), 4),
        distinct_1=r(distinct_n(text, 1)), distinct_2=r(distinct_n(text, 2)), distinct_3=r(distinct_n(text, 3)),
        longest_repeat=span_eff, longest_repeat_len=len(span_eff), longest_repeat_count=count,
        repeat_share=round(share, 4),
    )


CHECKS = registered_checks("05_chinese")  # this chapter's entries of chapters/checks.yaml


@dataclass
class Verdict:
    status: str  # pass | warn | fail
    label_en: str
    label_zh: str
    reasons_en: list[str]
    reasons_zh: list[str]

    @property
    def detail_en(self) -> str:
        return "; ".join(self.reasons_en)

    @property
    def detail_zh(self) -> str:
        return "；".join(self.reasons_zh)


def thresholds(cp: Any) -> list[dict[str, Any]]:
    """The documented thresholds (params.chinese) as table rows."""
    return [
        {"metric": "cjk_share", "rule": f">= {cp.min_cjk_share}", "name_en": "CJK share of letters/digits",
         "name_zh": "汉字占字母数字比例", "fails_en": "not really Chinese", "fails_zh": "不是中文回答"},
        {"metric": "distinct_2", "rule": f">= {cp.min_distinct_2}", "name_en": "distinct character bigrams",
         "name_zh": "不重复字符二元组比例", "fails_en": "repetition severe", "fails_zh": "重复严重"},
        {"metric": "repeat_share", "rule": f"<= {cp.max_repeat_share}",
         "name_en": f"share taken by the longest repeated span (>= {MIN_SPAN} chars)",
         "name_zh": f"最长重复片段（≥{MIN_SPAN} 字）所占比例", "fails_en": "repetition severe", "fails_zh": "重复严重"},
    ]


def verdict(m: ChineseMetrics, cp: Any, gate: Sequence[grading.Condition] = ()) -> Verdict:
    """fail when `gate` (grading.gate of the text) says it is not language; else pass ("Chinese, no
    severe repetition") or warn with the failing thresholds as reasons."""
    en, zh = [], []
    not_zh = m.cjk_share < cp.min_cjk_share
    if m.chars == 0:
        return Verdict("fail", "empty output", "输出为空", ["empty output"], ["输出为空"])
    bad = [c for c in gate if not c.ok]
    if bad:
        return Verdict("fail", "not language", "不是语言", ["✗ " + c.en for c in bad], ["✗ " + c.zh for c in bad])
    if not_zh:
        en.append(f"CJK share {m.cjk_share:.2f} < {cp.min_cjk_share}")
        zh.append(f"汉字比例 {m.cjk_share:.2f} < {cp.min_cjk_share}")
    rep = False
    if m.distinct_2 is not None and m.distinct_2 < cp.min_distinct_2:
        rep = True
        en.append(f"distinct-2 {m.distinct_2:.2f} < {cp.min_distinct_2}")
        zh.append(f"distinct-2 {m.distinct_2:.2f} < {cp.min_distinct_2}")
    if m.repeat_share > cp.max_repeat_share:
        rep = True
        en.append(f"longest repeated span ({m.longest_repeat_len} chars × {m.longest_repeat_count}) covers "
                  f"{m.repeat_share:.0%} > {cp.max_repeat_share:.0%}")
        zh.append(f"最长重复片段（{m.longest_repeat_len} 字 × {m.longest_repeat_count}）占 "
                  f"{m.repeat_share:.0%} > {cp.max_repeat_share:.0%}")
    if not_zh and rep:
        return Verdict("warn", "not Chinese, repetition severe", "非中文且重复严重", en, zh)
    if not_zh:
        return Verdict("warn", "not Chinese", "非中文回答", en, zh)
    if rep:
        return Verdict("warn", "repetition severe", "重复严重", en, zh)
    return Verdict("pass", "Chinese, no severe repetition", "中文回答，无严重重复",
                   [f"CJK share {m.cjk_share:.2f}, distinct-2 {m.distinct_2}, repeat share {m.repeat_share:.0%}"],
                   [f"汉字比例 {m.cjk_share:.2f}，distinct-2 {m.distinct_2}，重复占比 {m.repeat_share:.0%}"])


def select_prompts(prompt_set: Any) -> list:
    """The Chinese chapter's probes: every `lang: zh` prompt of prompts.yaml (the original's three
    included), every other prompt whose expectation asks for Chinese output (the translation prompt),
    and the original's Chinese prompts once more through the chat template (how a user would ask)."""
    from bitcpm_validation.engine.prompting import with_chat

    base = [q for q in prompt_set.prompts
            if q.lang == "zh" or q.expect.language == "zh" or q.expect.min_cjk_share is not None]
    ids = {q.id for q in base}
    extra = [with_chat(q) for q in base if q.lang == "zh" and q.from_original and not q.chat
             and q.id + "_chat" not in ids]
    return base + extra


def text_verdict(text: str, cp: Any, g: Any) -> Verdict:
    """The verdict of one output: `verdict` of its metrics, gated by `grading.gate` (`g`: params.GradingCriteria)."""
    return verdict(metrics(text or ""), cp, grading.gate(text or "", g))


def same_as_inference(output: dict[str, Any], inference_outputs: Sequence[dict[str, Any]]) -> bool:
    """Whether chapter 03 (its data["outputs"]) already holds exactly this output: a probe with the same id fed the
    same prompt token ids that gave the same output token ids and text. Only then may the chapter show it once,
    there; an output without token ids on either side is never taken as the same."""
    ids, out = output.get("prompt_token_ids"), output.get("token_ids")
    if not ids or out is None:
        return False
    return any(o.get("id") == output.get("id") and o.get("prompt_token_ids") == ids and o.get("token_ids") == out
               and o.get("text") == output.get("text") for o in inference_outputs)


def judge_chinese(prompt: Any, text: str, cp: Any, g: Any, trained_on: Any = None) -> Check:
    """The row of one Chinese probe (`prompt`: params.Prompt, `cp`: params.ChineseParams, `g`:
    params.GradingCriteria, `trained_on`: model.training_corpus.Contamination or None)."""
    v = text_verdict(text, cp, g)
    chat_en, chat_zh = (" (chat)", "（对话）") if prompt.chat else ("", "")
    names = {"name_en": f"Chinese: {prompt.id}{chat_en}", "name_zh": f"中文：{prompt.id}{chat_zh}"}
    if trained_on is not None and prompt.id in trained_on:
        mark = {"pass": "✅", "warn": "⚠️", "fail": "❌"}[v.status]
        return CHECKS["zh"].not_run(f"{trained_on.reason_en(prompt.id)} (its output would be {mark} {v.label_en}, not counted)",
                                    f"{trained_on.reason_zh(prompt.id)}（输出本应为 {mark} {v.label_zh}，不计入）",
                                    item=prompt.id, **names)
    return CHECKS["zh"].row(v.status, f"{v.label_en}: {v.detail_en}", f"{v.label_zh}：{v.detail_zh}", item=prompt.id, **names)
