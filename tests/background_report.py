"""The default report for the end-to-end tests, started in the background as soon as collection ends (the hooks in
tests/conftest.py), so that its minutes overlap the other tests on the machine's other cores; the tests that read
it (those using the `e2e_run` fixture) run last and wait for it. BITCPM_E2E_RUN_DIR (reuse a run) starts nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


class BackgroundRun:
    """`COMMAND --run-dir <base>/run`, output (stdout and stderr) in <base>/output.log: a file, since a full pipe
    would block the report. Its own session, so that `stop` reaches everything it started and a Ctrl-C meant for
    pytest reaches pytest alone."""

    def __init__(self, base: Path):
        self.run_dir = base / "run"
        self.log = base / "output.log"
        self.deadline = time.monotonic() + int(os.environ.get("BITCPM_E2E_TIMEOUT", "5400"))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([*COMMAND, "--run-dir", str(self.run_dir)], cwd=ROOT,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def result(self) -> dict:
        """Wait for the run (until BITCPM_E2E_TIMEOUT seconds after its start): {"run_dir", "rc", "output"}."""
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return {"run_dir": self.run_dir, "rc": self.proc.returncode,
                "output": self.log.read_text(encoding="utf-8", errors="replace")}

    def stop(self) -> None:
        """If it still runs: SIGTERM to its process group (the runner then stops what it started), STOP_GRACE_S,
        then SIGKILL to whatever of the group is left."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_GRACE_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
