"""Every engine or server start of a run, counted: chapter, kind, weights, why, seconds to ready and per phase.

Chapters run in separate kernels, so each start is appended as one JSON line to
run_dir/engine-starts.jsonl (append of one short line is atomic on POSIX); the runner copies the list
into run.json and `load(run_dir)` / `summarize(...)` give the report its "N engine starts, T s, why each".
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

STARTS_FILE = "engine-starts.jsonl"
KINDS = ("offline", "server", "shared-server", "benchmark")


@dataclass
class Start:
    chapter: str          # chapter id (NN_name) or "runner"
    kind: str             # one of KINDS
    which: str            # weights: real | synthetic | dummy (engine.identity.model_source)
    why: str              # why this start exists (a deliberate fresh start says why; "" = default)
    seconds: Optional[float]  # to ready; None when it failed
    ok: bool = True
    error: Optional[str] = None
    at: str = ""          # ISO time of the start
    mode: str = ""        # offline: in-process | multiprocess (engine.startup.choose_mode); "" for servers
    # seconds of each phase, in order (engine.startup.phases: import, config, engine_core_process, worker_process,
    # model_load, kv_cache_and_warmup, compile, other; a server's, engine.startup.server_phases: api_server_process,
    # engine_core_process, worker_process, model_load, kv_cache_and_warmup, compile, other, to_healthy); {} where
    # not measured (vllm bench throughput's own engine)
    phases: dict[str, float] = field(default_factory=dict)


def chapter_of(evidence_path: Path) -> str:
    """The chapter id of an evidence log (runs/<id>/evidence/NN_name.log -> NN_name)."""
    return Path(evidence_path).name.split(".", 1)[0]


def record(run_dir: Optional[Path], start: Start) -> None:
    """Append one start to the run's list (no-op outside a run directory, e.g. JupyterLab scratch)."""
    if run_dir is None or not Path(run_dir).is_dir():
        return
    if start.kind not in KINDS:
        raise ValueError(f"engine start kind {start.kind!r} is not one of {KINDS}")
    if not start.at:
        start.at = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    with open(Path(run_dir) / STARTS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(start), ensure_ascii=False) + "\n")


def load(run_dir: Path) -> list[Start]:
    """The run's starts in order; a torn last line (a killed kernel) is skipped."""
    path = Path(run_dir) / STARTS_FILE
    out: list[Start] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(Start(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return out


def summarize(starts: list[Start]) -> dict:
    """{"count", "seconds", "failed", "starts": [...]} for run.json and the report."""
    ok = [s for s in starts if s.ok]
    return {"count": len(ok), "seconds": round(sum(s.seconds or 0.0 for s in ok), 1),
            "failed": len(starts) - len(ok), "starts": [asdict(s) for s in starts]}


def of_run(run_dir: Path) -> dict:
    """The report's view of a run's engine starts: summarize(load(run_dir)) (count, seconds, failed, starts:
    [{chapter, kind, which, why, seconds, ok, error, at, mode, phases}]) — "N engine starts, T s, why each"."""
    return summarize(load(run_dir))
