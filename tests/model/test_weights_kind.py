"""model.weights_kind: what the weights are is read from the model directory (issue 22, run-time): the stand-in
declares itself, the project's random weights declare synthetic, anything else is real; the profile no longer decides
it, and the stand-in's training writes the declaration."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.engine import identity
from bitcpm_validation.model.train_stand_in import train
from bitcpm_validation.model.weights_kind import WEIGHTS_KEY, weights_kind
from bitcpm_validation.model.writer import write_tiny_random_model
from bitcpm_validation.params import ParamsError, load_params

from fake_model import accelerator_profile

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "models/stand-in"




def test_the_stand_in_declares_itself_and_others_do_not(tmp_path):
    assert json.loads((STAND_IN / "config.json").read_text())[WEIGHTS_KEY] == "stand-in"
    assert weights_kind(STAND_IN) == "stand-in"
    assert weights_kind(ROOT / "models/bitcpm4-0.5b") == "real"  # the real config, exactly: no declaration
    assert weights_kind(tmp_path / "missing") == "real"
    (tmp_path / "config.json").write_text(json.dumps({WEIGHTS_KEY: "something else"}))
    assert weights_kind(tmp_path) == "real"


def test_random_weights_written_by_the_project_are_synthetic(tmp_path):
    d = write_tiny_random_model(tmp_path / "tiny", num_hidden_layers=1)
    assert weights_kind(d) == "synthetic"
    p = load_params(accelerator_profile(tmp_path, d))
    assert not p.model.is_stand_in and identity.weights_label(p) == "random weights"


def test_the_profile_no_longer_decides_what_the_weights_are(tmp_path):
    """The Ascend profile with --model models/stand-in: labelled stand-in (it said "real weights" before)."""
    a = load_params(ROOT / "params/ascend-910b3.yaml").with_model("models/stand-in")
    assert a.model.is_stand_in and a.model.weights_kind == "stand-in"
    assert identity.measured_on(a, "real", "npu") == "stand-in · trained ternary · Ascend NPU"
    assert identity.served_model_name(a) == "bitcpm-validation/stand-in"
    # the run's saved params.yaml records what the directory declared, and loads again
    saved = tmp_path / "saved.yaml"
    saved.write_text(a.to_yaml(), encoding="utf-8")
    assert yaml.safe_load(saved.read_text())["model"]["is_stand_in"] is True
    assert load_params(saved).model.is_stand_in
    # a profile claim that contradicts the directory is one line naming the key and the fix
    with pytest.raises(ParamsError) as ei:
        load_params(accelerator_profile(tmp_path, STAND_IN, is_stand_in=False))
    msg = str(ei.value)
    assert "\n" not in msg and "model.is_stand_in" in msg and "remove the key" in msg and WEIGHTS_KEY in msg
    with pytest.raises(ParamsError, match="model.is_stand_in"):
        load_params(accelerator_profile(tmp_path, ROOT / "models/bitcpm4-0.5b", is_stand_in=True))
    for profile in ("default", "ascend-910b3", "cuda"):
        assert "is_stand_in" not in (ROOT / f"params/{profile}.yaml").read_text()


def test_the_stand_in_training_writes_the_declaration(tmp_path):
    """`make stand-in` writes the committed config.json, declaration included (it does not touch the weights:
    training 3 steps with and without it gives the same model.safetensors bytes, see the closing note)."""
    train(tmp_path / "s", seed=0, steps=1, batch=2, quiet=True)
    assert (tmp_path / "s" / "config.json").read_bytes() == (STAND_IN / "config.json").read_bytes()
    assert weights_kind(tmp_path / "s") == "stand-in"
