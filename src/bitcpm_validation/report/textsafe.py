"""Untrusted text (prompts, model outputs, error messages, file contents) shown safely.

Model output may carry HTML, Markdown or control characters. Everything here turns such text into
*text* in the target format: HTML-escaped, Markdown-escaped, or with control characters made visible.

String helpers: html_escape, visible_controls, md_escape, md_code, md_table, html_table, html_pre,
term_safe, one_line. Notebook display (one language at a time) is report.display.
"""
from __future__ import annotations

import html
import re
from typing import Any, Iterable, Sequence

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(s: Any) -> str:
    """Control characters (except tab/newline) as visible escapes, e.g. ESC -> \\x1b, BIDI overrides -> \\u202e."""
    s = "" if s is None else str(s)
    s = s.replace("\r\n", "\n")

    def rep(m: re.Match) -> str:
        c = m.group(0)
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    return _CTRL.sub(rep, s)


def html_escape(s: Any) -> str:
    """Text for HTML element content or a quoted attribute: <>&"' escaped, controls made visible."""
    return html.escape(visible_controls(s), quote=True)


def md_escape(s: Any) -> str:
    """Inline Markdown text: HTML and Markdown metacharacters neutralised, links and autolinks broken.

    `< > &` become entities (no raw HTML survives), `\\ ` * _ [ ] | ~ $ { }` are backslash-escaped, a
    leading `# - + > =` or `1.` is escaped, `://` and `www.` get a word joiner (no autolink), and
    newlines become `<br>` so the text stays inside one table cell or paragraph.
    """
    s = visible_controls(s)
    s = html.escape(s, quote=False)
    s = re.sub(r"([\\`*_\[\]|~${}])", r"\\\1", s)
    s = re.sub(r"://", "\u2060://", s)
    s = re.sub(r"(?i)\bwww\.", "www\u2060.", s)
    lines = []
    for line in s.split("\n"):
        line = re.sub(r"^(\s*)([#+\-=>])", r"\1\\\2", line)
        line = re.sub(r"^(\s*\d+)([.)])(?=\s|$)", r"\1\\\2", line)
        lines.append(line)
    return "<br>".join(lines)


_MD_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def md_text(s: Any) -> str:
    """Project-written inline Markdown (a check's name or reason, a finding): md_escape, except that its
    `backquoted` spans (identifiers, commands, samples: data) stay code spans, as notes and tables show them
    in the HTML. A code span is inert: no HTML, link or emphasis inside it; a `|` in it is escaped (tables)."""
    parts = _MD_CODE_SPAN.split(str(s if s is not None else ""))
    return "".join("`" + visible_controls(p).replace("|", "\\|") + "`" if i % 2 else md_escape(p)
                   for i, p in enumerate(parts))


def md_code(s: Any, lang: str = "text") -> str:
    """A fenced code block that the content cannot close (fence longer than any backtick run inside)."""
    s = visible_controls(s)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{s}\n{fence}"


def md_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, trusted_cols: Iterable[int] = ()) -> str:
    """A GitHub Markdown table; every cell escaped unless its column index is in trusted_cols."""
    trusted = set(trusted_cols)

    def cell(i: int, v: Any) -> str:
        if i in trusted:
            return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")
        return md_escape("" if v is None else v)

    out = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(cell(i, v) for i, v in enumerate(r)) + " |")
    return "\n".join(out)


def term_safe(s: Any, limit: int | None = None) -> str:
    """For a terminal: controls (ESC sequences included) made visible; optionally shortened."""
    s = visible_controls(s)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def one_line(s: Any, limit: int = 300) -> str:
    """First meaningful line-ish summary of an error: whitespace collapsed, controls visible, shortened."""
    s = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "" if s is None else str(s))  # ANSI colour from tracebacks
    s = " ".join(s.split())
    return term_safe(s, limit)


def html_pre(s: Any, cls: str = "untrusted") -> str:
    return f'<pre class="{html_escape(cls)}">{html_escape(s)}</pre>'


LONG_TOKEN = 25  # characters without a space: a hash, path or URL that may break anywhere in a table cell
_LONG = re.compile(r"[^\s<>]{%d,}" % LONG_TOKEN)


_NUMBER_TEXT = re.compile(r"^[-+−]?[\d.,]+(?:\s?(?:%|[A-Za-zµ/×·]+(?:/[A-Za-z]+)?))?$")


def is_number_text(v: Any) -> bool:
    """A number, alone or with a short unit ("16,898.6 ms", "74.63 %", "0.0073 GB"): kept on one line."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return isinstance(v, str) and len(v) <= 24 and bool(_NUMBER_TEXT.match(v.strip()))


# where a command or identifier may wrap: after a run of / - _ = that sits between word characters
# ("--enforce-<wbr>eager", "VLLM_<wbr>CPU_<wbr>OMP", "params/<wbr>default.yaml"), never inside a word
_BREAK_AFTER = re.compile(r"(?<=\w)([/_=-]+)(?=\w)")
_TAG_OR_TEXT = re.compile(r"(<[^>]*>)")


def break_points(escaped_html: str) -> str:
    """Escaped text (or HTML) with `<wbr>` after `/ - _ =` inside identifiers, so that a command or name
    wraps there and nowhere mid-word; tags and entities are left as they are."""
    parts = _TAG_OR_TEXT.split(escaped_html)
    return "".join(p if p.startswith("<") else _BREAK_AFTER.sub(r"\1<wbr>", p) for p in parts)


def cell_html(v: Any) -> str:
    """A table cell's escaped text; a long unbroken token is marked: a hash `bv-long` (it alone may wrap
    anywhere), a path or identifier `bv-path` with `<wbr>` after its / - _ = (it wraps only there), while
    words and numbers keep a column wide enough never to be split."""
    def mark(m: re.Match) -> str:  # a path or identifier wraps at its / - _ =; a hash anywhere
        tok = m.group(0)
        if _BREAK_AFTER.search(tok):
            return f'<span class="bv-path">{break_points(tok)}</span>'
        return f'<span class="bv-long">{tok}</span>'

    return _LONG.sub(mark, html_escape("" if v is None else v))


class CellHtml(str):
    """A table cell already made safe HTML by the project (display.table_html: a T cell with `code` spans)."""


def html_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, trusted_cols: Iterable[int] = (),
               cls: str = "bv-table") -> str:
    """An HTML table with every cell escaped (unless its column is trusted project HTML, e.g. a mark, or the
    cell is CellHtml)."""
    trusted = set(trusted_cols)
    head = "".join(f"<th>{h if isinstance(h, CellHtml) else html_escape(h)}</th>" for h in headers)
    body = []
    for r in rows:
        tds = "".join(f"<td>{v}</td>" if i in trusted or isinstance(v, CellHtml) else
                      (f'<td class="bv-num">{cell_html(v)}</td>' if is_number_text(v) else f"<td>{cell_html(v)}</td>")
                      for i, v in enumerate(r))
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="{html_escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
