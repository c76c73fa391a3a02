"""`compare` on run directories built by hand (no engine): environments, pairs, ratios, HTML."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitcpm_validation.report import compare as C
from bitcpm_validation.model import agreement as P
from bitcpm_validation.report import results as R


def _bundle(label, device, gen, lp2):
    rows = [{1: -0.1, 2: -2.0}, {2: lp2, 3: -1.9}, {3: -0.3, 1: -1.5}]
    return {"version": 1, "label": label, "k": 2, "environment": {"device": device, "vllm": "x"},
            "settings": {"platform": device, "dtype": "bfloat16"}, "model": {"weights_sha256": "abc"},
            "items": [{"id": "p", "prompt_ids": [5], "tf_ids": [5, 1, 2, 3],
                       "tf_rows": [P.row_to_pairs(r) for r in rows], "gen_ids": gen,
                       "gen_rows": [P.row_to_pairs(r) for r in rows]}]}


def _run(tmp: Path, name: str, device: str, gen, lp2, tps: float, bundle=True) -> Path:
    d = tmp / name
    res = R.ChapterResult("06_precision", "Precision", "精度对比", status="ok", profile=device)
    if bundle:
        res.data["bundle"] = _bundle(f"vLLM {device}", device, gen, lp2)
        res.data["reference_bundle"] = _bundle("reference fp32", "host CPU", [1, 2, 3], -0.2)
    res.metrics.append(R.Metric("top1_agreement", 1.0, "", "Top-1", "top-1", key=True))
    R.save(res, d / "results" / "06_precision.json")
    perf = R.ChapterResult("07_performance", "Performance", "性能", status="ok")
    perf.metrics.append(R.Metric("out_tps", tps, "tok/s", "Output tok/s", "输出 tok/s", key=True))
    R.save(perf, d / "results" / "07_performance.json")
    return d


def test_compare_three_runs(tmp_path):
    a = _run(tmp_path, "a-npu", "npu", [1, 2, 3], -0.2, 85.0)
    b = _run(tmp_path, "b-cuda", "cuda", [1, 2, 3], -0.25, 170.0)
    c = _run(tmp_path, "c-cpu", "cpu", [1, 3, 3], -0.2, 31.0)
    out = C.compare_runs([a, b, c])
    assert [p["a"] + ">" + p["b"] for p in out["pairs"]] == ["a-npu>b-cuda", "a-npu>c-cpu", "b-cuda>c-cpu"]
    ab = out["pairs"][0]["engine"]
    assert ab["top1_agreement"] == 1.0 and ab["max_abs_dlogprob"] == pytest.approx(0.05)
    assert out["pairs"][1]["engine"]["exact_match_lens"] == [1]
    assert out["pairs"][0]["same_model"] is True
    tps = next(m for m in out["metrics"] if m["id"] == "07_performance:out_tps")
    assert tps["values"] == [85.0, 170.0, 31.0] and tps["ratios"][1] == pytest.approx(2.0)
    files = C.render(out, tmp_path / "cmp")
    html = files["html"].read_text(encoding="utf-8")
    assert "a-npu vs b-cuda" in html and "npu" in html and "cuda" in html
    md = files["md"].read_text(encoding="utf-8")
    assert "Key metrics" in md and "2" in md
    assert json.loads(files["json"].read_text())["pairs"][0]["a"] == "a-npu"


def test_compare_run_without_bundle_and_cli(tmp_path, capsys):
    a = _run(tmp_path, "a", "npu", [1, 2, 3], -0.2, 85.0)
    b = _run(tmp_path, "b", "cuda", [1, 2, 3], -0.2, 80.0, bundle=False)
    out = C.compare_runs([a, b])
    assert "error" in out["pairs"][0] and "no precision baseline bundle" in out["pairs"][0]["error"]
    from bitcpm_validation.cli import main

    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "compare.en.html").is_file() and (tmp_path / "o" / "compare.zh.html").is_file()
    assert main(["compare", str(a)]) == 2
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
