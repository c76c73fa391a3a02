"""What a chapter notebook shows, in one language at a time.

The report is rendered once per language (`lang: zh | en | both` in params). Project-written text is
given in both languages as `T(zh, en)`; every display helper here emits one output per language,
marked in the output's metadata (`{"bitcpm_lang": "zh"}`), and the renderer keeps only the outputs of
the language it renders (JupyterLab shows both). Text without a language (numbers, model output,
technical terms) is shown once, in every rendering.

    show_md(T("本章……", "This chapter …"))
    show_table([T("指标", "Metric"), T("值", "Value")], [[T("初始化", "Init"), "12.3 s"]])
    show_text(model_output)                 # untrusted: escaped, verbatim, language-neutral
    show_note(T("……", "…"), kind="warn")    # a highlighted box
    show_figure(lambda lang: plot(..., title=in_lang(T("延迟", "Latency"), lang)))  # one figure per language

Model output and other untrusted text is always escaped (report.textsafe); only `show_md` takes
project-written Markdown.
"""
from __future__ import annotations

import re

from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

from bitcpm_validation.report.textsafe import CellHtml, cell_html, html_escape, html_pre, html_table

LANGS = ("zh", "en")
LANG_KEY = "bitcpm_lang"  # output metadata key read by report.render


class T(NamedTuple):
    """A project-written text in both languages."""
    zh: str
    en: str

    def __str__(self) -> str:  # never rendered mixed: callers pick a language with in_lang()
        return self.en


def in_lang(x: Any, lang: str) -> Any:
    """The text of `x` in `lang` (T), or `x` itself (numbers, model output, technical terms)."""
    if isinstance(x, T):
        return x.zh if lang == "zh" else x.en
    return x


def _has_t(*items: Any) -> bool:
    for x in items:
        if isinstance(x, T):
            return True
        if isinstance(x, (list, tuple)) and not isinstance(x, T) and _has_t(*x):
            return True
    return False


def _emit(html_by_lang: dict[Optional[str], str]) -> None:
    from IPython.display import HTML, display

    for lang, h in html_by_lang.items():
        display(HTML(h), metadata={LANG_KEY: lang} if lang else {})


def _emit_md(md_by_lang: dict[Optional[str], str]) -> None:
    from IPython.display import Markdown, display

    for lang, m in md_by_lang.items():
        display(Markdown(m), metadata={LANG_KEY: lang} if lang else {})


def _verbatim(v: Any) -> str:
    """A data cell (sample text, log line, model output): escaped and marked as verbatim, i.e. in no language."""
    return f'<span class="bv-verbatim">{html_escape("" if v is None else v)}</span>'


def _text_cell(v: Any, lang: str) -> Any:
    """A project-written cell (T) in `lang`: its `backquoted` spans (names, settings, samples: data) as code,
    the rest escaped; any other cell as it is (html_table escapes it)."""
    if not isinstance(v, T):
        return v
    text = in_lang(v, lang)
    if not _CODE_SPAN.search(text):
        return text
    parts = _CODE_SPAN.split(text)  # text, code, text, code, ...
    return CellHtml("".join(f"<code>{cell_html(p)}</code>" if i % 2 else cell_html(p) for i, p in enumerate(parts)))


def table_html(headers: Sequence[Any], rows: Iterable[Sequence[Any]], lang: str, *,
               trusted_cols: Iterable[int] = (), verbatim_cols: Iterable[int] = (), cls: str = "bv-table") -> str:
    """One language's HTML table; cells that are T are picked in `lang` (their `backquoted` spans shown as
    code), everything else escaped as is; `verbatim_cols` hold data in whatever language it came (samples,
    log lines, model output)."""
    verbatim, trusted = set(verbatim_cols), set(trusted_cols)
    body = [[_verbatim(in_lang(v, lang)) if i in verbatim else in_lang(v, lang) if i in trusted else _text_cell(v, lang)
             for i, v in enumerate(r)] for r in rows]
    return html_table([_text_cell(h, lang) for h in headers], body, trusted_cols=set(trusted_cols) | verbatim, cls=cls)


def show_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, trusted_cols: Iterable[int] = (),
               verbatim_cols: Iterable[int] = (), cls: str = "bv-table") -> None:
    """A table with escaped cells; one output per language when any header or cell is a T. `verbatim_cols`:
    columns of data shown as they came (sample texts, log lines, model output), in no report language."""
    rows = [list(r) for r in rows]
    if _has_t(list(headers), rows):
        _emit({lang: table_html(headers, rows, lang, trusted_cols=trusted_cols, verbatim_cols=verbatim_cols, cls=cls)
               for lang in LANGS})
    else:
        _emit({None: table_html(headers, rows, "en", trusted_cols=trusted_cols, verbatim_cols=verbatim_cols, cls=cls)})


def show_md(markdown: T | str) -> None:
    """Project-written Markdown (never model output; escape untrusted parts with textsafe.md_escape)."""
    if isinstance(markdown, T):
        _emit_md({"zh": markdown.zh, "en": markdown.en})
    else:
        _emit_md({None: markdown})


def show_text(s: Any, cls: str = "untrusted") -> None:
    """Untrusted text (model output, logs) verbatim: escaped <pre>, shown in every language."""
    _emit({None: html_pre(s, cls)})


_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def note_html(text: str) -> str:
    """A note's text as HTML: escaped, with `backquoted` spans (names, settings, process names: data) as code."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html_escape(text))


def show_note(text: T | str, kind: str = "info") -> None:
    """A highlighted box (kind: info | warn | fail) with project-written plain text; `spans` become code."""
    cls = f"bv-note bv-note-{html_escape(kind)}"
    if isinstance(text, T):
        _emit({lang: f'<div class="{cls}">{note_html(in_lang(text, lang))}</div>' for lang in LANGS})
    else:
        _emit({None: f'<div class="{cls}">{note_html(text)}</div>'})


def show_figure(draw: Callable[[str], Any]) -> None:
    """A matplotlib figure per language: `draw(lang)` returns a new figure labelled in that language (the
    renderer keeps the one of the report's language); each figure is closed after it is shown. A `draw` that
    returns None (too few points for a picture: report.plots) shows nothing."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    for lang in LANGS:
        fig = draw(lang)
        if fig is None:
            continue
        try:
            display(fig, metadata={LANG_KEY: lang})
        finally:
            plt.close(fig)
