"""Run the chapter notebooks of a report with papermill into runs/<run-id>/.

    python -m bitcpm_validation run --params params/default.yaml          # a new run, then render
    python -m bitcpm_validation run --resume runs/<id>                    # re-run failed/missing chapters
    python -m bitcpm_validation run --resume runs/<id> --only inference   # re-run chosen chapters

Python API: `run(params_path, ...) -> RunOutcome` (see its docstring). Every chapter gets the
papermill parameters `params_path` and `run_dir` (both absolute), runs with cwd = project root, and
writes runs/<id>/notebooks/<chapter>.ipynb (executed), results/<chapter>.json, evidence/<chapter>.log.

A chapter that raises is marked failed (its recorded checks kept, `error` = "Name: message"); the run
goes on. `ChapterSkipped` is not a failure. The summary chapter runs last (it reads the others).
Ctrl-C / SIGTERM: the kernel and every process it started (vLLM engines, servers) are killed, the
interrupted chapter is marked failed, run.json records what is done.

The run's shared engine (engine.shared): before the first chapter that starts an engine, ONE `vllm serve`
is started (params' engine settings, the real model, the faithful tokenizer where the run uses one) and
written to run_dir/shared-engine.json; chapters' `engine.start(...)` / `server.serving(...)` become clients
of it. It is stopped when the run ends, fails or is interrupted. If it cannot start, one line says why and
the chapters start their own engines. Every engine start of the run (engine.starts) is listed in run.json
under `engine_starts`.

On a CPU, when the performance chapter will benchmark the full shape (performance.model synthetic | dummy), the
benchmark's `vllm serve` starts together with the shared one (shared-engine-<which>.json; the shared one once
the benchmark's API server has imported vLLM, `_until_api_server_imported`) and is stopped once that chapter is done: a
server start is mostly three processes importing vLLM one after the other, one core each, so the two overlap
(44 s for both on the 2-core host of the README's timings, against 26 s + 32 s one after the other). On a device
the benchmark starts its own
server in its chapter, as the device's memory must leave room for the chapters' fresh engines.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO, Optional, Sequence

from bitcpm_validation.engine import server as engine_server
from bitcpm_validation.engine import shared as shared_engine
from bitcpm_validation.engine import starts as engine_starts
from bitcpm_validation.report import kernels
from bitcpm_validation.report import results as R
from bitcpm_validation.report.contents import SUMMARY_ID, ChapterInfo, all_chapters
from bitcpm_validation.engine import hub, processes
from bitcpm_validation.engine.base import engine_platform
from bitcpm_validation.model.weights_kind import weights_kind
from bitcpm_validation.params import ModelSourceRecord, Params, load_params
from bitcpm_validation.paths import NOTEBOOKS_DIR, PROJECT_ROOT, RUNS_DIR
from bitcpm_validation.report.textsafe import one_line, term_safe

KERNEL_NAME = "bitcpm-validation"  # registered by `make setup`; falls back to python3


class RunError(RuntimeError):
    """The run cannot start (bad params, missing model, unknown chapter): one-line message."""


@dataclass
class ChapterOutcome:
    chapter: str
    status: str  # ok | failed | skipped
    seconds: float
    error: Optional[str] = None
    notebook: Optional[str] = None


@dataclass
class RunOutcome:
    run_dir: Path
    chapters: list[ChapterOutcome] = field(default_factory=list)
    interrupted: bool = False
    run_failed: list[str] = field(default_factory=list)  # every failed chapter of the run (resumed runs too)
    shared_engine: Optional[dict] = None  # url, pid, settings, startup_s; or {"ok": False, "error": ...}
    platform_check: Optional[dict] = None  # check_platform's record: profile, detected, mismatch, allowed

    @property
    def failed(self) -> list[ChapterOutcome]:
        """Chapters that failed in this invocation."""
        return [c for c in self.chapters if c.status == "failed"]

    @property
    def exit_code(self) -> int:
        """130 interrupted; 1 if any chapter of the run (not only of this invocation) failed; else 0."""
        if self.interrupted:
            return 130
        return 1 if (self.failed or self.run_failed) else 0


# -- planning -----------------------------------------------------------------------------------------
def _info_for(stem: str) -> ChapterInfo:
    known = {c.id: c for c in all_chapters()}
    return known.get(stem) or ChapterInfo(stem, stem.split("_", 1)[-1].title(), stem.split("_", 1)[-1])


def _matches(stem: str, wanted: str) -> bool:
    num, _, name = stem.partition("_")
    return wanted in (stem, name, num) or (wanted.isdigit() and wanted.zfill(2) == num)


def plan(params: Params, notebooks_dir: Path = NOTEBOOKS_DIR, only: Optional[Sequence[str]] = None) -> list[Path]:
    """Notebooks to run, in order, the summary last. `only` narrows params' `chapters:` further."""
    nbs = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    wanted = [w for w in params.chapters if w != "all"] if "all" not in params.chapters else []
    for group in (wanted, list(only or [])):
        for w in group:
            if not any(_matches(p.stem, w) for p in nbs) and not any(_matches(c.id, w) for c in all_chapters()):
                names = ", ".join(p.stem for p in nbs)
                raise RunError(f"unknown chapter {w!r}: choose from {names}")
    if wanted:
        nbs = [p for p in nbs if p.stem == SUMMARY_ID or any(_matches(p.stem, w) for w in wanted)]
    if only:
        nbs = [p for p in nbs if p.stem == SUMMARY_ID or any(_matches(p.stem, w) for w in only)]
    summary = [p for p in nbs if p.stem == SUMMARY_ID]
    return [p for p in nbs if p.stem != SUMMARY_ID] + summary


