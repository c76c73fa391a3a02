"""Where things live. Everything is relative to the project root (the folder with pyproject.toml); a model lives in a
local directory or on a hub (`parse_hub_id`: the id syntax params validates and engine.hub resolves)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional


def _find_root() -> Path:
    env = os.environ.get("BITCPM_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "notebooks").is_dir():
            return parent
    return Path.cwd()


PROJECT_ROOT = _find_root()
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
REPORT_DIR = PROJECT_ROOT / "report"
MODELS_DIR = PROJECT_ROOT / "models"
RUNS_DIR = PROJECT_ROOT / "runs"

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


def parse_hub_id(spec: str) -> Optional[tuple[str, Optional[str]]]:
    """("org/name", revision or None) for a hub id, None for anything that is not one."""
    if spec.startswith(("/", "./", "../", "~")):
        return None
    m = _HUB_ID.match(spec.strip())
    return (m.group("repo"), m.group("rev")) if m else None
