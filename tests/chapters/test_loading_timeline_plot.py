"""The loading chapter's engine-init timeline as a bar (issue 20.6): the phases between the milestones vLLM logs,
one bar per engine start; fewer than three phases leave the timeline table alone."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from bitcpm_validation.chapters import loading  # noqa: E402

LOG = """=== engine start (real): vllm.LLM(**{...})
INFO 11-30 14:07:22 [api_utils.py:286] non-default args: {'model': 'x'}
INFO 11-30 14:07:23 [__init__.py:239] Automatically detected platform cpu.
INFO 11-30 14:07:43 [core.py:103] Initializing a V1 LLM engine (v0.18.0) with config: model='x', device_config=cpu
INFO 11-30 14:07:45 [default_loader.py:501] Loading weights took 0.45 seconds
INFO 11-30 14:07:46 [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens
INFO 11-30 14:07:50 [core.py:402] init engine (profile, create kv cache, warmup model) took 3.82 s
"""


def test_phases_end_at_each_milestone():
    tl = loading.init_timeline(loading.engine_log_section(LOG, "real"))
    ph = loading.init_phases(tl)
    assert [(p["key"], p["start_s"], p["end_s"]) for p in ph] == [
        ("platform", 0.0, 1.0), ("engine_core", 1.0, 21.0), ("weights_done", 21.0, 23.0), ("kv_cache", 23.0, 24.0),
        ("ready", 24.0, 28.0)]
    assert ph[2]["label"].en == "weights loaded"


@pytest.mark.parametrize("lang", ("zh", "en"))
def test_one_bar_per_start_and_no_picture_below_three_phases(lang, tmp_path):
    tl = loading.init_timeline(loading.engine_log_section(LOG, "real"))
    fig = loading.plot_init_timeline({"real": tl, "dummy": tl[:3]}, lang, tmp_path / "t.png")
    try:
        ax, = fig.axes
        assert len(ax.patches) == 5 + 2  # five phases of the real start, two of the shorter one
        assert [t.get_text() for t in ax.get_yticklabels()] == (["真实权重", "随机权重"] if lang == "zh" else ["real", "dummy"])
        assert (tmp_path / "t.png").stat().st_size > 0
    finally:
        plt.close(fig)
    assert loading.plot_init_timeline({"real": tl[:3]}, lang) is None  # two phases: the table says it
    assert loading.plot_init_timeline({}, lang) is None
