"""File facts the model, engine, report and chapters need: a file's SHA-256, a model directory's safetensors files and
headers. At the base of the package (beside params and paths): it imports nothing of the package, so every layer
can use it without importing upwards.

Only reading, no validation: malformed files are diagnosed (in one line) by engine.modelcheck.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 1 << 22
SHARD_INDEX = "model.safetensors.index.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a model directory: those its shard index names, else every *.safetensors."""
    d = Path(model_dir)
    index = d / SHARD_INDEX
    if index.is_file():
        return [d / name for name in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))]
    return sorted(d.glob("*.safetensors"))


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """{tensor name: {dtype, shape, data_offsets}} from a safetensors header (no tensor data read)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header