def new_run_id(params: Params) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in params.profile)[:40] or "run"
    return f"{stamp}-{safe}"


def resolve_model(params: Params) -> Params:
    """The model resolved once per run: a hub id becomes its local snapshot, recorded in model.source."""
    try:
        src = hub.resolve(params.model.path, params.model.hub, base=PROJECT_ROOT)
    except hub.ModelSourceError as e:
        raise RunError(f"{params.source or 'params'}: key 'model.path': {e}") from None
    if src.repo_id is None:
        return params
    record = ModelSourceRecord(hub=src.hub, repo_id=src.repo_id, revision=src.revision, commit=src.commit)
    return params.model_copy(update={"model": params.model.model_copy(update={"path": str(src.local_dir),
                                                                              "source": record})})


def check_inputs(params: Params) -> None:
    """Fail fast with one line when the model directory is missing (before any notebook starts)."""
    src = params.source or "params"
    if not params.model_path.is_dir():
        raise RunError(
            f"{src}: key 'model.path': model directory {params.model.path} not found: "
            f"point it at a local copy of {params.model.name} (e.g. git lfs clone https://huggingface.co/{params.model.name})"
        )


# Where each platform runs, for the mismatch line.
_HOST = {"npu": "an Ascend host", "cuda": "an NVIDIA GPU host", "cpu": "a CPU-only host"}
ALLOW_MISMATCH_HINT = "--allow-platform-mismatch (ALLOW_PLATFORM_MISMATCH=1 make report)"


def check_platform(params: Params, allow_mismatch: bool = False, detected: Optional[str] = None) -> dict[str, Any]:
    """The profile's `platform` against the one vLLM detects (`current_platform`), before any engine starts.
    `auto` accepts any host (nothing is detected here). A mismatch raises RunError (one line) unless
    `allow_mismatch`; the returned record goes into run.json (and page one says so)."""
    wanted = params.platform
    if wanted == "auto":
        return {"profile": "auto", "detected": None, "mismatch": False, "allowed": False}
    if detected is None:
        from bitcpm_validation.engine.base import detect_platform

        try:
            detected = detect_platform()
        except Exception as err:  # noqa: BLE001  (vLLM missing or broken: say so, do not guess)
            raise RunError(f"{params.source or 'params'}: key 'platform': the profile asks for {wanted} but vLLM's "
                           f"platform could not be read ({one_line(f'{type(err).__name__}: {err}', 160)}): "
                           f"run make setup, or pass {ALLOW_MISMATCH_HINT}") from None
    record = {"profile": wanted, "detected": detected, "mismatch": detected != wanted, "allowed": False}
    if not record["mismatch"]:
        return record
    if not allow_mismatch:
        raise RunError(f"the profile asks for {wanted} but this host runs on {detected}: run on "
                       f"{_HOST.get(wanted, 'a ' + wanted + ' host')}, use params/default.yaml, or pass "
                       f"{ALLOW_MISMATCH_HINT}")
    record["allowed"] = True
    return record


