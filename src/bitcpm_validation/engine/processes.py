"""Child processes that never outlive the report: servers, benchmark runners, chapter kernels.

One place for the Linux process controls the engine, the benchmarks and the runner use:

- `die_with_parent` (preexec_fn): the child gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
  killed report leaves no server behind;
- `become_subreaper`: orphans of the runner's chapters (an engine a kernel forgot to stop) are re-parented to
  the runner, which can then reap them (PR_SET_CHILD_SUBREAPER);
- `kill_group`: a signal to a child's whole process group (its own session: engine workers included).

Off Linux (no prctl) the first two do nothing and the other safeguards (process groups, psutil) remain.
"""
from __future__ import annotations

import contextlib
import os
import signal

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
