"""Chapter 03: grade each probe's output against its prompt's expectation (params/prompts.yaml).

Two steps, so that noise fails and a limited model is told apart from a broken one:

1. **Is the output language at all?** (`grading.gate`, thresholds in prompts.yaml `grading:`): recognised
   words (wordfreq), no looped unit (compression ratio), sentences for Latin text (shuffled words fail).
   Not language: ❌, whatever the prompt asked.
2. **Does it do what the prompt asked?** The expectation's conditions: the answer as a word in the answer
   position, the output's language (lingua), no severe repetition, words, required/forbidden strings.
   A miss gives the expectation's `on_miss` (❌ unless the prompt marks the ability as limited: ⚠️).

A probe whose prompt occurs in the model's declared training corpus (model.training_corpus) is not
judged: its row is not_run with that reason (the stand-in was trained on every probe).

    row = judge_probe(prompt, text, prompt_set.grading, contamination)
    ch.record(row)

What the chapter shows says that reason once for all such probes (`not_judged_note`) and, per output, only
the grade it would get (`result_cell`); the rows keep the full reason (the summary and report.md read them).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from bitcpm_validation.report import grading
from bitcpm_validation.report.textsafe import html_escape
from bitcpm_validation.chapters.chinese import cjk_share, metrics as repetition_metrics
from bitcpm_validation.model.training_corpus import Contamination, contamination
from bitcpm_validation.params import Expectation, GradingCriteria, Prompt

from bitcpm_validation.report.results import Check
from bitcpm_validation.chapters import registered_checks

CHAPTER = "03_inference"

CHECKS = registered_checks("03_inference")  # this chapter's entries of chapters/checks.yaml


@dataclass
class Grade:
    status: str  # pass | warn | fail
    conditions: list[grading.Condition] = field(default_factory=list)
    note_en: str = ""
    note_zh: str = ""
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [c.id for c in self.conditions if not c.ok]

    @property
    def detail_en(self) -> str:
        parts = [f"expected: {self.note_en}"] if self.note_en else []
        return "; ".join(parts + [("" if c.ok else "✗ ") + c.en for c in self.conditions])

    @property
    def detail_zh(self) -> str:
        parts = [f"预期：{self.note_zh}"] if self.note_zh else []
        return "；".join(parts + [("" if c.ok else "✗ ") + c.zh for c in self.conditions])

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "failed": self.failed, "detail_en": self.detail_en,
                "detail_zh": self.detail_zh, "conditions": [asdict(c) for c in self.conditions],
                "measures": self.measures}


# An option line of a multiple-choice style answer: "[A]. Paris", "A) Paris", "(B) Berlin", "C. London".
_OPTION = re.compile(r"^\s*[\[(]?([A-Da-d])[\])]?\s*[.:)]\s*(.+?)\s*$", re.M)
# The line that picks one: "Answer: A", "The answer is (B)", "答案：C".
_PICK = re.compile(r"(?:answer\s*(?:is)?\s*[:：]?|答案\s*[:：是]?)\s*[\[(]?([A-Da-d])[\])]?(?![^\W_])", re.I)


def _as_word(answer: str, text: str) -> bool:
    """`answer` occurs in `text` as a whole word (CJK answers: as a substring; there are no word boundaries)."""
    if grading.has_cjk(answer):
        return answer in text
    return re.search(r"(?<![^\W_])" + re.escape(answer) + r"(?![^\W_])", text, re.I) is not None


def first_sentence(text: str) -> str:
    """The first non-empty line, up to its first sentence end (. ! ? followed by a space, or 。！？)."""
    line = next((l for l in text.splitlines() if l.strip()), "")
    m = re.search(r"[.!?](?=\s)|[。！？]", line)
    return line[:m.end()] if m else line


def answer_in_position(text: str, answers: Sequence[str]) -> tuple[Optional[str], str, str]:
    """(the accepted answer found or None, where it looked in English, in Chinese).

    Positions: the option an explicit pick ("Answer: A") chooses, when the output lists options; else the
    first sentence. A digit that occurs by chance later in the text is not an answer."""
    options = {k.upper(): v for k, v in _OPTION.findall(text)}
    pick = _PICK.search(text)
    if options and pick and pick.group(1).upper() in options:
        letter = pick.group(1).upper()
        chosen = options[letter]
        hit = next((a for a in answers if _as_word(a, chosen)), None)
        picked = pick.group(0).strip()
        return hit, f"option {letter} ({chosen!r}) picked by {picked!r}", f"{picked!r} 选择的选项 {letter}（{chosen!r}）"
    first = first_sentence(text).strip()[:80]
    hit = next((a for a in answers if _as_word(a, first)), None)
    return hit, f"first sentence {first!r}", f"第一句 {first!r}"


def grade(text: str, expect: Expectation, g: GradingCriteria) -> Grade:
    """pass, expect.on_miss when a task condition misses, fail when the output is not language (see module doc)."""
    t = text or ""
    gate = grading.gate(t, g)
    m = repetition_metrics(t)
    measures: dict[str, Any] = {"compression_ratio": grading.compression_ratio(t), "distinct_2": m.distinct_2,
                                "repeat_share": m.repeat_share, "cjk_share": m.cjk_share,
                                "words": grading.word_count(t)}
    if any(not c.ok for c in gate):
        return Grade("fail", gate, expect.note_en, expect.note_zh or expect.note_en, measures)

    task: list[grading.Condition] = []

    def cond(cid: str, ok: bool, en: str, zh: str) -> None:
        task.append(grading.Condition(cid, ok, en, zh))

    n = len(t.strip())
    if expect.min_chars > 1:
        cond("min_chars", n >= expect.min_chars, f"{n} characters (>= {expect.min_chars})",
             f"{n} 个字符（≥ {expect.min_chars}）")
    if expect.min_words:
        w = measures["words"]
        cond("min_words", w >= expect.min_words, f"{w} words (>= {expect.min_words})", f"{w} 个词（≥ {expect.min_words}）")
    if expect.min_lines:
        lines = sum(1 for line in t.splitlines() if line.strip())
        cond("min_lines", lines >= expect.min_lines, f"{lines} lines (>= {expect.min_lines})",
             f"{lines} 行（≥ {expect.min_lines}）")
    if expect.answer:
        hit, where_en, where_zh = answer_in_position(t, expect.answer)
        cond("answer", hit is not None,
             f"answer {hit!r} in the answer position: {where_en}" if hit
             else f"none of {expect.answer} in the answer position: {where_en}",
             f"作答位置有答案 {hit!r}：{where_zh}" if hit else f"作答位置没有 {expect.answer} 中的任何一个：{where_zh}")
    if expect.language:
        shares = grading.language_shares(t, g.languages)
        measures["language_shares"] = {k: round(v, 3) for k, v in shares.items()}
        got = shares.get(expect.language, 0.0)
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:3]) or "no letters"
        cond("language", got >= g.min_language_share,
             f"{got:.0%} {expect.language} (>= {g.min_language_share:.0%}; lingua: {top})",
             f"`{expect.language}` 占 {got:.0%}（要求 ≥ {g.min_language_share:.0%}；lingua：{'、'.join(f'`{k}` {v:.0%}' for k, v in list(shares.items())[:3]) or '没有字母'}）")
    if expect.no_repetition:
        d2 = m.distinct_2 if m.distinct_2 is not None else 0.0
        ok = d2 >= g.min_distinct_2 and m.repeat_share <= g.max_repeat_share
        cond("no_repetition", ok,
             f"distinct-2 {d2:.2f} (>= {g.min_distinct_2}), longest repeated span covers {m.repeat_share:.0%} "
             f"(<= {g.max_repeat_share:.0%})",
             f"distinct-2 {d2:.2f}（≥ {g.min_distinct_2}），最长重复片段占 {m.repeat_share:.0%}（≤ {g.max_repeat_share:.0%}）")
    low = t.lower()
    if expect.contains_any:
        hits = [w for w in expect.contains_any if w.lower() in low]
        cond("contains_any", bool(hits), f"contains {hits}", f"包含 {hits}",) if hits else cond(
            "contains_any", False, f"none of {expect.contains_any} found", f"未出现 {expect.contains_any} 中任何一个")
    if expect.contains_all:
        missing = [w for w in expect.contains_all if w.lower() not in low]
        cond("contains_all", not missing, f"contains all of {expect.contains_all}" if not missing else f"missing {missing}",
             f"包含全部 {expect.contains_all}" if not missing else f"缺少 {missing}")
    if expect.not_contains:
        bad = [w for w in expect.not_contains if w.lower() in low]
        cond("not_contains", not bad, f"none of {expect.not_contains}" if not bad else f"contains forbidden {bad}",
             f"不含 {expect.not_contains}" if not bad else f"含有不应出现的 {bad}")
    if expect.min_cjk_share is not None:
        share = cjk_share(t)
        cond("min_cjk_share", share >= expect.min_cjk_share, f"CJK share {share:.2f} (>= {expect.min_cjk_share})",
             f"汉字比例 {share:.2f}（≥ {expect.min_cjk_share}）")
    status = expect.on_miss if any(not c.ok for c in task) else "pass"
    return Grade(status, gate + task, expect.note_en, expect.note_zh or expect.note_en, measures)


def probe_contamination(model_dir, prompts: Sequence[Prompt]) -> Contamination:
    """Which probe prompts occur verbatim in the training corpus the model directory declares."""
    return contamination(model_dir, {q.id: q.prompt for q in prompts})


def judge_probe(prompt: Prompt, text: str, g: GradingCriteria,
                trained_on: Optional[Contamination] = None) -> Check:
    """The probe's row: not_run when the model was trained on the prompt, else its grade (pass/warn/fail)."""
    gr = grade(text, prompt.expect, g)
    name_en, name_zh = f"Probe {prompt.id} ({prompt.lang}, {prompt.kind})", f"探针 `{prompt.id}`（`{prompt.lang}`，`{prompt.kind}`）"
    if trained_on is not None and prompt.id in trained_on:
        mark = {"pass": "✅", "warn": "⚠️", "fail": "❌"}[gr.status]
        return CHECKS["probe"].not_run(f"{trained_on.reason_en(prompt.id)} (its output would grade {mark}, not counted)",
                                       f"{trained_on.reason_zh(prompt.id)}（输出评分本应为 {mark}，不计入）",
                                       item=prompt.id, name_en=name_en, name_zh=name_zh)
    return CHECKS["probe"].row(gr.status, gr.detail_en, gr.detail_zh, item=prompt.id, name_en=name_en, name_zh=name_zh)