# jupyter_client sends the kernel SIGINT at every shutdown, which the kernel logs at ERROR ("KeyboardInterrupt
# caught in kernel") onto the run's progress lines; a chapter's own errors reach the report through papermill.
KERNEL_CONFIG = "c = get_config()  # noqa\nc.IPKernelApp.log_level = 'CRITICAL'\nc.Application.log_level = 'CRITICAL'\n"


def _ipython_dir() -> Path:
    """An IPython profile whose kernel logs only critical errors (its TCP warnings, the shutdown interrupt)."""
    d = RUNS_DIR / ".ipython"
    cfg = d / "profile_default" / "ipython_kernel_config.py"
    if not cfg.is_file() or cfg.read_text() != KERNEL_CONFIG:
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(KERNEL_CONFIG)
    return d


def kernel_name() -> str:
    """The project's kernel if registered (make setup), else python3 of this interpreter."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        exe = spec.argv[0]
        if Path(exe).exists() and Path(exe).resolve().parent == Path(sys.executable).resolve().parent:
            return KERNEL_NAME
    except Exception:  # noqa: BLE001
        pass
    return "python3"


# -- one chapter --------------------------------------------------------------------------------------------
def _result_path(run_dir: Path, stem: str) -> Path:
    return run_dir / "results" / f"{stem}.json"


def _mark(run_dir: Path, stem: str, status: str, error: Optional[str], seconds: float) -> None:
    """Record the runner's verdict in the chapter's results file, keeping its checks/metrics/data."""
    path = _result_path(run_dir, stem)
    try:
        res = R.load(path)
    except R.ResultsError:
        info = _info_for(stem)
        res = R.ChapterResult(chapter=stem, title_en=info.title_en, title_zh=info.title_zh)
    res.status = status  # type: ignore[assignment]
    res.error = error
    if res.duration_s is None or status == "failed":
        res.duration_s = round(seconds, 3)
    if not res.finished:
        res.finished = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    R.save(res, path)


def _error_line(e: BaseException) -> tuple[str, str]:
    """(ename, one-line 'Name: message') of a papermill / kernel error."""
    ename = getattr(e, "ename", None) or type(e).__name__
    evalue = getattr(e, "evalue", None)
    if evalue is None:
        evalue = str(e)
    return ename, one_line(f"{ename}: {evalue}" if evalue else ename, 400)


_FATAL = re.compile(r"Fatal Python error: (\w[^\n]*)")
_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\w+)')


def kernel_death(evidence_log: Path) -> str:
    """Why a chapter's kernel died, from what faulthandler wrote to its evidence log (report.recorder): the
    signal, the innermost Python frame and what to do; a generic line where the log holds no trace."""
    try:
        text = evidence_log.read_text(encoding="utf-8", errors="replace")[-20000:]
    except OSError:
        text = ""
    m = None
    for m in _FATAL.finditer(text):
        pass
    if m is None:
        return (f"the chapter's kernel died without a Python error (killed, or out of memory): see {evidence_log.name} "
                f"and the system log")
    frame = _FRAME.search(text, m.end())
    where = f" in {Path(frame.group(1)).name}:{frame.group(2)} {frame.group(3)}()" if frame else ""
    hint = ("; an in-process engine's native kernels crashed: on a CPU set engine.dtype: float32 (vLLM's BF16/AMX kernels "
            "are not used then)" if "illegal instruction" in m.group(1).lower() else "")
    return f"the chapter's kernel died: {m.group(1).strip()}{where} (stack in {evidence_log.name}){hint}"


def run_chapter(nb: Path, run_dir: Path, params_path: Path, *, kernel: Optional[str] = None,
                timeout_s: Optional[float] = None, keep: Optional[set[int]] = None, km: Any = None) -> ChapterOutcome:
    """Execute one chapter notebook into run_dir; never raises except KeyboardInterrupt. `km`: a kernel already
    started for it (report.kernels.WarmKernel), shut down here afterwards; None: papermill starts one.

    Afterwards every process the chapter left running is killed (`keep`: pids that existed before)."""
    keep = processes.descendants() if keep is None else keep
    import papermill as pm

    stem = nb.stem
    out_nb = run_dir / "notebooks" / nb.name
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    status, error = "ok", None
    try:
        pm.execute_notebook(
            str(nb), str(out_nb),
            parameters={"params_path": str(params_path), "run_dir": str(run_dir)},
            kernel_name=kernel or kernel_name(), cwd=str(PROJECT_ROOT), progress_bar=False, log_output=False,
            execution_timeout=timeout_s, report_mode=False, **({"km": km} if km is not None else {}),
        )
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001  (PapermillExecutionError, DeadKernelError, timeouts, ...)
        ename, error = _error_line(e)
        if ename == "DeadKernelError":
            error = one_line(f"{ename}: {kernel_death(run_dir / 'evidence' / f'{stem}.log')}", 400)
        status = "skipped" if ename == "ChapterSkipped" else "failed"
        if status == "skipped":
            error = None
    finally:
        if km is not None:  # papermill shuts down only the kernels it started
            kernels.stop(km)
    seconds = time.monotonic() - t0
    leaked = processes.kill_descendants(grace_s=3.0, keep=keep)
    if leaked:
        with (run_dir / "evidence" / f"{stem}.log").open("a", encoding="utf-8") as f:
            f.write(f"[runner] killed {len(leaked)} process(es) left running after the chapter: {leaked}\n")
    try:
        res = R.load(_result_path(run_dir, stem))
    except R.ResultsError:
        res = None
    if status == "ok" and res is not None and res.status == "skipped":
        status = "skipped"
    if status == "ok" and res is not None and res.status in ("running", "failed"):
        status, error = "failed", res.error or "the notebook ended without ch.finish()"
    if status == "failed" or res is None or (status == "skipped" and res.status != "skipped"):
        _mark(run_dir, stem, status, error, seconds)
    return ChapterOutcome(stem, status, round(seconds, 1), error, str(out_nb))


# -- a whole run ------------------------------------------------------------------------------------------
def _fmt_total(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def git_info(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The project's commit, branch and dirty flag (tracked files changed), or why unknown."""

    def git(*args: str) -> Optional[str]:
        try:
            p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout if p.returncode == 0 else None  # unstripped: porcelain lines start with a status column

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None, "note": "not a git checkout (or git missing)"}
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    return {"commit": commit, "dirty": bool(status.strip()), "branch": (git("rev-parse", "--abbrev-ref", "HEAD") or "").strip(),
            "changed_files": [ln[3:] for ln in status.splitlines()][:50]}


