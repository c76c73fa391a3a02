"""Child processes that never outlive the report: servers, benchmark runners, chapter kernels.

One place for the Linux process controls the engine, the benchmarks and the runner use:

- `die_with_parent` (preexec_fn): the child gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
  killed report leaves no server behind;
- `become_subreaper`: orphans of the runner's chapters (an engine a kernel forgot to stop) are re-parented to
  the runner, which can then reap them (PR_SET_CHILD_SUBREAPER);
- `kill_group`: a signal to a child's whole process group (its own session: engine workers included);
- `descendants`, `kill_descendants`: what a chapter started below the runner, and stopping it afterwards;
- `stop_tree`: a server and everything below it (and the shared memory of what it had to kill);
- `on_exit_and_termination`: a clean-up that runs at exit and on SIGTERM / SIGHUP (the servers' own).

Off Linux (no prctl) the first two do nothing and the other safeguards (process groups, psutil) remain.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
from typing import Callable, Iterable, Optional

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except Exception:  # noqa: BLE001 - not Linux / no glibc
        return None


PRCTL = _load_prctl()  # resolved at import, never in a forked child (die_with_parent must stay minimal)


def die_with_parent() -> None:
    """preexec_fn: runs in the child between fork and exec; SIGTERM when the parent dies."""
    if PRCTL is not None:
        PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def become_subreaper() -> None:
    if PRCTL is not None:
        with contextlib.suppress(Exception):
            PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group; a group that is already gone (or not ours) is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def descendants(pid: Optional[int] = None) -> set[int]:
    """Pids of every live process below `pid` (None: this process); empty when it is gone."""
    try:
        import psutil

        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except Exception:  # noqa: BLE001  (psutil missing, process gone)
        return set()


def kill_descendants(grace_s: float = 5.0, keep: frozenset[int] | set[int] = frozenset()) -> list[int]:
    """Terminate every process started below this one (kernel, engine workers, servers), except the pids in
    `keep` (what already ran before the chapter, e.g. a caller's own servers) and their process groups.
    Exited ones are reaped. Returns the pids of the processes that were still running."""
    try:
        import psutil
    except ImportError:
        return []
    me = psutil.Process()
    own_pgid = os.getpgid(0)
    kept_groups = set()
    for pid in keep:
        try:
            kept_groups.add(os.getpgid(pid))
        except OSError:
            pass
    kept_groups.discard(own_pgid)  # a kept pid in our own group must not protect the chapter's processes
    procs, zombies = [], []
    for p in me.children(recursive=True):
        if p.pid in keep:
            continue
        try:
            if os.getpgid(p.pid) in kept_groups and p.status() != psutil.STATUS_ZOMBIE:
                continue  # e.g. the shared server's engine workers (started in its own session)
            (zombies if p.status() == psutil.STATUS_ZOMBIE else procs).append(p)
        except (psutil.Error, OSError):
            pass
    _reap([p.pid for p in zombies])
    if not procs:
        return []
    groups = set()
    for p in procs:
        try:
            g = os.getpgid(p.pid)
            if g != own_pgid and g not in kept_groups:
                groups.add(g)
        except OSError:
            pass
    for g in groups:
        kill_group(g, signal.SIGTERM)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for g in groups:
        kill_group(g)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    _reap([p.pid for p in procs])
    return [p.pid for p in procs]


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of these (orphans re-parented to us as a subreaper); never other children."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def stop_tree(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a child started in its own session (a server) and everything below it: SIGTERM (graceful: vLLM's API
    server shuts its engine processes down), SIGKILL to its group after `timeout` (at once on Ctrl-C), then any
    descendant that changed its group and still runs. The /dev/shm files the killed processes had mapped are
    removed: a SIGKILL also kills the resource tracker that would have unlinked them (vLLM's message-queue rings)."""
    below = []
    with contextlib.suppress(Exception):
        import psutil

        below = psutil.Process(proc.pid).children(recursive=True)
    shm: set[str] = set()
    if proc.poll() is None:
        # graceful: the API server shuts its own engine processes down on SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(Exception):  # what it started during the grace (the engine's workers)
                below = list({p.pid: p for p in below + psutil.Process(proc.pid).children(recursive=True)}.values())
            shm = shm_files([proc.pid, *(p.pid for p in below)])
            kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        except BaseException:  # Ctrl-C while waiting: no mercy
            kill_group(proc.pid)
            raise
    # the group is gone; kill any descendant that changed its group (or outlived the server) and still runs
    running = []
    for p in below:
        with contextlib.suppress(Exception):
            if p.is_running():
                running.append(p)
    shm |= shm_files([p.pid for p in running])
    kill_group(proc.pid)
    for p in running:
        with contextlib.suppress(Exception):
            p.kill()
    with contextlib.suppress(Exception):
        import psutil

        psutil.wait_procs(below, timeout=5)
    for path in shm:
        with contextlib.suppress(OSError):
            os.unlink(path)


def shm_files(pids: Iterable[int]) -> set[str]:
    """The /dev/shm files (shared memory, named semaphores) these processes have mapped and not yet unlinked;
    empty off Linux or for processes already gone."""
    out = set()
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/dev/shm/") and not fields[5].endswith(" (deleted)"):
                    out.add(fields[5])
    return out


def on_exit_and_termination(callback: Callable[[], None]) -> None:
    """Run `callback` at interpreter exit (atexit) and on SIGTERM / SIGHUP, then behave as before: the previous
    handler, or the default action (the signal re-raised with the default handler). Signals only from the main
    thread (Python's rule); atexit always."""
    atexit.register(callback)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        prev = signal.getsignal(signum)

        def handler(sig, frame, _prev=prev):
            callback()
            if callable(_prev):
                _prev(sig, frame)
            elif _prev == signal.SIG_IGN:
                return
            else:
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        with contextlib.suppress(Exception):
            signal.signal(signum, handler)
