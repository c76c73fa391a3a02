"""The quantization chapter (chapters/quantization.py): the ternary checker on tensors of known granularity, a dense
tensor, one value off; packing round trips; sizes; the chapter notebook skipping a directory without weights.
Its checks on a real chapter run share the precision chapter's run: tests/chapters/test_precision.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from bitcpm_validation.chapters import quantization as Q
from bitcpm_validation.report import results as R
from bitcpm_validation.report import runner

ROOT = Path(__file__).resolve().parents[2]
GS = [32, 64, 128, 256]


def fake_quant(w: torch.Tensor, group: int | None, per_row: bool = False) -> torch.Tensor:
    """absmean ternary fake quantization (BitCPM-CANN recipe), stored in BF16."""
    if per_row:
        g = w.reshape(w.shape[0], -1)
    elif group is None:
        g = w.reshape(1, -1)
    else:
        g = w.reshape(-1, group)
    s = g.abs().mean(dim=1, keepdim=True).clamp_min(1e-5)
    return (torch.clamp(torch.round(g / s), -1, 1) * s).reshape(w.shape).to(torch.bfloat16)


@pytest.fixture
def w():
    torch.manual_seed(0)
    return torch.randn(48, 512)


@pytest.mark.parametrize("group,want", [(32, "g32"), (64, "g64"), (128, "g128")])
def test_group_granularity(w, group, want):
    q = fake_quant(w, group)
    info = Q.analyze_tensor("model.layers.0.mlp.up_proj.weight", q, GS)
    assert info.ternary and info.granularity == want and info.group_size == group
    assert info.n_groups == q.numel() // group
    assert 0.2 < info.zero_share < 0.5  # absmean rounding zeroes roughly a third
    assert info.scale_min > 0 and info.scale_min <= info.scale_median <= info.scale_max
    assert info.roundtrip is True


def test_tensor_and_row_granularity(w):
    t = Q.analyze_tensor("x.q_proj.weight", fake_quant(w, None), GS)
    assert t.granularity == "tensor" and t.n_groups == 1 and t.group_size == w.numel()
    r = Q.analyze_tensor("x.q_proj.weight", fake_quant(w, None, per_row=True), GS)
    assert r.granularity == "row" and r.n_groups == 48 and r.group_size == 512


def test_dense_and_norm(w):
    d = Q.analyze_tensor("model.embed_tokens.weight", w.to(torch.bfloat16), GS)
    assert not d.ternary and d.role == "embedding" and d.distinct_values > 100
    n = Q.analyze_tensor("model.norm.weight", torch.ones(64) + 0.1 * torch.randn(64), GS)
    assert not n.ternary and n.role == "norm"


def test_one_value_off(w):
    q = fake_quant(w, 32).clone()
    q[7, 100] = q[7, 100] * 1.5 + 0.01
    info = Q.analyze_tensor("x.down_proj.weight", q, GS)
    assert not info.ternary
    assert info.violations["groups_off"] == 1 and info.violations["values_off"] == 1
    assert info.violations["granularity"] == "g32"


@pytest.mark.parametrize("n", [1, 4, 5, 7, 1000, 1003])
def test_packing_roundtrip(n):
    g = torch.Generator().manual_seed(n)
    codes = torch.randint(-1, 2, (n,), generator=g).to(torch.int8)
    b2 = Q.pack_2bit(codes)
    b3 = Q.pack_base3(codes)
    assert len(b2) == math.ceil(n / 4) and len(b3) == math.ceil(n / 5)
    assert torch.equal(Q.unpack_2bit(b2, n), codes)
    assert torch.equal(Q.unpack_base3(b3, n), codes)
    assert max(b3) < 243


def test_rebuild_is_bit_exact(w):
    q = fake_quant(w, 64)
    assert Q.verify_roundtrip(q, "g64", 64)


def test_sizes_known_numbers():
    t = Q.TensorInfo("a.q_proj.weight", [64, 64], "bfloat16", 4096, 8192, "projection", True, "g32", 32, 128)
    d = Q.TensorInfo("embed_tokens.weight", [10, 64], "bfloat16", 640, 1280, "embedding", False)
    s = Q.size_report([t, d])
    assert s["ternary_2bit_bytes"] == 1024 and s["ternary_base3_bytes"] == math.ceil(4096 / 5)
    assert s["scale_bytes"] == 256 and s["dense_bytes"] == 1280
    assert s["total_2bit_bytes"] == 1024 + 256 + 1280
    assert s["bits_per_ternary_weight_2bit"] == pytest.approx(2.5)
    assert s["bits_per_ternary_weight_info"] == pytest.approx(1.58496, abs=1e-5)


def test_full_size_analytic():
    from bitcpm_validation.model.writer import full_size_config, read_config_from_dict

    cfg = read_config_from_dict(full_size_config())
    s = Q.size_report(Q.analytic_tensors(cfg, 32))
    assert s["params"] == 433_873_920 and s["stored_bytes"] == 867_747_840
    assert s["ternary_params"] == 358_612_992
    assert 0.2e9 < s["total_base3_bytes"] < 0.3e9
    bits, compression = Q.judge_claims(s, "full-0.5b")
    assert compression.status == "fail" and "71.8% smaller" in compression.detail_en  # ~72%, not ~90%
    assert bits.status == "warn" and "stored at 16.0 bit" in bits.detail_en  # fake-quantized: ternary, stored BF16
    assert Q.judge_size_claim(s).status == "pass"
    assert all(c.scope == "document" for c in (bits, compression))


def test_analyze_dir(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    sd = {"model.embed_tokens.weight": torch.randn(100, 64).bfloat16(),
          "model.layers.0.self_attn.q_proj.weight": fake_quant(torch.randn(64, 64), 32),
          "model.norm.weight": torch.ones(64).bfloat16()}
    save_file(sd, str(tmp_path / "model.safetensors"))
    rep = Q.analyze_dir(tmp_path, GS)
    by = {t.name: t for t in rep.tensors}
    assert by["model.layers.0.self_attn.q_proj.weight"].granularity == "g32"
    assert not by["model.embed_tokens.weight"].ternary
    rows = Q.summary_rows(rep)
    assert {r["granularity"] for r in rows} == {"g32", "dense"}


def test_weight_checks_judge_the_tensors():
    tern = Q.TensorInfo("model.layers.0.self_attn.q_proj.weight", [64, 64], "bfloat16", 4096, 8192, "projection", True,
                        granularity="g32", roundtrip=True)
    other = Q.TensorInfo("model.layers.0.mlp.up_proj.weight", [64, 64], "bfloat16", 4096, 8192, "projection", True,
                         granularity="row", roundtrip=True)
    dense = Q.TensorInfo("model.embed_tokens.weight", [10, 64], "bfloat16", 640, 1280, "embedding", False)
    assert Q.judge_projections([tern, dense]).status == "pass"
    assert Q.judge_projections([dense]).status == "fail"
    assert Q.judge_granularity([tern, dense]).status == "pass"
    assert Q.judge_granularity([tern, other]).status == "warn"
    # Chinese details and table cells name roles and granularities in the glossary's terms; g32 is a name
    assert Q.judge_granularity([tern, other]).detail_zh == "粒度不一致：g32、按行"
    assert Q.judge_granularity([other]).detail_en == "detected: row"
    assert [Q.word(w).zh for w in ("embedding", "norm", "projection", "dense", "g32")] == ["嵌入层", "归一化层", "投影层", "稠密", "g32"]
    assert Q.judge_roundtrip([tern]).status == "pass"
    assert Q.judge_roundtrip([dense]).status == "not_run"


@pytest.mark.parametrize("lang", ("zh", "en"))
def test_size_picture_stored_vs_packed(lang):
    """Stored vs packed as stacked bars (issue 20.6): four forms, each bar's parts summing to size_report's totals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bitcpm_validation.model.writer import full_size_config, read_config_from_dict

    s = Q.size_report(Q.analytic_tensors(read_config_from_dict(full_size_config()), 32))
    bars = Q.size_bars(s)
    totals = [sum(parts.values()) * Q.GB for _, parts in bars]
    assert totals == pytest.approx([s["stored_bytes"], s["total_info_bytes"], s["total_2bit_bytes"], s["total_base3_bytes"]])
    fig = Q.plot_sizes([("checkpoint", None), ("full 0.5B", s)], lang)  # a panel without sizes is left out
    try:
        ax, = fig.axes
        assert len(ax.patches) == 4 * len(Q.SIZE_PARTS)
        assert ax.get_xticklabels()[0].get_text() == ("存储" if lang == "zh" else "stored")
    finally:
        plt.close(fig)
    assert Q.plot_sizes([("checkpoint", None)], lang) is None