def _write_run_json(run_dir: Path, params: Params, params_path: Path, outcome: RunOutcome, started: str,
                    planned: list[str]) -> None:
    p = run_dir / "run.json"
    try:
        prev = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prev = {}
    chapters = dict(prev.get("chapters", {}))
    for c in outcome.chapters:
        chapters[c.chapter] = {"status": c.status, "seconds": c.seconds, "error": c.error}
    info = {
        "run_id": run_dir.name,
        "profile": params.profile,
        "params_path": str(params_path),
        "lang": params.lang,
        "model": params.model.name,
        "model_path": str(params.model_path),
        "is_stand_in": params.model.is_stand_in,  # from the model directory (model.weights_kind), not the profile
        "weights": weights_kind(params.model_path),
        "platform_check": _platform_record(outcome.platform_check, prev.get("platform_check")),
        "started": prev.get("started", started),
        "finished": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "git_commit": (lambda g: g["commit"] and g["commit"] + ("-dirty" if g["dirty"] else ""))(git_info()),
        "argv": sys.argv,
        "planned": sorted(set(prev.get("planned", [])) | set(planned)),
        "interrupted": outcome.interrupted,
        "chapters": dict(sorted(chapters.items())),
        "engine_starts": engine_starts.summarize(engine_starts.load(run_dir)),
        "shared_engine": outcome.shared_engine or prev.get("shared_engine"),
    }
    R.write_atomic(p, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    outcome.run_failed = sorted(k for k, v in chapters.items() if v.get("status") == "failed")
    for f in [p, *run_dir.glob("results/*.json")]:
        try:
            os.chmod(f, 0o644)
        except OSError:
            pass


def _platform_record(now: Optional[dict], before: Optional[dict]) -> Optional[dict]:
    """This invocation's platform check, unless an earlier one of the run went on past a mismatch (its
    chapters stay in the run: the report keeps saying so)."""
    if before and before.get("allowed") and not (now and now.get("allowed")):
        return before
    return now or before


def _shared_answers(srv: Any, run_dir: Path) -> bool:
    """The shared server's process still runs (vLLM's API server exits when its engine core dies: the launcher's
    terminate_if_errored, unless VLLM_KEEP_ALIVE_ON_ENGINE_DEATH) and its shared-engine.json is in place."""
    return bool(srv.alive()) and shared_engine.read_info(run_dir) is not None


BENCHMARK_CHAPTER = "07_performance"


def benchmark_server_weights(params: Params, todo: Sequence[Path], platform: str) -> Optional[str]:
    """The weights of the benchmark server the runner starts together with the shared one (synthetic | dummy),
    or None: the performance chapter is not planned, benchmarks the model's own weights (the shared server's
    model; its chapter starts a server of its own), or the engine runs on a device (no memory to hold both)."""
    which = params.performance.model
    if platform != "cpu" or which == "real" or not any(nb.stem == BENCHMARK_CHAPTER for nb in todo):
        return None
    return which


class _StartInThread(threading.Thread):
    """Start a server in this thread, then stay alive until `release()`: a child started with PR_SET_PDEATHSIG
    (processes.die_with_parent) gets SIGTERM when the *thread* that forked it ends, not only its process."""

    def __init__(self, fn: Any, *args: Any):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done, self._released = threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as err:  # noqa: BLE001  handed to the runner's thread
            self.error = err
        finally:
            self.done.set()
        self._released.wait()

    def release(self) -> None:
        self._released.set()


def _until_api_server_imported(log: Path, start: _StartInThread, timeout_s: float = 30.0) -> None:
    """Wait until a starting server's API server has imported vLLM (its first `(APIServer pid=…)` line; it spawns
    its engine core next), or the start is done, or `timeout_s`. vLLM pins a CPU worker's main thread to the
    first bound core from the moment torch loads (GOMP_CPU_AFFINITY, which vllm/utils/ompmultiprocessing.py sets
    for the worker it spawns): two servers started at the same instant import their workers on that one core in
    turn. Started this much later, the second one's processes import on the other core while the first one's
    worker does."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s and not start.done.wait(0.2):
        with contextlib.suppress(OSError):
            if "(APIServer pid=" in log.read_text(encoding="utf-8", errors="replace"):
                return


def _start_shared(run_dir: Path, params: Params, out: IO[str], outcome: RunOutcome,
                  benchmark: Optional[str] = None) -> tuple[dict[str, Any], Optional[_StartInThread]]:
    """Start the run's shared `vllm serve` (the run's params, as the chapters get them) and, where `benchmark`
    names its weights, the benchmark's server first, in a thread that lives as long as that server
    (`_StartInThread`), with one progress line. Returns ({which: Server} of those that started, the benchmark
    server's thread or None); a failure is one line (the chapters then start their own engines)."""
    from bitcpm_validation.engine import server
    from bitcpm_validation.engine.base import EngineError

    label = "vllm serve" if not benchmark else "vllm serve ×2"
    print(f"[shared] {label:<18} … ", end="", file=out, flush=True)
    ticker = _Progress(out, f"[shared] {label:<18} … ")
    t0 = time.monotonic()
    started: dict[str, Any] = {}
    errors: dict[str, str] = {}
    server.install_cleanup()  # from the runner's thread (signal handlers), before any start
    bench = _StartInThread(engine_server.start_shared, params, run_dir, benchmark, "real") if benchmark else None
    try:
        if bench is not None:
            bench.start()
            _until_api_server_imported(shared_engine.log_path(run_dir, benchmark), bench)
        try:
            started["real"] = engine_server.start_shared(params, run_dir, "real", benchmark or "")
        except (server.ServerError, EngineError) as err:
            errors["real"] = one_line(str(err), 300)
        if bench is not None:
            bench.done.wait()
            if isinstance(bench.error, (server.ServerError, EngineError)):
                errors[benchmark] = one_line(str(bench.error), 300)
            elif bench.error is not None:
                raise bench.error
            else:
                started[benchmark] = bench.result
    except BaseException:  # Ctrl-C while they start: stop what did start (server.start stops the rest)
        ticker.stop()
        for srv, _info in started.values():
            srv.stop(timeout=5.0)
        if bench is not None:
            if bench.done.wait(timeout=30) and bench.result is not None:
                bench.result[0].stop(timeout=5.0)
            bench.release()
        raise
    ticker.stop()
    secs = time.monotonic() - t0
    if "real" in started:
        srv, info = started["real"]
        outcome.shared_engine = {"ok": True, "base_url": info.base_url, "pid": info.pid, "model": info.model,
                                 "command": info.command, "startup_s": info.startup_s, "settings": info.kwargs,
                                 "log": str(Path(info.log).relative_to(run_dir))}
    else:
        outcome.shared_engine = {"ok": False, "error": errors["real"]}
    if benchmark:
        outcome.shared_engine["started_with"] = (
            {"which": benchmark, "ok": True, "startup_s": started[benchmark][1].startup_s,
             "pid": started[benchmark][1].pid} if benchmark in started
            else {"which": benchmark, "ok": False, "error": errors[benchmark]})
    if "real" in started:
        info = started["real"][1]
        parts = [f"{info.base_url} (pid {info.pid}), shared by the chapters"
                 + (f" ({info.startup_s:.1f} s)" if benchmark else "")]
    else:
        parts = [term_safe(errors["real"], 300)]
    if benchmark:
        parts.append(f"the benchmark's ({benchmark}) {started[benchmark][1].startup_s:.1f} s" if benchmark in started
                     else f"the benchmark's ({benchmark}) failed: {term_safe(errors[benchmark], 300)}")
    print(f"{'ready' if 'real' in started else 'failed':<7} {secs:6.1f} s  {'; '.join(parts)}", file=out)
    for which in errors:
        print("         " + ("the chapters start their own engines instead (slower; every start is counted)"
                             if which == "real" else f"{BENCHMARK_CHAPTER} starts its own server instead"), file=out)
    out.flush()
    if bench is not None and benchmark not in started:
        bench.release()
        bench = None
    return {which: srv for which, (srv, _info) in started.items()}, bench


def _stop_benchmark_server(which: str, srv: Any, thread: Optional[_StartInThread], run_dir: Path,
                           timeout: float = 20.0) -> None:
    srv.stop(timeout=timeout)
    if thread is not None:
        thread.release()
    shared_engine.clear(run_dir, which)


class _Progress:
    """While long work runs: the elapsed seconds (a TTY: rewritten in place each second; otherwise every 60 s)."""

    def __init__(self, out: IO[str], prefix: str):
        import threading

        self.out, self.prefix, self.t0 = out, prefix, time.monotonic()
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        period = 1.0 if self.tty else 60.0
        while not self.done.wait(period):
            s = time.monotonic() - self.t0
            try:
                if self.tty:
                    self.out.write(f"\r{self.prefix}{_fmt_total(s)} ")
                else:
                    self.out.write(f"{_fmt_total(s)} … ")
                self.out.flush()
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)
        if self.tty and time.monotonic() - self.t0 >= 1.0:
            try:
                self.out.write(f"\r{self.prefix}")
                self.out.flush()
            except (OSError, ValueError):
                pass


