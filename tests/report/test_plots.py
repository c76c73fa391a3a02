"""The report's figures (report.plots): the right number of points or bars in each language, and no picture
with fewer than three points (a table says it better, issue 20.6)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from bitcpm_validation.report import plots  # noqa: E402
from bitcpm_validation.report.display import T  # noqa: E402

LANGS = ("zh", "en")


def _points(ax) -> int:
    """Markers drawn: points of the data lines and of scatter collections."""
    return sum(len(line.get_xdata()) for line in ax.get_lines()) + sum(len(c.get_offsets()) for c in ax.collections)


@pytest.mark.parametrize("lang", LANGS)
def test_load_curves_three_levels_two_panels(lang, tmp_path):
    fig = plots.load_curves([1, 2, 4], [30.0, 35.0, 50.0], [20.0, 22.0, 30.0], [40.0, 70.0, 110.0], [8, 8, 8], lang,
                            tmp_path / f"load_{lang}.png")
    try:
        lat, thr = fig.axes
        assert _points(lat) == 6 and _points(thr) == 3  # TTFT and TPOT at 3 levels; throughput at 3
        assert [t.get_text() for t in thr.get_xticklabels()] == ["1\nn=8", "2\nn=8", "4\nn=8"]
        assert (tmp_path / f"load_{lang}.png").stat().st_size > 0
        assert ("延迟" in lat.get_title()) == (lang == "zh")
    finally:
        plt.close(fig)


def test_fewer_than_three_points_is_no_picture():
    assert plots.load_curves([1, 4], [30.0, 50.0], [20.0, 30.0], [40.0, 110.0], [8, 8]) is None
    two = [{"label": "decode", "intensity": 1.0, "flops_per_s": 1e9}, {"label": "prefill", "intensity": 100.0,
                                                                       "flops_per_s": 5e10},
           {"label": "floor", "intensity": 1.0, "flops_per_s": 2e9, "measured": False}]
    assert plots.roofline(20.0, 1e11, two) is None  # the hollow point does not count
    phases = [{"key": "a", "label": "a", "start_s": 0, "end_s": 1}, {"key": "b", "label": "b", "start_s": 1, "end_s": 3}]
    assert plots.timeline_bars([("real", phases)]) is None
    bars = [("stored", {"x": 1.0}), ("packed", {"x": 0.3})]
    assert plots.stacked_bars([("ckpt", bars)], [("x", "weights")], "GB") is None
    assert not plots.enough_points(2) and plots.enough_points(3)


@pytest.mark.parametrize("lang", LANGS)
def test_roofline_measured_and_hollow_points(lang):
    pts = [{"label": T("解码 并发 1", "decode c=1"), "intensity": 1.0, "flops_per_s": 8e9},
           {"label": "decode c=4", "intensity": 3.9, "flops_per_s": 2.5e10},
           {"label": "prefill", "intensity": 120.0, "flops_per_s": 6e10},
           {"label": "floor", "intensity": 1.0, "flops_per_s": 1e10, "measured": False}]
    fig = plots.roofline(20.0, 1e11, pts, lang)
    try:
        ax, = fig.axes
        assert len(ax.collections) == 4 and len(ax.get_lines()) == 1  # four points, one roof
        roof = ax.get_lines()[0].get_ydata()
        assert max(roof) == pytest.approx(100.0)  # GFLOP/s: the compute roof caps the bandwidth slope
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0] == ("解码 并发 1" if lang == "zh" else "decode c=1")
    finally:
        plt.close(fig)


def test_timeline_one_bar_per_start_one_segment_per_phase():
    ph = [{"key": k, "label": T(k + "（中）", k), "start_s": s, "end_s": e}
          for k, s, e in (("config", 0, 2), ("weights", 2, 9), ("kv_cache", 9, 10), ("ready", 10, 14))]
    fig = plots.timeline_bars([("dummy", ph[:3]), ("real", ph)], "zh")
    try:
        ax, = fig.axes
        assert len(ax.patches) == 7  # 3 + 4 segments
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["config（中）", "weights（中）", "kv_cache（中）",
                                                                       "ready（中）"]
        assert max(p.get_x() + p.get_width() for p in ax.patches) == pytest.approx(14)
    finally:
        plt.close(fig)


def test_stacked_bars_totals_per_form():
    forms = [(T("存储", "stored"), {"ternary": 0.8, "dense": 0.2}), ("2-bit", {"ternary": 0.1, "scales": 0.02, "dense": 0.2}),
             ("base 3", {"ternary": 0.08, "scales": 0.02, "dense": 0.2})]
    parts = [("ternary", T("三值权重", "ternary weights")), ("scales", "scales"), ("dense", "dense")]
    fig = plots.stacked_bars([("ckpt", forms), ("too few", forms[:2])], parts, "GB", "en")
    try:
        ax, = fig.axes  # the panel with two bars is left out
        assert len(ax.patches) == 9  # 3 bars x 3 parts
        assert [t.get_text() for t in ax.texts] == ["1", "0.32", "0.3"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["stored", "2-bit", "base 3"]
    finally:
        plt.close(fig)
