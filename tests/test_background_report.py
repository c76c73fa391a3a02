"""background_report.py: the e2e tests run last, the default report starts in the background only when one of them
is selected, and stopping it leaves no process behind. No test here starts the report (COMMAND is replaced)."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import background_report as BR


def item(name: str, *fixtures: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, fixturenames=["request", *fixtures])


def test_the_tests_that_read_the_report_move_to_the_end_in_their_order():
    items = [item("a"), item("e1", "e2e_run"), item("b", "tmp_path"), item("e2", "project_root", "e2e_run"),
             item("c")]
    assert [i.name for i in BR.e2e_last(items)] == ["a", "b", "c", "e1", "e2"]
    assert [i.name for i in BR.e2e_last(items[:1] + items[2:3])] == ["a", "b"]  # none: unchanged


@pytest.mark.parametrize("names, environ, collect_only, starts", [
    pytest.param(["a", "e"], {}, False, True, id="an-e2e-test-selected"),
    pytest.param(["a", "b"], {}, False, False, id="none-selected"),  # -k, -m "not e2e", one file
    pytest.param(["a", "e"], {"BITCPM_E2E_RUN_DIR": "runs/x"}, False, False, id="a-run-reused"),
    pytest.param(["a", "e"], {"BITCPM_E2E_RUN_DIR": ""}, False, True, id="empty-run-dir-reuses-nothing"),
    pytest.param(["a", "e"], {}, True, False, id="collect-only"),
])
def test_the_report_starts_only_when_a_selected_test_reads_it(names, environ, collect_only, starts):
    items = [item(n, "e2e_run") if n == "e" else item(n) for n in names]
    assert BR.should_start(items, environ, collect_only) is starts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped by its new parent) counts as gone
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


# a stand-in for the report: starts a child in its group, writes its pid, ignores SIGTERM (the worst case for stop)
STUBBORN = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n")


def test_stop_leaves_no_process_of_the_run_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(BR, "COMMAND", (sys.executable, "-c", STUBBORN))
    monkeypatch.setattr(BR, "STOP_GRACE_S", 0.5)
    run = BR.BackgroundRun(tmp_path)
    for _ in range(600):
        if run.log.exists() and run.log.read_text().strip():
            break
        time.sleep(0.05)
    child = int(run.log.read_text())
    assert run.running() and os.getpgid(child) == run.pgid != os.getpgid(0)  # its own session and group
    run.stop()
    assert not run.running() and not _alive(child)
    assert run.result()["rc"] == -1  # stopped before it could write its status


CHECK_NOT_BELOW = """
import sys, time
from pathlib import Path
import psutil
sys.path.insert(0, sys.argv[1])
import background_report as BR
BR.COMMAND = (sys.executable, "-c", "import time; time.sleep(30)")
run = BR.BackgroundRun(Path(sys.argv[2]))
try:
    print(run.running(), run.pgid in {p.pid for p in psutil.Process().children(recursive=True)})
finally:
    run.stop()
"""


def test_the_run_is_no_descendant_of_the_process_that_starts_it(tmp_path):
    """report.runner's clean-up, run in the pytest process by other tests, stops every descendant it did not start.
    Checked in a fresh process, as pytest is at collection end: once a runner test has made pytest a subreaper
    (processes.become_subreaper), an orphan would be re-parented to it again."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", CHECK_NOT_BELOW, str(Path(BR.__file__).parent), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr


def test_result_is_the_run_dir_its_exit_status_and_its_output(tmp_path, monkeypatch):
    script = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(BR, "COMMAND", (sys.executable, "-c", script))
    got = BR.BackgroundRun(tmp_path).result()
    assert got["run_dir"] == tmp_path / "run" and got["rc"] == 3
    assert "to stdout" in got["output"] and "to stderr" in got["output"]
