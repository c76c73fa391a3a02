"""The default report for the end-to-end tests, started in the background as soon as collection ends (the hooks in
tests/conftest.py), so that its minutes overlap the other tests on the machine's other cores; the tests that read
it (those using the `e2e_run` fixture) run last and wait for it. BITCPM_E2E_RUN_DIR (reuse a run) starts nothing."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
COMMAND = (sys.executable, "-m", "bitcpm_validation", "run", "--params", "params/default.yaml")  # + --run-dir
STOP_GRACE_S = 10.0  # the runner's own clean-up on SIGTERM: its kernel and shared server (2 s + 5 s), run.json


def uses_e2e_run(item) -> bool:
    return "e2e_run" in getattr(item, "fixturenames", ())


def e2e_last(items: list) -> list:
    """The items in their order, every one that uses `e2e_run` moved to the end (both parts keep their order)."""
    return [i for i in items if not uses_e2e_run(i)] + [i for i in items if uses_e2e_run(i)]


def should_start(items, environ, collect_only: bool) -> bool:
    """Start the report at collection end: only when a selected test reads it, no run is reused, tests will run."""
    return not collect_only and not environ.get("BITCPM_E2E_RUN_DIR") and any(uses_e2e_run(i) for i in items)


# Starts `sh -c '<run> > log 2>&1; echo $? > rc'` in a session of its own and exits at once, printing the shell's
# pid: the run is then no descendant of the pytest process. It must not be one: tests call report.runner.run in
# that process, whose per-chapter clean-up stops every process below it that the chapter did not start (a
# report running beside them lost a chapter's kernel and its benchmark that way). Started at collection end,
# before any such test has made pytest a subreaper (processes.become_subreaper), to which the orphaned shell
# would otherwise be re-parented.
LAUNCH = ("import subprocess, sys\n"
          "cmd, log, rc = sys.argv[1:4]\n"
          "p = subprocess.Popen(['/bin/sh', '-c', cmd + ' > \"$0\" 2>&1 < /dev/null; echo $? > \"$1\"', log, rc],\n"
          "                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,\n"
          "                     stderr=subprocess.DEVNULL)\n"
          "print(p.pid)\n")


class BackgroundRun:
    """`COMMAND --run-dir <base>/run`, output (stdout and stderr) in <base>/output.log, its exit status in
    <base>/rc: started by a launcher that leaves it behind (LAUNCH), in a session of its own (`pgid`), so that
    `stop` reaches everything it started and a Ctrl-C meant for pytest reaches pytest alone."""

    def __init__(self, base: Path):
        self.run_dir = base / "run"
        self.log = base / "output.log"
        self.rc_file = base / "rc"
        self.deadline = time.monotonic() + int(os.environ.get("BITCPM_E2E_TIMEOUT", "5400"))
        cmd = shlex.join([*COMMAND, "--run-dir", str(self.run_dir)])
        out = subprocess.run([sys.executable, "-c", LAUNCH, cmd, str(self.log), str(self.rc_file)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        self.pgid = int(out.stdout)

    def running(self) -> bool:
        """Whether a process of its group is left (a zombie of it counts as gone)."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == self.pgid:
                return True
        return False

    def returncode(self) -> Optional[int]:
        try:
            return int(self.rc_file.read_text())
        except (OSError, ValueError):
            return None

    def result(self) -> dict:
        """Wait for the run (until BITCPM_E2E_TIMEOUT seconds after its start): {"run_dir", "rc", "output"};
        rc -1 when it was stopped before it could write its status."""
        while self.returncode() is None and self.running():
            if time.monotonic() > self.deadline:
                self.stop()
                raise subprocess.TimeoutExpired(COMMAND, int(os.environ.get("BITCPM_E2E_TIMEOUT", "5400")))
            time.sleep(1.0)
        rc = self.returncode()
        return {"run_dir": self.run_dir, "rc": -1 if rc is None else rc,
                "output": self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""}

    def stop(self) -> None:
        """If it still runs: SIGTERM to its process group (the runner then stops what it started), STOP_GRACE_S,
        then SIGKILL to whatever of the group is left."""
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        t0 = time.monotonic()
        while self.running() and time.monotonic() - t0 < STOP_GRACE_S:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        t0 = time.monotonic()
        while self.running() and time.monotonic() - t0 < 5.0:
            time.sleep(0.05)
