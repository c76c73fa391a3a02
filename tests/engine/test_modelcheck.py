"""modelcheck: truncated/corrupt safetensors, missing or contradictory config fields, tokenizer vs vocab,
max_model_len vs the model. Each failure is one line naming the file and the fix. No engine."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bitcpm_validation.engine import modelcheck as M
from fake_model import config, fake_model_dir, write_safetensors


def _err(fn, *a, **kw) -> str:
    with pytest.raises(M.ModelCheckError) as ei:
        fn(*a, **kw)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    return msg


def test_valid_dir_passes(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    info = M.check_model_dir(d, max_model_len=2048)
    assert info["tokenizer_size"] == 40 and info["tensors"] == 4


def test_safetensors_header_roundtrip(tmp_path):
    f = write_safetensors(tmp_path / "a.safetensors", {"x": ("F32", [2, 3]), "y": ("BF16", [4])})
    hdr = M.check_safetensors(f)
    assert hdr["x"]["shape"] == [2, 3] and "__metadata__" not in hdr
    # the real library agrees the fake file is valid
    from safetensors import safe_open

    with safe_open(str(f), "np") as st:
        assert sorted(st.keys()) == ["x", "y"]


def test_truncated_safetensors(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    msg = _err(M.check_model_dir, d)
    assert msg.startswith(f"{w}: truncated safetensors file") and "re-download" in msg


def test_truncated_inside_header(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    msg = _err(M.check_model_dir, d)
    assert str(w) in msg and "corrupt or truncated" in msg


def test_tiny_file(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"abc")
    assert "no header" in _err(M.check_safetensors, f)


def test_corrupt_header_not_json(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 16) + b"{not json at all" + b"\0" * 8)
    msg = _err(M.check_safetensors, f)
    assert "corrupt safetensors header (not JSON" in msg and str(f) in msg


def test_corrupt_offsets(tmp_path):
    f = tmp_path / "model.safetensors"
    hdr = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    f.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 16)
    assert "offsets [0, 8] do not hold F32[4] = 16 bytes" in _err(M.check_safetensors, f)


def test_git_lfs_pointer(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123456789\n")
    assert "Git LFS pointer" in _err(M.check_safetensors, f)


def test_shard_index_missing_shard(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "model.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}}))
    assert "lists shard model-00002-of-00002.safetensors" in _err(M.check_model_dir, d)


@pytest.mark.parametrize("field", ["hidden_size", "num_attention_heads", "vocab_size", "max_position_embeddings"])
def test_missing_field(tmp_path, field):
    d = fake_model_dir(tmp_path / "m", weights=False, **{field: None})
    msg = _err(M.check_model_dir, d, need_weights=False)
    assert msg == f"{d / 'config.json'}: missing field '{field}': fix config.json or re-download it from the model repository"


def test_wrong_type_field(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False, num_hidden_layers="24")
    assert "field 'num_hidden_layers' must be a positive integer, got '24'" in _err(M.check_model_dir, d, need_weights=False)


def test_hidden_not_divisible_by_heads(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False, hidden_size=66)
    assert "hidden_size 66 is not divisible by num_attention_heads 4" in _err(M.check_model_dir, d, need_weights=False)


def test_heads_not_divisible_by_kv_heads(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False, num_key_value_heads=3)
    assert "num_attention_heads 4 is not divisible by num_key_value_heads 3" in _err(M.check_model_dir, d, need_weights=False)


def test_vocab_smaller_than_tokenizer(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False, vocab_size=36, eos_token_id=2)
    msg = _err(M.check_model_dir, d, need_weights=False)
    assert "vocab_size 36 is smaller than the tokenizer (40 ids)" in msg


def test_eos_outside_vocab(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False, eos_token_id=[2, 99])
    assert "eos_token_id 99 is outside the vocabulary (vocab_size 40)" in _err(M.check_model_dir, d, need_weights=False)


def test_rope_factors_vs_head_dim(tmp_path):
    cfg = config()
    cfg["rope_scaling"]["long_factor"] = [1.0] * 5
    d = fake_model_dir(tmp_path / "m", weights=False, rope_scaling=cfg["rope_scaling"])
    assert "rope_scaling.long_factor has 5 entries but head_dim 16 needs 8" in _err(M.check_model_dir, d, need_weights=False)


def test_weights_do_not_match_config(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    assert "the weights have 2 layers, num_hidden_layers is 3" in _err(M.check_model_dir, d)
    cfg["num_hidden_layers"], cfg["vocab_size"] = 2, 48
    (d / "config.json").write_text(json.dumps(cfg))
    assert "model.embed_tokens.weight is [40, 64]" in _err(M.check_model_dir, d)


def test_max_model_len_beyond_model(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    msg = _err(M.check_model_dir, d, max_model_len=8192, params_source="params/x.yaml")
    assert msg == (f"params/x.yaml: key 'engine.max_model_len': 8192 is beyond the model's max_position_embeddings "
                   f"4096 ({d / 'config.json'}): set it to 4096 or less")
    M.check_model_dir(d, max_model_len=4096)


def test_unreadable_tokenizer_json(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False)
    (d / "tokenizer.json").write_text("{oops")
    assert f"{d / 'tokenizer.json'}: not valid JSON" in _err(M.check_model_dir, d, need_weights=False)


def test_stand_in_and_full_size_dirs_pass(project_root):
    """The shipped model directories pass the checks: the stand-in with its weights, the full-size one without."""
    info = M.check_model_dir(project_root / "models" / "stand-in", need_weights=True)
    assert info["tensors"] > 0 and info["tokenizer_size"] == info["config"]["vocab_size"]
    full = M.check_model_dir(project_root / "models" / "bitcpm4-0.5b", need_weights=False)
    # the full-size directory carries the stand-in's small tokenizer: ids fit in the 73,448-row embedding
    assert full["config"]["vocab_size"] == 73448 and full["tokenizer_size"] <= 73448 and full["tensors"] == 0


def test_tokenizer_json_only_dir_passes(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    assert (d / "tokenizer.json").is_file()
    (d / "tokenizer.model").unlink(missing_ok=True)
    assert M.check_model_dir(d)["tokenizer_size"] == 40


def test_no_tokenizer_at_all(tmp_path):
    d = fake_model_dir(tmp_path / "m", tokenizer=False)
    assert "has no tokenizer (tokenizer.json / tokenizer.model)" in _err(M.check_model_dir, d)


def test_check_once_reads_a_directory_once_per_run_and_again_when_a_file_changes(tmp_path, monkeypatch):
    d = fake_model_dir(tmp_path / "m")
    run = tmp_path / "run"
    run.mkdir()
    calls = []
    real = M.check_model_dir
    monkeypatch.setattr(M, "check_model_dir", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    M.check_once(d, max_model_len=2048, run_dir=run)
    M.check_once(d, max_model_len=2048, run_dir=run)  # the second engine start of the run: not read again
    assert len(calls) == 1 and (run / M.CHECKED_FILE).is_file()
    M.check_once(d, max_model_len=1024, run_dir=run)  # other settings: checked for those
    assert len(calls) == 2
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-8])  # the weights changed (truncated) after the check: read again, and fail
    assert "truncated safetensors file" in _err(M.check_once, d, max_model_len=2048, run_dir=run)
    assert len(calls) == 3
    M.check_once(d, need_weights=False, run_dir=None)  # no run directory: every call checks
    M.check_once(d, need_weights=False, run_dir=None)
    assert len(calls) == 5
