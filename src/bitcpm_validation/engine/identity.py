"""What this run loaded, in words: the served model name and the labels of measured figures (issue 10.9).

    identity.served_model_name(params, "real")   # "bitcpm-validation/stand-in" for the stand-in,
                                                 # the repo id (model.name) for BitCPM4 or another hub model
    identity.measured_on(params, "real", "cpu")  # "stand-in · trained ternary · CPU"

A stand-in is never labelled with the repo id it stands in for: its name comes from its own
config.json (`_name_or_path`, written by the project's writer), else its directory name.

What an engine loads for `which` (the one mapping every engine start, server and prompt path reads):

    real        model.path with its own weights (load_format auto)
    synthetic   the full shape of model.dummy_config with seeded ternary weights as BitCPM4 stores them
                (model.synthetic: real safetensors, written once into a cache, then reused; load_format auto)
    dummy       model.dummy_config with vLLM's load_format=dummy (no weight files read; kept for profiles
                that ask for it)

    src = identity.model_source(params, "synthetic")   # ModelSource(model_dir=~/.cache/.../full-shape-<hash>, ...)
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bitcpm_validation.params import Params

FULL_SHAPE = ("synthetic", "dummy")  # the `which` values that run model.dummy_config's full shape


class ModelSourceError(ValueError):
    """The profile names no directory for this `which`; the message says what to set."""


@dataclass(frozen=True)
class ModelSource:
    """What an engine loads for one `which`."""

    which: str
    model_dir: Path        # the directory vLLM is given
    load_format: str       # vLLM's load_format: auto (weight files read) | dummy (random values, nothing read)
    need_weights: bool     # whether the directory must hold weight files
    config_dir: Path       # whose config.json gives the shape and dtype (the synthetic checkpoint's source)
    prepare_s: float = 0.0  # seconds spent writing (first use) or finding (later) the synthetic checkpoint
    written: bool = False  # whether this call wrote the synthetic checkpoint (False: it was in the cache)


def model_source(params: Params, which: str = "real", *, write: bool = True) -> ModelSource:
    """The directory, load_format and weight need for `which` (real | synthetic | dummy). For synthetic,
    `write=False` names the cache directory without writing it (is it there: model.synthetic.is_written)."""
    if which == "real":
        return ModelSource("real", params.model_path, "auto", True, params.model_path)
    if which not in FULL_SHAPE:
        raise ModelSourceError(f"which={which!r}: expected real, synthetic or dummy")
    src = params.dummy_config_path
    if src is None:
        raise ModelSourceError(f"{params.source}: model.dummy_config is not set: point it at models/bitcpm4-0.5b "
                               f"(the full-size architecture)")
    if which == "dummy":
        return ModelSource("dummy", src, "dummy", False, src)
    from bitcpm_validation.model import synthetic

    t0 = time.monotonic()
    try:
        was = synthetic.is_written(synthetic.full_shape_path(src))
        out = synthetic.full_shape_dir(src) if write else synthetic.full_shape_path(src)
    except FileNotFoundError as err:
        raise ModelSourceError(str(err)) from None
    return ModelSource("synthetic", out, "auto", True, src, round(time.monotonic() - t0, 2), write and not was)

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
    config's directory name + "-synthetic" / "-dummy" for the full shape, else model.name (the repo id)."""
    if which in FULL_SHAPE:
        base = params.dummy_config_path.name if params.dummy_config_path else "full-shape"
        return _SAFE.sub("-", f"{base}-{which}")
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
    if which == "synthetic":
        return _WEIGHTS["synthetic"]
    return _WEIGHTS[params.model.weights_kind]


def device_label(platform: str) -> str:
    return _DEVICE.get(platform, platform or "unknown device")


def measured_on(params: Params, which: str, platform: str) -> str:
    """"model · weights · device" for results.Metric.measured_on."""
    if which in FULL_SHAPE:
        model = f"{_own_name(params.dummy_config_path) if params.dummy_config_path else 'full-size'} shape"
    else:
        model = "stand-in" if params.model.is_stand_in else params.model.name
    return f"{model} · {weights_label(params, which)} · {device_label(platform)}"