def _update_latest(run_dir: Path) -> None:
    link = run_dir.parent / "latest"
    try:
        if link.is_symlink() or not link.exists():
            tmp = run_dir.parent / f".latest.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(run_dir.name)
            os.replace(tmp, link)
    except OSError:
        pass


def _to_resume(run_dir: Path, planned: list[Path]) -> list[Path]:
    """Chapters of a previous run that did not end ok/skipped (failed, interrupted, never run)."""
    out = []
    for nb in planned:
        try:
            st = R.load(_result_path(run_dir, nb.stem)).status
        except R.ResultsError:
            st = "missing"
        if st not in ("ok", "skipped") or nb.stem == SUMMARY_ID:
            out.append(nb)
    return out


def run(params_path: str | Path, *, run_dir: Optional[str | Path] = None, resume: bool = False,
        only: Optional[Sequence[str]] = None, notebooks_dir: Path = NOTEBOOKS_DIR, runs_dir: Path = RUNS_DIR,
        out: IO[str] = sys.stdout, kernel: Optional[str] = None, check_model: bool = True,
        shared: bool = True, timeout_s: Optional[float] = None, model: Optional[str] = None,
        allow_platform_mismatch: bool = False) -> RunOutcome:
    """Run the chapters a params file selects. Returns the outcome (exit_code: 0 ok, 1 a chapter failed,
    130 interrupted). Raises RunError / ParamsError (one line) when the run cannot start.
    shared: start the run's shared engine before the first chapter that needs one (False: every chapter
    starts its own, as in JupyterLab).

    run_dir: an existing run to re-run chapters into (with `only`, or `resume=True` for the failed ones);
    default a new runs/<timestamp>-<profile>/. model: another model.path (local dir or hub id[@revision]).
    The model is resolved once (engine.hub) and the chapters read the run's own params.yaml.
    The profile's `platform` is checked first (check_platform): a mismatch raises RunError before the model is
    resolved, the shared engine starts or a chapter runs, unless allow_platform_mismatch (recorded in run.json).
    """
    params_path = Path(params_path)
    if not params_path.is_absolute():
        params_path = (Path.cwd() / params_path) if (Path.cwd() / params_path).exists() else PROJECT_ROOT / params_path
    saved = Path(run_dir).resolve() / "params.yaml" if run_dir is not None else None
    rerun = saved is not None and saved.is_file() and (resume or only) and model is None
    # re-running chapters of a run: the model it resolved, the values it used
    params = load_params(saved) if rerun else load_params(params_path)
    if model:
        params = params.with_model(model)
    platform_record = check_platform(params, allow_platform_mismatch)  # before a hub download or any engine
    if not rerun and check_model:
        params = resolve_model(params)
    if check_model:
        check_inputs(params)
    todo = plan(params, notebooks_dir, only)
    if not rerun and any(p.stem == "09_accuracy" for p in todo):  # benchmark datasets: resolved once, like the model
        from bitcpm_validation.engine import datasets as bench_datasets

        params = bench_datasets.with_resolution(params, say=lambda m: print(m, file=out, flush=True))
    if run_dir is None:
        if resume:
            raise RunError("--resume needs a run directory")
        run_dir = Path(runs_dir) / new_run_id(params)
    run_dir = Path(run_dir).resolve()
    if resume and not only:
        if not run_dir.is_dir():
            raise RunError(f"{run_dir}: run directory not found: pass an existing runs/<id>")
        todo = _to_resume(run_dir, todo)
    for sub in ("notebooks", "results", "evidence", "artifacts"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    if not (run_dir / "params.yaml").exists() or model:
        (run_dir / "params.yaml").write_text(params.to_yaml(), encoding="utf-8")  # what the chapters use
        if params.prompts_path.is_file():
            shutil.copyfile(params.prompts_path, run_dir / "prompts.yaml")
    if Path(runs_dir).resolve() == run_dir.parent:
        _update_latest(run_dir)
    os.environ["IPYTHONDIR"] = str(_ipython_dir())
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    processes.become_subreaper()  # orphans of the chapters' kernels are re-parented to us

    started = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    outcome = RunOutcome(run_dir, platform_check=platform_record)
    print(f"run  {run_dir}", file=out)
    print(f"params {params_path}  (profile {params.profile}, {len(todo)} chapter(s))", file=out, flush=True)
    if platform_record["allowed"]:
        print(f"warning: the profile asks for {platform_record['profile']} but this host runs on "
              f"{platform_record['detected']}: going on as --allow-platform-mismatch asks (recorded in run.json; "
              f"page one says so)", file=out, flush=True)
    t_all = time.monotonic()
    n = len(todo)
    pre_existing = processes.descendants()  # never touched: only what the chapters start is stopped
    stop = {"flag": False}
    old_handlers: dict[int, object] = {}

    def _on_signal(signum, frame):  # noqa: ARG001
        # Kill the kernel and everything it started first: papermill may turn the interrupt into a
        # kernel error (then the loop below sees the flag), or hang waiting for a busy kernel otherwise.
        first = not stop["flag"]
        stop["flag"] = True
        if first:
            processes.kill_descendants(grace_s=2.0, keep=pre_existing)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread: keep the defaults
            pass
    current: Optional[Path] = None
    shared_engine.clear(run_dir)  # a previous invocation's files (their servers are gone)
    shared_srv = None
    bench_which, bench_srv, bench_thread = None, None, None  # the benchmark's server (CPU): stopped after its chapter
    warm: Optional[kernels.WarmKernel] = None  # the next chapter's kernel
    want_shared = shared and any(shared_engine.needs_engine(nb) for nb in todo)
    try:
        for i, nb in enumerate(todo, 1):
            current = nb
            if want_shared and shared_srv is None and shared_engine.needs_engine(nb):
                want_shared = False
                bench_which = benchmark_server_weights(params, todo, engine_platform())
                servers, bench_thread = _start_shared(run_dir, params, out, outcome, bench_which)
                shared_srv, bench_srv = servers.get("real"), servers.get(bench_which) if bench_which else None
                for srv in (shared_srv, bench_srv):  # they outlive the chapters: the per-chapter cleanup keeps them
                    if srv is not None:
                        pre_existing |= {srv.pid, *processes.descendants(srv.pid)}
            elif shared_srv is not None and shared_engine.needs_engine(nb) and not _shared_answers(shared_srv, run_dir):
                # a chapter's request killed it (e.g. a device refusing whole-vocabulary logprobs): the later
                # chapters get a new one, never a lost run
                print(f"[shared] the shared engine (pid {shared_srv.pid}) stopped answering: restarting it",
                      file=out, flush=True)
                shared_srv.stop(timeout=5.0)
                shared_srv = _start_shared(run_dir, params, out, outcome)[0].get("real")
                if shared_srv is not None:
                    pre_existing |= {shared_srv.pid, *processes.descendants(shared_srv.pid)}
            ev = run_dir / "evidence" / f"{nb.stem}.log"
            if ev.exists() and ev.stat().st_size:
                ev.replace(ev.with_suffix(".previous.log"))
            km = warm.take() if warm is not None else None  # this chapter's kernel, started during the last one
            warm = None
            if i < n and nb.stem != BENCHMARK_CHAPTER:  # the next one's, while this one runs
                warm = kernels.WarmKernel(todo[i], kernel or kernel_name(), PROJECT_ROOT)
            print(f"[{i:02d}/{n:02d}] {nb.stem:<18} … ", end="", file=out, flush=True)
            ticker = _Progress(out, f"[{i:02d}/{n:02d}] {nb.stem:<18} … ")
            try:
                oc = run_chapter(nb, run_dir, run_dir / "params.yaml", kernel=kernel, timeout_s=timeout_s,
                                 keep=pre_existing | ({warm.pid} if warm is not None and warm.pid else set()), km=km)
            finally:
                ticker.stop()
            if stop["flag"]:
                raise KeyboardInterrupt
            if bench_srv is not None and nb.stem == BENCHMARK_CHAPTER:  # its memory back for the later chapters
                _stop_benchmark_server(bench_which, bench_srv, bench_thread, run_dir)
                bench_srv = None
            outcome.chapters.append(oc)
            tail = f"  {term_safe(oc.error, 160)}" if oc.error else ""
            if oc.status == "skipped":
                try:
                    tail = f"  {term_safe(R.load(_result_path(run_dir, nb.stem)).reason_en, 160)}"
                except R.ResultsError:
                    pass
            print(f"{oc.status:<7} {oc.seconds:6.1f} s  (total {_fmt_total(time.monotonic() - t_all)}){tail}",
                  file=out, flush=True)
            current = None
    except KeyboardInterrupt:
        outcome.interrupted = True
        print(("\n" if current is not None else "") + "interrupted", file=out, flush=True)
        killed = processes.kill_descendants(keep=pre_existing)
        if current is not None:
            _mark(run_dir, current.stem, "failed", "interrupted (Ctrl-C / SIGTERM)", 0.0)
            outcome.chapters.append(ChapterOutcome(current.stem, "failed", 0.0, "interrupted (Ctrl-C / SIGTERM)"))
        print(f"stopped {len(killed)} process(es); resume with: python -m bitcpm_validation run --resume {run_dir}",
              file=out, flush=True)
    finally:
        if warm is not None:
            warm.shutdown()
        if bench_srv is not None:
            _stop_benchmark_server(bench_which, bench_srv, bench_thread, run_dir,
                                   timeout=5.0 if outcome.interrupted else 20.0)
        if shared_srv is not None:
            shared_srv.stop(timeout=5.0 if outcome.interrupted else 20.0)
            shared_engine.clear(run_dir)
            if outcome.interrupted:
                print(f"stopped the shared engine (pid {shared_srv.pid})", file=out, flush=True)
            if outcome.shared_engine is not None:
                outcome.shared_engine["stopped"] = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(
                    timespec="seconds")
        for sig, h in old_handlers.items():
            try:
                signal.signal(sig, h)  # type: ignore[arg-type]
            except ValueError:
                pass
        _write_run_json(run_dir, params, params_path, outcome, started, [p.stem for p in todo])
    failed = outcome.failed
    print(f"done {_fmt_total(time.monotonic() - t_all)}: "
          f"{sum(c.status == 'ok' for c in outcome.chapters)} ok, {len(failed)} failed, "
          f"{sum(c.status == 'skipped' for c in outcome.chapters)} skipped", file=out, flush=True)
    earlier = sorted(set(outcome.run_failed) - {c.chapter for c in failed})
    if earlier:
        print(f"still failed from earlier in this run: {', '.join(earlier)}", file=out, flush=True)
    return outcome
