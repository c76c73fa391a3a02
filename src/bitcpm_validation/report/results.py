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
from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import ConfigDict, StringConstraints, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

SCHEMA_VERSION = 2
# not_comparable: measured, but the measurement is not valid (a busy host, too few samples, no warm-up): its figure
# cannot be compared with anything, so it is neither ✅ nor ❌; the reason says why and what to re-run.
CheckStatus = Literal["pass", "warn", "fail", "not_run", "not_comparable"]
ChapterStatus = Literal["running", "ok", "failed", "skipped"]
# engine: does this engine on this device run this model faithfully; model: is the model good; performance: is it
# fast enough, relative to what; repository: are the model's own files consistent; document: the original
# document's claims (findings, never a verdict)
Scope = Literal["engine", "model", "performance", "repository", "document"]
SCOPES: tuple[Scope, ...] = ("engine", "model", "performance", "repository", "document")
STATUS_MARK = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_run": "—", "not_comparable": "⊘"}

_STRICT = ConfigDict(extra="forbid")
ChapterId = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}_[a-z0-9_]+$")]


@dataclass(config=_STRICT)
class Check:
    """One judged row: made by a check function of a chapter module (see report.checks), never by hand."""
    id: str  # the registered check id, or "<id>:<item>" for a family of rows (one per probe, task, ...)
    status: CheckStatus
    name_en: str
    name_zh: str
    detail_en: str = ""
    detail_zh: str = ""
    scope: Optional[Scope] = None  # engine | model | performance | repository | document (from the registry)

    @property
    def mark(self) -> str:
        return STATUS_MARK[self.status]


@dataclass(config=_STRICT)
class Metric:
    """A measured value with its unit (a fact: shown, never judged)."""
    id: str
    value: Any
    unit: str
    name_en: str
    name_zh: str
    key: bool = False  # shown in the summary's key-metrics table
    timing: bool = False  # volatile between identical runs
    note: str = ""
    measured_on: str = ""  # what the value was measured on: "model · weights · device"


@dataclass(config=_STRICT)
class ChapterResult:
    chapter: ChapterId
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
    schema_version: Literal[2] = SCHEMA_VERSION

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
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChapterResult":
        return _ADAPTER.validate_python(d)


_ADAPTER = TypeAdapter(ChapterResult)


def json_schema() -> dict[str, Any]:
    """The results file's JSON Schema, generated from the dataclasses above (one definition)."""
    return _ADAPTER.json_schema()


class ResultsError(ValueError):
    pass


def jsonable(x: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN/inf to None (JSON has no NaN), tuples to lists."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if hasattr(x, "tolist"):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def validate(d: dict[str, Any], source: str = "results") -> None:
    """Raise ResultsError naming the file and the first offending field."""
    try:
        _ADAPTER.validate_python(d)
    except ValidationError as e:
        err = e.errors()[0]
        where = "/".join(str(p) for p in err["loc"]) or "(top level)"
        raise ResultsError(f"{source}: {where}: {err['msg']}") from None


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
    try:
        return ChapterResult.from_dict(d)
    except ValidationError as e:
        err = e.errors()[0]
        where = "/".join(str(p) for p in err["loc"]) or "(top level)"
        raise ResultsError(f"{path}: {where}: {err['msg']}: re-run the chapter") from None


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
