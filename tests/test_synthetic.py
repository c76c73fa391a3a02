"""model.synthetic: a checkpoint at a directory's real shape, laid out as BitCPM4 stores it, written once."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from bitcpm_validation.model import synthetic as S
from bitcpm_validation.model.reference import ReferenceModel
from bitcpm_validation.model.weights_kind import weights_kind
from bitcpm_validation.model.writer import small_config

ROOT = Path(__file__).resolve().parents[1]


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
