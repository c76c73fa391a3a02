"""What a model directory's weights are, as the directory itself declares it (never as a profile claims).

The project's writer (model.writer) puts one key into the config.json of every directory whose weights it
made, and the stand-in's training (model.train_stand_in) writes the same key:

    "bitcpm_validation_weights": "stand-in"    the project's trained ternary stand-in (not BitCPM4)
    "bitcpm_validation_weights": "synthetic"   random weights the project wrote (tests; tiny or full shape)

A directory without the key holds the model's own weights ("real": a hub snapshot, a local copy).
"dummy" is not a property of a directory: it is how an engine loads one (load_format="dummy").

    weights_kind(Path("models/stand-in"))   # "stand-in"
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

WEIGHTS_KEY = "bitcpm_validation_weights"
DECLARED = ("stand-in", "synthetic")
WeightsKind = Literal["stand-in", "synthetic", "real"]


def declared_kind(config: dict) -> Optional[str]:
    """The kind a config.json dict declares (WEIGHTS_KEY), or None."""
    value = config.get(WEIGHTS_KEY)
    return value if value in DECLARED else None


def weights_kind(model_dir: Path | str) -> WeightsKind:
    """stand-in | synthetic | real for a model directory (real: no declaration, or no readable config.json,
    e.g. a hub id not yet resolved)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "real"
    kind = declared_kind(config) if isinstance(config, dict) else None
    return kind or "real"  # type: ignore[return-value]