def test_a_small_checkpoint_is_drawn_in_mb():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bitcpm_validation.model.writer import full_size_config, read_config_from_dict

    full = Q.size_report(Q.analytic_tensors(read_config_from_dict(full_size_config()), 32))
    small = {k: (v / 1000 if k.endswith("_bytes") else v) for k, v in full.items()}
    assert Q.size_unit(full) == ("GB", Q.GB) and Q.size_unit(small) == ("MB", 1e6)
    fig = Q.plot_sizes([("stand-in", small), ("full", full)], "en")
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == ["MB", "GB"]
        assert fig.axes[0].texts[0].get_text() == f"{small['stored_bytes'] / 1e6:,.3g}"
    finally:
        plt.close(fig)


def test_quantization_skips_without_weights(tmp_path):
    p = yaml.safe_load((ROOT / "params" / "default.yaml").read_text(encoding="utf-8"))
    p["model"]["path"] = str(ROOT / "models" / "bitcpm4-0.5b")  # the full-size directory: config only, no weights
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    o = runner.run_chapter(ROOT / "notebooks" / "10_quantization.ipynb", tmp_path / "run", params)
    assert o.status == "skipped", o.error
    res = R.load(tmp_path / "run" / "results" / "10_quantization.json")
    assert res.status == "skipped" and "no weight files" in res.reason_en and res.reason_zh
    full = res.data["full_size_analytic"]["sizes"]["g32"]
    assert full["params"] == 433_873_920
