"""The precision and quantization chapters end to end on the stand-in (papermill, as the runner runs them).

The model is models/stand-in when it has weights, else a tiny random MiniCPM fake-quantized like
BitCPM (ternary absmean, groups of 32, BF16) built here. One precision-chapter run (one engine start)
serves every assertion of the module; a baseline pointing at the run itself and one at a missing
directory exercise the cross-device path.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from bitcpm_validation.report import results as R
from bitcpm_validation.report import runner

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models" / "stand-in"


def fake_quant_dir(out: Path) -> Path:
    from safetensors.torch import load_file, save_file

    from bitcpm_validation.model.writer import write_tiny_random_model

    write_tiny_random_model(out, dtype="bfloat16", std=0.08)
    f = out / "model.safetensors"
    sd = load_file(str(f))
    for k, v in sd.items():
        if v.dim() == 2 and "embed" not in k:
            x = v.float().reshape(-1, 32)
            s = x.abs().mean(1, keepdim=True).clamp_min(1e-5)
            sd[k] = (torch.clamp(torch.round(x / s), -1, 1) * s).reshape(v.shape).to(torch.bfloat16)
    save_file(sd, str(f), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    if list(STAND_IN.glob("*.safetensors")):
        return STAND_IN
    return fake_quant_dir(tmp_path_factory.mktemp("standin") / "model")


def _params(tmp: Path, model: Path, **precision) -> Path:
    p = yaml.safe_load((ROOT / "params" / "default.yaml").read_text(encoding="utf-8"))
    p["model"]["path"] = str(model)
    # one long prompt above the engine's 512-token prefill budget (default.yaml) keeps the test short;
    # the default report runs 256, 1,024 and max_model_len - new tokens
    p["precision"] = {"prompts": 2, "max_new_tokens": 8, "engine_float32": False, "long_lengths": [600], **precision}
    out = tmp / "params.yaml"
    out.write_text(yaml.safe_dump(p, allow_unicode=True), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def chapters_run(tmp_path_factory, model_dir) -> dict:
    tmp = tmp_path_factory.mktemp("prec")
    run_dir = tmp / "run"
    params = _params(tmp, model_dir, baselines=[str(tmp / "no-such-run"), str(run_dir)])
    outs = {nb: runner.run_chapter(ROOT / "notebooks" / f"{nb}.ipynb", run_dir, params)
            for nb in ("06_precision", "10_quantization")}
    return {"run_dir": run_dir, "outcomes": outs}


@pytest.mark.engine
def test_precision_chapter(chapters_run):
    o = chapters_run["outcomes"]["06_precision"]
    assert o.status == "ok", o.error
    res = R.load(chapters_run["run_dir"] / "results" / "06_precision.json")
    checks = {c.id: c for c in res.checks}
    # three implementations, every pair judged
    for pair in ("engine-vs-reference", "engine-vs-transformers", "transformers-vs-reference"):
        for cid in (f"agreement:{pair}", f"logprobs_close:{pair}"):
            assert checks[cid].status == "pass", (cid, checks[cid].detail_en)
            assert checks[cid].scope == "engine"
    assert res.data["golden"]["kind"] == "reference" and res.data["golden"]["transformers_error"] is None
    s = res.data["comparisons"]["engine-vs-reference"]["summary"]
    assert s["kl_basis"] == "full" and s["mean_kl"] is not None  # whole-vocabulary rows from the engine
    tr = res.data["comparisons"]["transformers-vs-reference"]["summary"]
    assert tr["top1_agreement"] == 1.0 and tr["max_abs_dlogprob"] < 1e-3
    assert res.metric("top1_agreement") >= 0.95
    assert 0 < res.metric("max_abs_dlogprob") < 0.5  # BF16 engine vs fp32: small but not zero
    b = res.data["bundle"]
    assert b["version"] == 1 and len(b["items"]) == 2 and b["environment"].get("device")
    assert len(b["items"][0]["tf_rows"]) == len(b["items"][0]["tf_ids"]) - 1
    assert res.data["reference_bundle"]["items"][0]["tf_ids"] == b["items"][0]["tf_ids"]
    # Missing baseline: one-line failure; the run against itself: identical.
    assert checks["baseline:0"].status == "fail" and "not found" in checks["baseline:0"].detail_en
    assert "\n" not in checks["baseline:0"].detail_en
    assert checks["baseline:1"].status == "pass"
    same = res.data["baselines"][0]["summary"]
    assert same["top1_agreement"] == 1.0 and same["max_abs_dlogprob"] == 0.0
    assert (chapters_run["run_dir"] / "artifacts" / "06_precision" / "abs_dlogprob.png").is_file()


@pytest.mark.engine
def test_precision_families_and_features(chapters_run):
    """Issue 19: every family and length its own row, chunked prefill, prefix caching, a mixed batch."""
    res = R.load(chapters_run["run_dir"] / "results" / "06_precision.json")
    checks = {c.id: c for c in res.checks}
    fam = res.data["families"]
    assert fam["block_size"] and fam["lengths"]["long-600"] == [600]
    bs = fam["block_size"]
    for g in ("zh", "chat", "long-600", f"kv-block-{bs - 1}", f"kv-block-{bs}", f"kv-block-{bs + 1}"):
        row = checks[f"family_agreement:{g}"]
        assert row.status == "pass" and row.scope == "engine", (g, row.detail_en)
        assert fam["groups"][g]["decisive_share"] >= 0.5
    assert fam["whole_vocab"]["zh"] and not fam["whole_vocab"]["long-600"]
    assert checks["whole_vocab"].status == "pass"
    assert checks["chunked_prefill"].status == "pass", checks["chunked_prefill"].detail_en
    assert "long-600" in res.data["features"]["chunked_prefill"]["prompts"]
    pc = res.data["features"]["prefix_cache"]
    assert checks["prefix_cache"].status == "pass", checks["prefix_cache"].detail_en
    assert pc["cached_warm"] > 0 and pc["prompt_len"] > 2 * bs
    assert checks["batch_mixed"].status in ("pass", "warn")
    assert "long-600 600" in res.metric("compared_lengths")
    assert (chapters_run["run_dir"] / "artifacts" / "06_precision" / "by_position.png").is_file()
    # the full 0.5B shape: a synthetic checkpoint vs the fp32 reference, a short and a 1,024-token prompt
    full = res.data["full_shape"]
    assert full["shape"]["vocab_size"] == 73448 and full["shape"]["num_hidden_layers"] == 24
    assert full["dtype"] == "float32"  # whatever the profile's dtype: the verdict must not depend on the host's BF16
    assert full["lengths"]["full-shape/long-1024"] == [1024]
    for g in ("full-shape/short", "full-shape/long-1024"):
        assert checks[f"family_agreement:{g}"].status == "pass", (g, checks[f"family_agreement:{g}"].detail_en)
    assert "synthetic" in res.metric("compared_lengths") and "vocab 73,448" in res.metric("compared_lengths")


@pytest.mark.engine
def test_precision_names_a_remote_code_error_and_still_compares(tmp_path, model_dir):
    """A directory whose modeling code does not load with the installed transformers: the transformers pairs
    are not_run with the one-line error; the engine is still compared with the reference."""
    import shutil

    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    (d / "modeling_minicpm.py").write_text("raise ImportError('needs flash_attn (missing here)')\n")
    params = _params(tmp_path, d, prompts=1, max_new_tokens=4, full_shape=False, features=False,
                     block_boundaries=False, long_lengths=[64])
    o = runner.run_chapter(ROOT / "notebooks" / "06_precision.ipynb", tmp_path / "run", params)
    assert o.status == "ok", o.error
    res = R.load(tmp_path / "run" / "results" / "06_precision.json")
    checks = {c.id: c for c in res.checks}
    for pair in ("engine-vs-transformers", "transformers-vs-reference"):
        row = checks[f"agreement:{pair}"]
        assert row.status == "not_run" and "flash_attn" in row.detail_en and "\n" not in row.detail_en
    assert checks["agreement:engine-vs-reference"].status == "pass"
    assert "flash_attn" in res.data["golden"]["transformers_error"]


@pytest.mark.engine
def test_quantization_chapter(chapters_run):
    o = chapters_run["outcomes"]["10_quantization"]
    assert o.status == "ok", o.error
    res = R.load(chapters_run["run_dir"] / "results" / "10_quantization.json")
    checks = {c.id: c.status for c in res.checks}
    assert checks["projections_ternary"] == "pass" and checks["roundtrip"] == "pass"
    assert checks["granularity"] == "pass" and res.metric("granularity") == "g32"
    assert checks["claim_compression:full-0.5b"] == "fail"  # ~72%, not ~90%
    assert 60 < res.metric("compression_base3") < 90  # percent
    dense = {t["role"] for t in res.data["tensors"] if not t["ternary"]}
    assert dense == {"embedding", "norm"}


@pytest.mark.engine
def test_compare_two_runs_of_the_chapter(chapters_run, tmp_path):
    import shutil

    from bitcpm_validation.report import compare as C

    other = tmp_path / "copy"
    shutil.copytree(chapters_run["run_dir"], other)
    out = C.compare_runs([chapters_run["run_dir"], other])
    assert out["pairs"][0]["engine"]["top1_agreement"] == 1.0
    assert "copy" in C.render(out, tmp_path / "cmp")["html"].read_text(encoding="utf-8")


def test_quantization_skips_without_weights(tmp_path):
    params = _params(tmp_path, ROOT / "models" / "bitcpm4-0.5b")
    o = runner.run_chapter(ROOT / "notebooks" / "10_quantization.ipynb", tmp_path / "run", params)
    assert o.status == "skipped", o.error
    res = R.load(tmp_path / "run" / "results" / "10_quantization.json")
    assert res.status == "skipped" and "no weight files" in res.reason_en and res.reason_zh
    full = res.data["full_size_analytic"]["sizes"]["g32"]
    assert full["params"] == 433_873_920


@pytest.mark.e2e
def test_default_report_has_precision_and_quantization(e2e_run):
    rd = e2e_run["run_dir"]
    for cid in ("06_precision", "10_quantization"):
        res = R.load(rd / "results" / f"{cid}.json")
        assert res.status == "ok", (cid, res.error)
    prec = R.load(rd / "results" / "06_precision.json")
    assert prec.data["bundle"]["items"] and prec.check("agreement:engine-vs-reference").status == "pass"
