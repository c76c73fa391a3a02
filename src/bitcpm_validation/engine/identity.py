"""What this run loaded, in words: the served model name and the labels of measured figures (issue 10.9).

    identity.served_model_name(params, "real")   # "bitcpm-validation/stand-in" for the stand-in,
                                                 # the repo id (model.name) for BitCPM4 or another hub model
    identity.measured_on(params, "real", "cpu")  # "stand-in · trained ternary · CPU"

A stand-in is never labelled with the repo id it stands in for: its name comes from its own
config.json (`_name_or_path`, written by the project's writer), else its directory name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bitcpm_validation.params import Params

_DEVICE = {"cpu": "CPU", "cuda": "CUDA GPU", "npu": "Ascend NPU"}
_SAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def _own_name(model_dir: Path) -> str:
    """The name a model directory gives itself: config.json `_name_or_path` when it is a name, not a path."""
    try:
        name = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("_name_or_path") or ""
    except (OSError, ValueError):
        name = ""
    if name and not name.startswith(("/", ".", "~")) and not Path(name).is_dir():
        return name
    return model_dir.name


def served_model_name(params: Params, which: str = "real") -> str:
    """`--served-model-name` and the name clients send: the stand-in's own name for the stand-in, the dummy
    config's directory name + "-dummy" for dummy weights, else model.name (the repo id)."""
    if which == "dummy":
        base = params.dummy_config_path.name if params.dummy_config_path else "dummy"
        return _SAFE.sub("-", f"{base}-dummy")
    if params.model.is_stand_in:
        return _SAFE.sub("-", _own_name(params.model_path))
    return params.model.name


# What the model directory declares (model.weights_kind), as a "measured on" label.
_WEIGHTS = {"stand-in": "trained ternary", "synthetic": "random weights", "real": "own weights"}


def weights_label(params: Params, which: str = "real") -> str:
    """dummy weights | trained ternary (the stand-in) | random weights (synthetic) | own weights: read from the
    model directory, never from the profile."""
    if which == "dummy":
        return "dummy weights"
    return _WEIGHTS[params.model.weights_kind]


def device_label(platform: str) -> str:
    return _DEVICE.get(platform, platform or "unknown device")


def measured_on(params: Params, which: str, platform: str) -> str:
    """"model · weights · device" for results.Metric.measured_on."""
    if which == "dummy":
        model = f"{_own_name(params.dummy_config_path) if params.dummy_config_path else 'full-size'} shape"
    else:
        model = "stand-in" if params.model.is_stand_in else params.model.name
    return f"{model} · {weights_label(params, which)} · {device_label(platform)}"
