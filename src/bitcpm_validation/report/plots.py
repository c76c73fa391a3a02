"""Matplotlib set-up shared by the chapter notebooks: Chinese glyphs when a CJK font is installed."""
from __future__ import annotations

from functools import lru_cache

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Serif CJK SC",
             "WenQuanYi Zen Hei", "Source Han Sans SC", "SimHei")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The first installed CJK-capable font family, or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FONTS if n in names), None)


def setup(dpi: int = 110) -> str | None:
    """Configure matplotlib for the report (inline PNG, CJK font if installed). Returns the CJK font or None.

    Sets font.family to ["DejaVu Sans", <CJK font>] (font.sans-serif alone is not enough) and never
    names a font that is not installed (that floods the log).
    """
    import logging

    import matplotlib

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    font = cjk_font()
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", font] if font else ["DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    matplotlib.rcParams["figure.dpi"] = dpi
    matplotlib.rcParams["savefig.dpi"] = dpi
    matplotlib.rcParams["svg.hashsalt"] = "bitcpm"  # reproducible SVG ids
    return font
