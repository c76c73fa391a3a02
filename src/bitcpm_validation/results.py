"""The results file: the contract between chapters, the summary, report.md, `compare` and `publish`.

runs/<run-id>/results/<chapter-id>.json holds one chapter's checks (✅ ⚠️ ❌ —), metrics (value + unit)
and free-form data. It is written atomically (temp file + rename), so a crash never leaves half a file.

Volatile fields (differ between two runs with the same params on the same machine): `started`,
`finished`, `duration_s`, metrics with `timing: true`, and anything under `data["timings"]`.
`stable_view()` drops them; everything else must be reproducible.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import jsonschema

SCHEMA_VERSION = 1
CheckStatus = Literal["pass", "warn", "fail", "not_run"]
ChapterStatus = Literal["running", "ok", "failed", "skipped"]
STATUS_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_run": "—"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "chapter results",
    "type": "object",
    "required": ["schema_version", "chapter", "title_en", "title_zh", "status", "checks", "metrics", "data"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "chapter": {"type": "string", "pattern": "^[0-9]{2}_[a-z0-9_]+$"},
        "title_en": {"type": "string"},
        "title_zh": {"type": "string"},
        "status": {"enum": ["running", "ok", "failed", "skipped"]},
        "error": {"type": ["string", "null"]},
        "reason_en": {"type": ["string", "null"]},
        "reason_zh": {"type": ["string", "null"]},
        "profile": {"type": ["string", "null"]},
        "started": {"type": ["string", "null"]},
        "finished": {"type": ["string", "null"]},
        "duration_s": {"type": ["number", "null"]},
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "status", "name_en", "name_zh"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["pass", "warn", "fail", "not_run"]},
                    "name_en": {"type": "string"},
                    "name_zh": {"type": "string"},
                    "detail_en": {"type": "string"},
                    "detail_zh": {"type": "string"},
                },
            },
        },
        "metrics": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "value", "unit", "name_en", "name_zh"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "value": {"type": ["number", "string", "null", "boolean"]},
                    "unit": {"type": "string"},
                    "name_en": {"type": "string"},
                    "name_zh": {"type": "string"},
                    "key": {"type": "boolean"},
                    "timing": {"type": "boolean"},
                    "note": {"type": "string"},
                },
            },
        },
        "data": {"type": "object"},
        "card": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title_en", "title_zh", "markdown"],
                "additionalProperties": False,
                "properties": {
                    "title_en": {"type": "string"},
                    "title_zh": {"type": "string"},
                    "markdown": {"type": "string"},
                },
            },
        },
    },
}


@dataclass
class Check:
    id: str
    status: CheckStatus
    name_en: str
    name_zh: str
    detail_en: str = ""
    detail_zh: str = ""

    @property
    def mark(self) -> str:
        return STATUS_MARK[self.status]


@dataclass
class Metric:
    id: str
    value: Any
    unit: str
    name_en: str
    name_zh: str
    key: bool = False  # shown in the summary's key-metrics table
    timing: bool = False  # volatile between identical runs
    note: str = ""


@dataclass
class ChapterResult:
    chapter: str
    title_en: str
    title_zh: str
    status: ChapterStatus = "running"
    error: Optional[str] = None
    reason_en: Optional[str] = None  # why a chapter was skipped
    reason_zh: Optional[str] = None
    profile: Optional[str] = None
    started: Optional[str] = None
    finished: Optional[str] = None
    duration_s: Optional[float] = None
    checks: list[Check] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    card: list[dict[str, str]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    # -- access -------------------------------------------------------------------------------
    def metric(self, metric_id: str, default: Any = None) -> Any:
        for m in self.metrics:
            if m.id == metric_id:
                return m.value
        return default

    def check(self, check_id: str) -> Optional[Check]:
        return next((c for c in self.checks if c.id == check_id), None)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in STATUS_MARK}
        for c in self.checks:
            out[c.status] += 1
        return out

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChapterResult":
        d = dict(d)
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        d["metrics"] = [Metric(**m) for m in d.get("metrics", [])]
        return cls(**d)


class ResultsError(ValueError):
    pass


def _jsonable(x: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN/inf to None (JSON has no NaN), tuples to lists."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def validate(d: dict[str, Any], source: str = "results") -> None:
    try:
        jsonschema.validate(d, SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ResultsError(f"{source}: {where}: {e.message}") from None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(result: ChapterResult, path: Path) -> None:
    d = result.to_dict()
    validate(d, str(path))
    write_atomic(path, json.dumps(d, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def load(path: Path) -> ChapterResult:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: results file not found: run the chapter first") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}): re-run the chapter") from None
    validate(d, str(path))
    return ChapterResult.from_dict(d)


def results_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "results"


def load_run(run_dir: Path) -> dict[str, ChapterResult]:
    """Every chapter's results in a run, by chapter id; unreadable files raise ResultsError."""
    out: dict[str, ChapterResult] = {}
    for p in sorted(results_dir(run_dir).glob("[0-9][0-9]_*.json")):
        out[p.stem] = load(p)
    return out


def stable_view(d: dict[str, Any]) -> dict[str, Any]:
    """A results dict without its volatile fields (see module docstring)."""
    d = json.loads(json.dumps(d))
    for k in ("started", "finished", "duration_s"):
        d.pop(k, None)
    d["metrics"] = [m for m in d.get("metrics", []) if not m.get("timing")]
    d.get("data", {}).pop("timings", None)
    return d
