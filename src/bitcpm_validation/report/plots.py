"""Matplotlib set-up shared by the chapter notebooks (Chinese glyphs when a CJK font is installed) and the report's figures."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

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


# --------------------------------------------------------------------------------------------
# The report's figures. Each takes measured numbers and labels (T or plain text), draws in one language and
# returns the figure, or None where it would have fewer than MIN_POINTS points (a table says it better).
# The chapters compute what is drawn; show them with report.display.show_figure.

MIN_POINTS = 3


def enough_points(n: int) -> bool:
    """A picture needs at least MIN_POINTS points (bars, levels); fewer are a table."""
    return n >= MIN_POINTS


def _text(x: Any, lang: str) -> str:
    from bitcpm_validation.report.display import in_lang

    return str(in_lang(x, lang))


def _save(fig: Any, path: Optional[str | Path]) -> Any:
    fig.tight_layout()
    if path:
        fig.savefig(path, bbox_inches="tight")  # as the notebook shows it: legends below the axes included
    return fig


def load_curves(levels: Sequence[int], ttft_ms: Sequence[Optional[float]], tpot_ms: Sequence[Optional[float]],
                output_tok_s: Sequence[Optional[float]], samples: Sequence[Optional[int]], lang: str = "en",
                path: Optional[str | Path] = None):
    """Latency (TTFT and TPOT p50, ms) and output throughput (tok/s) against concurrency, two panels; each level's
    n (requests behind its p50) under its tick. None with fewer than MIN_POINTS levels."""
    if not enough_points(len(levels)):
        return None
    import matplotlib.pyplot as plt

    setup()
    zh = lang == "zh"
    ticks = [f"{c}\nn={n}" if n is not None else str(c) for c, n in zip(levels, samples)]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    lat.plot(levels, ttft_ms, "o-", label="TTFT p50")
    lat.plot(levels, tpot_ms, "s-", label="TPOT p50")
    lat.set_ylabel("延迟（ms）" if zh else "latency (ms)")
    lat.set_title("延迟与负载" if zh else "Latency against load", fontsize=10)
    lat.legend(fontsize=8)
    thr.plot(levels, output_tok_s, "o-", color="tab:green")
    thr.set_ylabel("输出吞吐（tok/s）" if zh else "output (tok/s)")
    thr.set_title("吞吐与负载" if zh else "Throughput against load", fontsize=10)
    for ax in (lat, thr):
        ax.set_xlabel("并发数（n：每级请求数）" if zh else "concurrency (n: requests per level)")
        ax.set_xticks(list(levels), ticks, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def roofline(bandwidth_gbs: float, peak_flops_per_s: float, points: Sequence[dict[str, Any]], lang: str = "en",
             path: Optional[str | Path] = None):
    """A roofline (log-log): attainable FLOP/s = min(peak, bandwidth x intensity) against arithmetic intensity
    (FLOP per byte), with points {label (T or text), intensity, flops_per_s, measured (bool)}: measured points
    filled, what they are judged against hollow. None with fewer than MIN_POINTS measured points."""
    measured = [p for p in points if p.get("measured", True)]
    if not enough_points(len(measured)) or bandwidth_gbs <= 0 or peak_flops_per_s <= 0:
        return None
    import matplotlib.pyplot as plt
    import numpy as np

    setup()
    zh = lang == "zh"
    bw = bandwidth_gbs * 1e9
    ridge = peak_flops_per_s / bw
    xs = [p["intensity"] for p in points] + [ridge]
    x = np.logspace(np.log10(min(xs) / 4), np.log10(max(xs) * 4), 200)
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    ax.plot(x, np.minimum(peak_flops_per_s, bw * x) / 1e9, color="black", lw=1.2)
    at = (x[0] * ridge) ** 0.5  # halfway up the bandwidth slope (log scale)
    ax.text(at, bw * at / 1e9 * 1.6, (f"带宽 {bandwidth_gbs:,.1f} GB/s" if zh else f"bandwidth {bandwidth_gbs:,.1f} GB/s"),
            fontsize=8, ha="right")
    ax.text(x[-1], peak_flops_per_s / 1e9 * 1.1, (f"矩阵乘 {peak_flops_per_s / 1e9:,.0f} GFLOP/s" if zh else
                                                  f"matmul {peak_flops_per_s / 1e9:,.0f} GFLOP/s"), fontsize=8, ha="right")
    for i, p in enumerate(points):
        filled = p.get("measured", True)
        color = plt.get_cmap("tab10")(i % 10)
        ax.scatter([p["intensity"]], [p["flops_per_s"] / 1e9], s=40, marker="o" if filled else "D",
                   facecolors=color if filled else "none", edgecolors=color, zorder=3, label=_text(p["label"], lang))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("算术强度（FLOPs/字节）" if zh else "arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("屋顶线：实测（实心）与判据（空心）" if zh else "Roofline: measured (filled), judged against (hollow)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def timeline_bars(starts: Sequence[tuple[Any, Sequence[dict[str, Any]]]], lang: str = "en",
                  path: Optional[str | Path] = None):
    """Engine-start timelines as horizontal stacked bars, one per start: (label, [{key, label (T or text),
    start_s, end_s}]), each phase coloured by its key across starts. None with fewer than MIN_POINTS phases."""
    if not enough_points(max((len(ph) for _, ph in starts), default=0)):
        return None
    import matplotlib.pyplot as plt

    setup()
    zh = lang == "zh"
    keys: list[str] = []
    for _, phases in starts:
        keys += [p["key"] for p in phases if p["key"] not in keys]
    colors = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(keys)}
    fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.55 * len(starts)))
    shown: set[str] = set()
    for row, (label, phases) in enumerate(starts):
        for p in phases:
            width = max(p["end_s"] - p["start_s"], 0.0)
            ax.barh(row, width, left=p["start_s"], color=colors[p["key"]], edgecolor="white",
                    label=None if p["key"] in shown else _text(p["label"], lang))
            shown.add(p["key"])
    ax.set_yticks(range(len(starts)), [_text(label, lang) for label, _ in starts])
    ax.invert_yaxis()
    ax.set_xlabel("自引擎解析参数起的秒数（日志精度 1 s）" if zh else "seconds since the engine parsed its arguments (log: whole seconds)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    # below the figure (saved and shown with a tight bounding box): each segment ends at the milestone it names
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               frameon=False)
    if path:
        fig.savefig(path, bbox_inches="tight")
    return fig


def stacked_bars(panels: Sequence[tuple], parts: Sequence[tuple[str, Any]], unit: str, lang: str = "en",
                 path: Optional[str | Path] = None):
    """Stacked bars, one panel per (title, [(bar label, {part key: value})]) or (title, bars, its own unit), parts
    (key, label) in stacking order, each bar's total written above it. Panels with fewer than MIN_POINTS bars are
    left out; None when none is left."""
    panels = [(p[0], p[1], p[2] if len(p) > 2 else unit) for p in panels if enough_points(len(p[1]))]
    if not panels:
        return None
    import matplotlib.pyplot as plt

    setup()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = {k: plt.get_cmap("tab10")(i % 10) for i, (k, _) in enumerate(parts)}
    for ax, (title, bars, panel_unit) in zip(axes[0], panels):
        bottoms = [0.0] * len(bars)
        for key, label in parts:
            vals = [float(b.get(key, 0.0)) for _, b in bars]
            ax.bar(range(len(bars)), vals, bottom=bottoms, color=colors[key], label=_text(label, lang))
            bottoms = [x + v for x, v in zip(bottoms, vals)]
        for i, total in enumerate(bottoms):
            ax.text(i, total, f"{total:,.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(bars)), [_text(lbl, lang) for lbl, _ in bars], fontsize=8)
        ax.set_ylabel(panel_unit)
        ax.set_ylim(top=max(bottoms) * 1.15 if max(bottoms) > 0 else 1)
        ax.set_title(_text(title, lang), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)
