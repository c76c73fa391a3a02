"""Grading model output: is it language at all? Measurements with language-identification and word-frequency data.

Not a chapter: the probe and Chinese graders (chapters.inference, chapters.chinese) judge with these, instead of
counting characters, so that noise (a random-weight model's fragments, random tokens of a vocabulary, shuffled
words, one token looped) fails. It sits in the report layer beside `stats` (shared by several chapters, no engine):

- `recognition(text, ...)`: the share of the output's letters/digits/symbols that sit inside words a
  word-frequency list knows (wordfreq; CJK text segmented with jieba as wordfreq does). Random tokens of a
  subword vocabulary glue into non-words, and byte-fallback pieces decode to U+FFFD / control characters.
- `sentence_case(text)`: sentences (split at . ! ?) that start with a capital or a digit, for
  Latin-script text. Shuffled real words keep their word frequencies but lose this.
- `compression_ratio(text)`: UTF-8 bytes / zlib bytes; a loop of one short unit compresses > 10x.
- `language_shares(text, codes)`: the share of letters lingua assigns to each language.

Everything runs offline: wordfreq, jieba and lingua ship their data in the wheel (no download at run time).
Heavy imports happen inside the functions (chapter modules must stay cheap to import).
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

# CJK ideographs: unified (U+4E00), extension A (U+3400), compatibility (U+F900), extensions B-F, I and the
# compatibility supplement (U+20000-U+2FA1F), extensions G-H (U+30000-U+323AF); not CJK punctuation or kana
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F), (0x30000, 0x323AF))
_CJK = "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_RANGES)
_CJK_RUN = re.compile(f"[{_CJK}]+")
# runs of CJK ideographs | runs of other letters (with inner ' and -) | digits | any other non-space character
_RUNS = re.compile(f"[{_CJK}]+|[^\\W\\d_{_CJK}]+(?:['’-][^\\W\\d_{_CJK}]+)*|\\d+|[^\\s]", re.UNICODE)


def is_cjk(ch: str) -> bool:
    """`ch` is one CJK ideograph (see CJK_RANGES); False for an empty string (the edge of a text)."""
    return len(ch) == 1 and any(a <= ord(ch) <= b for a, b in CJK_RANGES)


@dataclass
class Recognition:
    """How much of a text is recognised words. `share` = recognised characters / counted characters."""

    share: float
    counted: int  # letters, digits, symbols and broken characters (U+FFFD, controls); not spaces/punctuation
    recognized: int
    latin_lang: str  # the language Latin-script words were looked up in
    unknown: list[str] = field(default_factory=list)  # a few unrecognised pieces, for the reason

    def pct(self) -> str:
        return f"{self.share:.0%}"


@lru_cache(maxsize=8)
def _detector(codes: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    langs = []
    for c in codes:
        try:
            langs.append(getattr(IsoCode639_1, c.upper()))
        except AttributeError:
            raise ValueError(f"grading.languages: {c!r} is not an ISO 639-1 code lingua knows: fix or remove it") from None
    return LanguageDetectorBuilder.from_iso_codes_639_1(*langs).build()


def _code(language) -> str:
    return language.iso_code_639_1.name.lower()


def latin_language(text: str, codes: Sequence[str]) -> str:
    """The language lingua detects for the non-CJK part of `text` ("en" when it cannot tell)."""
    latin = _CJK_RUN.sub(" ", text)
    if not re.search(r"[^\W\d_]", latin):
        return "en"
    lang = _detector(tuple(codes)).detect_language_of(latin)
    return _code(lang) if lang is not None else "en"


def language_shares(text: str, codes: Sequence[str]) -> dict[str, float]:
    """Share of the text's letters in each language: CJK ideographs are Chinese (Japanese when the text has
    kana); the other letters are in the language lingua detects for them as a whole. (lingua's per-section
    detection mislabels short English sentences, e.g. as Italian, so it is not used.)"""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return {}
    kana = any("\u3040" <= c <= "\u30ff" for c in letters)
    cjk = sum(1 for c in letters if is_cjk(c) or (kana and "\u3040" <= c <= "\u30ff"))
    shares: dict[str, float] = {}
    if cjk:
        shares["ja" if kana else "zh"] = cjk / len(letters)
    rest = len(letters) - cjk
    if rest:
        other = _CJK_RUN.sub(" ", re.sub("[\u3040-\u30ff]+", " ", text))
        lang = _detector(tuple(codes)).detect_language_of(other)
        k = _code(lang) if lang is not None else "unknown"
        shares[k] = shares.get(k, 0.0) + rest / len(letters)
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


@lru_cache(maxsize=1)
def _quiet_jieba() -> None:
    """jieba (wordfreq's Chinese segmenter) logs "Building prefix dict ..." and warns about pkg_resources on first
    use: neither belongs in a chapter's output."""
    import logging
    import warnings

    logging.getLogger("jieba").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import jieba  # noqa: F401

        jieba.setLogLevel(logging.WARNING)


def _wordfreq_lang(code: str) -> str:
    import wordfreq

    return code if code in wordfreq.available_languages() else "en"


def recognition(text: str, codes: Sequence[str], min_zipf_word: float, min_zipf_cjk_char: float) -> Recognition:
    """Recognised share of `text` (see the module docstring); punctuation and spaces are not counted."""
    import wordfreq

    _quiet_jieba()
    lat = _wordfreq_lang(latin_language(text, codes))
    counted = recognized = 0
    unknown: list[str] = []

    def miss(piece: str) -> None:
        if len(unknown) < 6 and piece not in unknown:
            unknown.append(piece)

    for mt in _RUNS.finditer(text):
        run = mt.group()
        if _CJK_RUN.fullmatch(run):
            for w in wordfreq.tokenize(run, "zh"):
                z = wordfreq.zipf_frequency(w, "zh")
                counted += len(w)
                if (len(w) >= 2 and z >= min_zipf_word) or (len(w) == 1 and z >= min_zipf_cjk_char):
                    recognized += len(w)
                else:
                    miss(w)
        elif run[0].isdigit():
            counted += len(run)
            recognized += len(run)
        elif run[0].isalpha():
            counted += len(run)
            before, after = text[mt.start() - 1:mt.start()], text[mt.end():mt.end() + 1]
            if run.islower() and (is_cjk(before) or is_cjk(after)):
                miss(run)  # a lowercase fragment glued to Chinese: how random subword tokens decode, not how
                continue   # Chinese text writes English (terms, names, acronyms: capitalised, or spaced)
            # the detected language's list, or English's (names, loanwords, "Answer:" in a short list of options)
            if max(wordfreq.zipf_frequency(run, lat), wordfreq.zipf_frequency(run, "en")) >= min_zipf_word:
                recognized += len(run)
            else:
                miss(run)
        else:  # one non-space character that is not a letter or digit
            cat = unicodedata.category(run)
            if cat[0] == "P" or run in "+-*/=<>()[]{}%&#@$^~|\\`'\"":
                continue  # punctuation and ordinary ASCII symbols are neither words nor noise
            counted += 1  # U+FFFD from broken bytes, control characters, other symbols
            miss(run)
    share = recognized / counted if counted else 0.0
    return Recognition(round(share, 4), counted, recognized, lat, unknown)


def sentences(text: str) -> list[str]:
    """Sentences of Latin-script text: split at . ! ? (and their full-width forms); only those with a letter."""
    return [s for s in re.split(r"[.!?。！？]+", text) if re.search(r"[^\W_]", s)]


def sentence_case(text: str) -> tuple[int, int]:
    """(sentences whose first letter/digit is a capital, a digit or not cased (CJK), all sentences)."""
    parts = sentences(text)
    ok = 0
    for s in parts:
        first = re.search(r"[^\W_]", s).group()
        if first.isdigit() or first.isupper() or first.lower() == first.upper():
            ok += 1
    return ok, len(parts)


def compression_ratio(text: str) -> float:
    """UTF-8 bytes / zlib-compressed bytes (0.0 for empty text)."""
    b = text.encode("utf-8")
    return round(len(b) / len(zlib.compress(b, 9)), 2) if b else 0.0


def word_count(text: str) -> int:
    """Latin-script words and numbers, plus one per CJK character."""
    n = 0
    for run in _RUNS.findall(text):
        if _CJK_RUN.fullmatch(run):
            n += len(run)
        elif run[0].isalnum():
            n += 1
    return n


def has_cjk(text: str) -> bool:
    return bool(_CJK_RUN.search(text))


@dataclass
class Condition:
    """One judged condition of a grade: what was required, what was found, in both languages."""

    id: str
    ok: bool
    en: str
    zh: str


def gate(text: str, g) -> list[Condition]:
    """Is `text` language at all? `g`: params.GradingCriteria. Any condition not ok: the output is noise.

    - not empty;
    - recognised share >= g.min_recognized_share (random tokens, fragments, broken bytes fail);
    - compression ratio <= g.max_compression_ratio (one short unit looped fails);
    - Latin-script text of 6+ words: sentences starting with a capital >= g.min_sentence_case_share
      (shuffled words fail)."""
    t = text or ""
    if not t.strip():
        return [Condition("empty", False, "empty output", "输出为空")]
    out: list[Condition] = []
    r = recognition(t, g.languages, g.min_zipf_word, g.min_zipf_cjk_char)
    unk = (f" (not words, or lowercase pieces glued to CJK characters: {', '.join(repr(u) for u in r.unknown)})"
           if r.unknown else "")
    unk_zh = f"（非词，或紧贴汉字的小写字母片段：{'、'.join(repr(u) for u in r.unknown)}）" if r.unknown else ""
    out.append(Condition(
        "recognized", r.counted > 0 and r.share >= g.min_recognized_share,
        f"{r.pct()} of the text is recognised words (>= {g.min_recognized_share:.0%} needed){unk}",
        f"可识别词语占 {r.pct()}（要求 ≥ {g.min_recognized_share:.0%}）{unk_zh}"))
    cr = compression_ratio(t)
    out.append(Condition(
        "loop", cr <= g.max_compression_ratio,
        f"compression ratio {cr:.2f} (<= {g.max_compression_ratio:g}; above: a looped unit)",
        f"压缩比 {cr:.2f}（≤ {g.max_compression_ratio:g}；超过即循环重复）"))
    cjk = sum(1 for c in t if is_cjk(c))
    letters = sum(1 for c in t if c.isalpha())
    if word_count(t) >= 6 and cjk < letters / 2:
        ok_n, n = sentence_case(t)
        share = ok_n / n if n else 0.0
        out.append(Condition(
            "sentence_case", share >= g.min_sentence_case_share,
            f"{ok_n}/{n} sentences start with a capital (>= {g.min_sentence_case_share:.0%} needed)",
            f"{ok_n}/{n} 个句子以大写字母开头（要求 ≥ {g.min_sentence_case_share:.0%}）"))
    return out
