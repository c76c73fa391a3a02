"""model.synthetic: a checkpoint at a directory's real shape, laid out as BitCPM4 stores it, written once."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bitcpm_validation.engine import base
from bitcpm_validation.model import synthetic as S
from bitcpm_validation.model.reference import ReferenceModel
from bitcpm_validation.model.weights_kind import weights_kind
from bitcpm_validation.model.writer import small_config

ROOT = Path(__file__).resolve().parents[2]


def _source(tmp: Path, **cfg_overrides) -> Path:
    """An architecture-only directory (config + tokenizer + remote code), like models/bitcpm4-0.5b, smaller."""
    d = tmp / "arch"
    shutil.copytree(ROOT / "models" / "bitcpm4-0.5b", d)
    cfg = small_config(2008, num_hidden_layers=2, **cfg_overrides)
    cfg["tie_word_embeddings"] = cfg.get("tie_word_embeddings", True)
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


def test_written_once_ternary_tied_and_declared_synthetic(tmp_path):
    from safetensors.torch import load_file

    src = _source(tmp_path)
    d = S.full_shape_dir(src, root=tmp_path / "cache")
    assert d.name.startswith("full-shape-") and (d / S.COMPLETE).is_file()
    assert weights_kind(d) == "synthetic" and (d / "tokenizer.model").is_file() and (d / "modeling_minicpm.py").is_file()
    sd = load_file(str(d / "model.safetensors"))
    assert "lm_head.weight" not in sd  # tied embeddings, as BitCPM4
    assert all(v.dtype == torch.bfloat16 for v in sd.values())
    w = sd["model.layers.0.self_attn.q_proj.weight"].float()
    groups = w.reshape(w.shape[0], -1, 32)
    scale = groups.abs().amax(-1, keepdim=True)
    q = torch.where(scale > 0, groups / scale, groups)  # per group: {-1, 0, 1} x its scale
    assert set(torch.unique(q.round()).tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.allclose(q, q.round(), atol=1e-2)
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    assert S.full_shape_dir(src, root=tmp_path / "cache") == d  # reused, not rewritten
    assert (d / "model.safetensors").stat().st_mtime_ns == mtime
    ref = ReferenceModel.from_pretrained(d)  # the reference loads it: names and shapes as the config says
    assert ref.logprobs([1, 5, 9]).shape == (3, 2008)


def test_another_shape_or_rope_setting_gets_its_own_directory(tmp_path):
    a = S.full_shape_dir(_source(tmp_path / "a"), root=tmp_path / "cache")
    b = S.full_shape_dir(_source(tmp_path / "b", num_key_value_heads=4, rope_theta=500000.0), root=tmp_path / "cache")
    assert a != b and json.loads((b / "config.json").read_text())["num_key_value_heads"] == 4
    assert ReferenceModel.from_pretrained(b).logprobs([1, 2]).shape == (2, 2008)


def _profile(tmp: Path, dummy_config) -> "Params":  # noqa: F821
    import yaml

    from bitcpm_validation.params import load_params

    model = {"path": str(ROOT / "models/stand-in")}
    if dummy_config is not None:
        model["dummy_config"] = str(dummy_config)
    else:
        model["dummy_config"] = None
    # float32: the load is under test, not the host's BF16 kernels
    y = {"profile": "t", "prompts": str(ROOT / "params/prompts.yaml"), "model": model,
         "engine": {"max_model_len": 512, "dtype": "float32"}}
    (tmp / "p.yaml").write_text(yaml.safe_dump(y))
    return load_params(tmp / "p.yaml")


def test_model_source_maps_which_to_directory_load_format_and_weights(tmp_path, monkeypatch):
    """engine.identity.model_source: the one mapping of `which` that engine kwargs, the server and prompting read."""
    import pytest

    from bitcpm_validation.engine import identity

    monkeypatch.setenv("BITCPM_VALIDATION_CACHE", str(tmp_path / "cache"))
    src = _source(tmp_path)
    p = _profile(tmp_path, src)
    named = identity.model_source(p, "synthetic", write=False)
    assert not named.model_dir.exists() and not S.is_written(named.model_dir)  # naming it writes nothing
    first = identity.model_source(p, "synthetic")
    assert first.written and first.model_dir == named.model_dir and S.is_written(first.model_dir)
    assert (first.load_format, first.need_weights, first.config_dir) == ("auto", True, src)
    assert weights_kind(first.model_dir) == "synthetic" and (first.model_dir / "model.safetensors").is_file()
    again = identity.model_source(p, "synthetic")
    assert not again.written and again.model_dir == first.model_dir
    dummy = identity.model_source(p, "dummy")
    assert (dummy.model_dir, dummy.load_format, dummy.need_weights) == (src, "dummy", False)
    real = identity.model_source(p, "real")
    assert (real.model_dir, real.load_format, real.need_weights) == (ROOT / "models/stand-in", "auto", True)
    kw = base.engine_kwargs(p, base.model_facts(p, "synthetic"))
    assert (kw["model"], kw["load_format"]) == (str(first.model_dir), "auto")
    assert base.engine_kwargs(p, base.model_facts(p, "dummy"))["load_format"] == "dummy"
    assert identity.served_model_name(p, "synthetic") == "arch-synthetic"
    assert identity.weights_label(p, "synthetic") == "random weights"
    assert identity.measured_on(p, "synthetic", "cpu").endswith("shape · random weights · CPU")
    with pytest.raises(identity.ModelSourceError, match="expected real, synthetic or dummy"):
        identity.model_source(p, "fake")
    with pytest.raises(base.EngineError, match="model.dummy_config is not set"):
        base.model_facts(_profile(tmp_path, None), "synthetic")


@pytest.mark.engine
def test_vllm_reads_every_synthetic_weight_and_a_missing_one_fails_the_load(tmp_path, monkeypatch):
    """The full-shape load (loading chapter) on the synthetic checkpoint, at a small shape: vLLM's loader reads the
    files (load_format auto), the first request scores finite log-probs, and a checkpoint missing a norm weight does
    not start (vLLM: "Following weights were not initialized from checkpoint"), so load:synthetic can fail. (vLLM
    0.18 exempts unquantized linear layers from that check: a missing projection is not noticed by the engine.)"""
    import os

    from safetensors.torch import load_file, save_file

    from bitcpm_validation.chapters import loading
    from bitcpm_validation.engine import identity, offline

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("BITCPM_VALIDATION_CACHE", str(tmp_path / "cache"))
    p = _profile(tmp_path, _source(tmp_path))
    ev = tmp_path / "evidence" / "02_loading.log"
    ev.parent.mkdir()
    src = identity.model_source(p, "synthetic")
    eng = offline.start(p, ev, "synthetic", fresh=True, why=loading.FULL_SHAPE_WHY["synthetic"])
    try:
        assert eng.kwargs["load_format"] == "auto" and eng.kwargs["model"] == str(src.model_dir)
        g = eng.generate([[1, 100, 200, 300]], max_tokens=4, ignore_eos=True, logprobs=1, detokenize=False)[0]
    finally:
        eng.close()
    assert loading.judge_infer("synthetic", len(g.token_ids), 4, ignore_eos=True,
                               chosen_logprobs=loading.chosen_logprobs(g)).status == "pass"
    f = src.model_dir / "model.safetensors"
    sd = load_file(str(f))
    del sd["model.layers.1.input_layernorm.weight"]
    save_file(sd, str(f), metadata={"format": "pt"})
    with pytest.raises(base.EngineError) as err:
        offline.start(p, ev, "synthetic", fresh=True, why="a tensor removed")
    row = loading.judge_load("synthetic", str(err.value))
    assert row.status == "fail" and row.id == "load:synthetic"
    assert "not initialized from checkpoint" in ev.read_text() + str(err.value)