MARKS = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_run": "—"}


def not_judged_note(trained_on: Contamination, ids: Sequence[str]) -> tuple[str, str]:
    """(zh, en): the one line above the outputs that says why the probes the model was trained on are not
    judged, so that each output's row shows only what differs (`result_cell`)."""
    hits = [i for i in ids if i in trained_on]
    if not hits:
        return trained_on.summary_zh(), trained_on.summary_en()
    if len(hits) == len(ids):
        which_zh, which_en = "这些项全部", "None of them is judged (not run)"
    else:
        which_zh = f"其中 {'、'.join(hits)} "
        which_en = f"{', '.join(hits)} {'is' if len(hits) == 1 else 'are'} not judged (not run)"
    return (f"{trained_on.summary_zh()}。{which_zh}不评判（记为未运行）：模型训练时见过这些提示，回答只说明记忆，"
            "不说明能力；结果一栏给出输出本应得到的评分，不计入。",
            f"{trained_on.summary_en()}. {which_en}: the model was trained on these prompts, so their answers show "
            "recall, not ability; the result column gives the grade each output would get, not counted.")


def result_cell(row: Check, would_be: Optional[str] = None, label_zh: str = "", label_en: str = "") -> tuple[str, str]:
    """(zh, en): an output's result beside it: the mark and why for a judged row; for one not judged because
    the model was trained on its prompt (said once, by `not_judged_note`), only the grade it would get
    (`would_be`: pass | warn | fail, given only for such a prompt; `label_*`: the verdict's short name, shown for
    ⚠️ / ❌ only, since ✅ has one meaning)."""
    if row.status == "not_run" and would_be is not None:
        if would_be == "pass":
            label_zh = label_en = ""
        zh = f"—（本应为 {MARKS[would_be]}{' ' + label_zh if label_zh else ''}）"
        en = f"— (would be {MARKS[would_be]}{' ' + label_en if label_en else ''})"
        return zh, en
    return f"{MARKS[row.status]} {row.detail_zh}".strip(), f"{MARKS[row.status]} {row.detail_en}".strip()


def probe_cell(prompt: Prompt) -> tuple[str, str]:
    """(zh, en) HTML: the probe's names from prompts.yaml (id, language, kind) marked as verbatim data, then
    whether it went through the chat template, in the report's language."""
    names = f'<span class="bv-verbatim">{html_escape(f"{prompt.id} ({prompt.lang}, {prompt.kind})")}</span>'
    return names + ("，对话模板" if prompt.chat else ""), names + (", chat template" if prompt.chat else "")
