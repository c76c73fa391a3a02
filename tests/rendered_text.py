"""Checks of what a reader of the rendered report sees (tests only: the rendered-report and render tests).

External URLs, other-language text in a one-language file, English words in the Chinese file (outside verbatim
data, code and report/glossary.yaml's names), mid-word breaks of known identifiers, config reprs and empty
placeholders on the printed pages, headings with nothing under them.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from bitcpm_validation.report import render

_URL_ATTR = re.compile(r"""\s(?:src|href|action|poster|data|formaction|srcset)\s*=\s*["']?\s*((?:[a-z][a-z0-9+.-]*:)?//[^"'\s>]*)""", re.I)


_CSS_URL = re.compile(r"""@import|url\(\s*["']?(?:[a-z]+:)?//""", re.I)


def external_refs(html: str) -> list[str]:
    """External URLs a browser would load or follow from this HTML (a check for tests; should be empty)."""
    return [m.group(1) for m in _URL_ATTR.finditer(html)] + [m.group(0) for m in _CSS_URL.finditer(html)]


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Visible(HTMLParser):
    """The text a reader sees, leaving out verbatim blocks (model output, code, logs), hidden code (a code cell's
    input: report.css hides it; a Markdown cell's text lives in its input wrapper too, and is read) and the
    toolbar (its language switch names the other language in that language)."""

    SKIP = {"pre", "code", "script", "style", "samp", "kbd"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._stack: list[tuple[bool, bool]] = []  # (skipped, a code cell) per open element
        self._code_cells = 0

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        cls = set((dict(attrs).get("class") or "").split())
        code_cell = "jp-CodeCell" in cls
        skip = tag in self.SKIP or bool({"untrusted", "bv-verbatim", "bv-toolbar", "jp-InputPrompt", "jp-OutputPrompt"} & cls) \
            or ("jp-Cell-inputWrapper" in cls and self._code_cells > 0)
        self._stack.append((skip, code_cell))
        self._skip += skip
        self._code_cells += code_cell

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if self._stack:
            skip, code_cell = self._stack.pop()
            self._skip -= skip
            self._code_cells -= code_cell

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


ENGLISH_RUN = re.compile(r"(?:\b[A-Za-z][a-z]+\b[ ,;:]+){4,}\b[A-Za-z][a-z]+\b")


def language_leaks(html: str, lang: str) -> list[str]:
    """Other-language text in a one-language report (outside model output, code and logs): for en any CJK
    character, for zh a run of five or more English words (technical terms are shorter)."""
    p = _Visible()
    p.feed(html.replace("<wbr>", ""))
    # text nodes are judged apart: adjacent table cells ("scale min", "scale max") are not one sentence
    text = " ¦ ".join(re.sub(r"\s+", " ", t) for t in p.parts if t.strip())
    pat = CJK if lang == "en" else ENGLISH_RUN
    return [text[max(0, m.start() - 30):m.end() + 30] for m in pat.finditer(text)]


GLOSSARY_FILE = Path(render.__file__).with_name("glossary.yaml")


# a Latin word, not part of an identifier: not inside a path, file name, dotted name, KEY=value or <placeholder>
# (nor part of one with a digit: "top-1", "long-256", "full-shape-6c9f…" are names and ids, not "top", "long", "full")
LATIN_WORD = re.compile(r"(?<![\w./\\=<-])[A-Za-z][A-Za-z'-]*[A-Za-z]\b(?![./_\\(]\w|=|/\S|>|-)"
                         r"|(?<![\w./=<-])[A-Za-z]\b(?![./_-]\w|=|/\S|>)")


def glossary() -> dict[str, Any]:
    """glossary.yaml: {"terms": concept -> Chinese term, "allow": names kept in Latin letters}."""
    return yaml.safe_load(GLOSSARY_FILE.read_text(encoding="utf-8"))


def english_words(html: str, allow: Optional[Iterable[str]] = None) -> dict[str, int]:
    """English words in a Chinese report's visible text, outside code, logs, model output and verbatim cells,
    and outside the glossary's allow-list of names: word -> count (should be empty). A token with a digit,
    dot, slash or underscore (a version, path, file or identifier written as text) is not a word."""
    allowed = set(glossary()["allow"] if allow is None else allow)
    p = _Visible()
    p.feed(html.replace("<wbr>", ""))  # an identifier's break points do not split it into words
    found: dict[str, int] = {}
    for part in p.parts:
        for m in LATIN_WORD.finditer(part):
            w = m.group(0)
            # all capitals (an acronym, an environment name) or a capital inside (AutoConfig): a name, not a word
            if w not in allowed and not w.isupper() and not any(ch.isupper() for ch in w[1:]):
                found[w] = found.get(w, 0) + 1
    return found


# known identifiers a printed page must never split mid-word (it may wrap after - _ / =, or not at all)
KNOWN_IDENTIFIERS = ("--enforce-eager", "VLLM_CPU_OMP_THREADS_BIND", "AutoModelForCausalLM", "MiniCPMForCausalLM",
                     "stand-in", "trust_remote_code", "max_model_len", "VLLM_BATCH_INVARIANT", "BitCPM4-0.5B")


CONFIG_REPR = re.compile(r"=None\)|\b[A-Z]\w*Config\(\w*|\w+=\w+\(\w+=")


PLACEHOLDER = re.compile(r"\b\w+: [.),;]|(?<!\w)\(\s*\)|「\s*」|：\s*[。，；]")


def broken_identifiers(pages: list[str], names: Iterable[str] = KNOWN_IDENTIFIERS) -> list[str]:
    """Each known identifier printed with a line break inside a word (not right after - _ / =)."""
    out = []
    for n, text in enumerate(pages, 1):
        for name in names:
            # the name with any whitespace between its characters; a match with a break is judged
            pat = re.compile(r"\s*".join(re.escape(ch) for ch in name))
            for m in pat.finditer(text):
                got = m.group(0)
                if got == name:
                    continue
                for i, ch in enumerate(got):
                    if ch.isspace() and got[i - 1] not in "-_/=" and not got[i - 1].isspace():
                        out.append(f"page {n}: {name!r} printed as {got!r}")
                        break
    return out


def print_problems(pages: list[str]) -> list[str]:
    """Config reprs, empty placeholders ("grading: .") and mid-word breaks of known identifiers on the pages."""
    out = broken_identifiers(pages)
    for n, text in enumerate(pages, 1):
        flat = re.sub(r"\s+", " ", text)
        for pat, what in ((CONFIG_REPR, "a config repr"), (PLACEHOLDER, "an empty placeholder")):
            for m in pat.finditer(flat):
                out.append(f"page {n}: {what}: {flat[max(0, m.start() - 30):m.end() + 20]!r}")
    return out


def orphan_headings(html: str) -> list[str]:
    """Headings with nothing after them before the next heading of the same or a higher level (or the end)."""
    p = _Blocks()
    p.feed(html)
    out = []
    for i, (kind, text) in enumerate(p.blocks):
        if kind.startswith("h") and text.strip():
            level = int(kind[1])
            rest = p.blocks[i + 1:]
            nxt = next((j for j, (k, _) in enumerate(rest) if k.startswith("h") and int(k[1]) <= level), len(rest))
            if not any(t.strip() for k, t in rest[:nxt] if not k.startswith("h")):
                out.append(text.strip()[:80])
    return out


class _Blocks(HTMLParser):
    """The visible document as (h1..h6 | text, content) blocks, hidden code cells left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self._stack: list[tuple[str, bool]] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        cls = set((dict(attrs).get("class") or "").split())
        hide = tag in ("script", "style") or bool({"jp-Cell-inputWrapper", "bv-toolbar", "bv-toc"} & cls)
        self._stack.append((tag, hide))
        self._hidden += hide
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and not self._hidden:
            self.blocks.append((tag, ""))
        elif tag in ("img", "table"):
            self.blocks.append(("text", tag))

    def handle_endtag(self, tag):
        if tag in _VOID or not self._stack:
            return
        t, hide = self._stack.pop()
        self._hidden -= hide
        if t in ("h1", "h2", "h3", "h4", "h5", "h6") and self.blocks and self.blocks[-1][0] == t:
            self.blocks.append(("text", ""))

    def handle_data(self, data):
        if self._hidden or not data.strip():
            return
        kind, text = self.blocks[-1] if self.blocks else ("text", "")
        if self.blocks and kind.startswith("h") and any(t == kind for t, _ in self._stack):
            self.blocks[-1] = (kind, text + data)
        else:
            self.blocks.append(("text", data))
