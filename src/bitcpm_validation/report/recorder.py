"""What a chapter notebook talks to: its params, its results file and its evidence log.

A notebook's first code cell (tagged `parameters` for papermill) sets `params_path` and `run_dir`;
the next cell opens the chapter:

    ch = Chapter.open("03_inference", params_path, run_dir)
    ch.record(inference.judge_probe(...))          # check rows come from the chapter module's functions
    ch.metric("init_s", 12.3, "s", "Engine init", "引擎初始化", key=True, timing=True)
    ch.data["outputs"] = [...]
    ch.finish()

Every check/metric is saved at once (atomically), so an exception later in the notebook loses
nothing: the runner marks the chapter failed and keeps what it had recorded.
"""
from __future__ import annotations

import datetime as _dt
import faulthandler
import sys
import time
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.report import results as R
from bitcpm_validation.report.contents import chapter as _chapter_info
from bitcpm_validation.params import Params, PromptSet, load_params, load_prompts
from bitcpm_validation.paths import PROJECT_ROOT

_crash_log = None  # the open evidence log faulthandler writes a native crash to (one per kernel)

DEFAULT_RUN_DIR = "runs/lab"  # where a notebook opened in JupyterLab writes


class ChapterSkipped(Exception):
    """Raised by Chapter.skip(): the chapter does not apply to this profile (not a failure)."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


class Chapter:
    def __init__(self, chapter_id: str, params: Params, run_dir: Path):
        info = _chapter_info(chapter_id)
        self.info = info
        self.params = params
        self.run_dir = Path(run_dir)
        self._t0 = time.monotonic()
        self.result = R.ChapterResult(
            chapter=info.id, title_en=info.title_en, title_zh=info.title_zh,
            profile=params.profile, started=now_iso(),
        )
        self._prompts: Optional[PromptSet] = None
        for sub in ("results", "evidence", "notebooks", "artifacts"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._save()
        self._trace_native_crashes()

    def _trace_native_crashes(self) -> None:
        """A native crash (SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGABRT) in this kernel — an in-process engine's C++
        kernels run here — writes 'Fatal Python error: <signal>' and the Python stack to the evidence log, where
        the runner finds it to say why the kernel died (report.runner.kernel_death)."""
        global _crash_log
        if "ipykernel" not in sys.modules:  # a notebook kernel only: elsewhere (pytest, scripts) the host's own handler stays
            return
        if _crash_log is not None:
            _crash_log.close()
        _crash_log = self.evidence_path.open("a", encoding="utf-8")
        faulthandler.enable(file=_crash_log, all_threads=False)

    @classmethod
    def open(cls, chapter_id: str, params_path: str | Path, run_dir: str | Path = DEFAULT_RUN_DIR) -> "Chapter":
        run = Path(run_dir)
        if not run.is_absolute():
            run = PROJECT_ROOT / run
        return cls(chapter_id, load_params(params_path), run)

    # -- locations ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.info.id

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results" / f"{self.id}.json"

    @property
    def evidence_path(self) -> Path:
        """Raw engine / server logs of this chapter (appended to by engine and server wrappers)."""
        return self.run_dir / "evidence" / f"{self.id}.log"

    @property
    def artifacts_dir(self) -> Path:
        """Per-chapter scratch space inside the run (benchmark JSON, lm-eval output, ...)."""
        p = self.run_dir / "artifacts" / self.id
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def prompts(self) -> PromptSet:
        if self._prompts is None:
            self._prompts = load_prompts(self.params.prompts_path)
        return self._prompts

    @property
    def data(self) -> dict[str, Any]:
        return self.result.data

    def evidence(self, text: str) -> None:
        """Append a line (or block) to this chapter's evidence log."""
        with self.evidence_path.open("a", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + "\n")

    def other(self, chapter_id: str) -> Optional[R.ChapterResult]:
        """Another chapter's results in the same run, or None if it has not run (or is unreadable)."""
        p = self.run_dir / "results" / f"{_chapter_info(chapter_id).id}.json"
        try:
            return R.load(p)
        except R.ResultsError:
            return None

    # -- recording ----------------------------------------------------------------------------
    def record(self, *rows: R.Check) -> list[R.Check]:
        """Record check rows made by a chapter module's check functions (see report.checks)."""
        for c in rows:
            if not isinstance(c, R.Check):
                raise TypeError(f"record() takes Check rows from a check function, got {type(c).__name__}")
            if c.scope is None:
                raise ValueError(f"check {c.id!r} has no scope: make it with a registered CheckSpec")
            self.result.checks = [x for x in self.result.checks if x.id != c.id] + [c]
        self._save()
        return list(rows)

    def metric(self, metric_id: str, value: Any, unit: str, name_en: str, name_zh: str, *,
               key: bool = False, timing: bool = False, note: str = "", measured_on: str = "") -> R.Metric:
        m = R.Metric(metric_id, R.jsonable(value), unit, name_en, name_zh, key, timing, note, measured_on)
        self.result.metrics = [x for x in self.result.metrics if x.id != metric_id] + [m]
        self._save()
        return m

    def card(self, title_en: str, title_zh: str, markdown: str) -> None:
        """A section for report.md (the model card). Escape untrusted text with textsafe.md_*."""
        self.result.card.append({"title_en": title_en, "title_zh": title_zh, "markdown": markdown})
        self._save()

    def save(self) -> None:
        """Persist `data` after changing it directly."""
        self._save()

    def skip(self, reason_en: str, reason_zh: str) -> None:
        """This chapter does not apply to this profile (not a failure); say why."""
        self.result.reason_en, self.result.reason_zh = reason_en, reason_zh
        self._finish("skipped")
        raise ChapterSkipped(f"{self.id} skipped: {reason_en}")

    def finish(self) -> R.ChapterResult:
        self._finish("ok")
        return self.result

    def _finish(self, status: str) -> None:
        self.result.status = status  # type: ignore[assignment]
        self.result.finished = now_iso()
        self.result.duration_s = round(time.monotonic() - self._t0, 3)
        self._save()

    def _save(self) -> None:
        R.save(self.result, self.results_path)
