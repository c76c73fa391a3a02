"""scripts/check_install.py mostly waits on the package index (minutes): the runs the installability tests read
start in the background as soon as collection ends, when an `index` test is selected, so that the wait overlaps
the CPU-bound tests; each test then collects its run's output (`install_check`)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKS = {
    "all": (),  # every target at once (they resolve in parallel)
    "torch_npu_that_does_not_exist": ("npu-aarch64-cp310", "--set", "ASCEND_TORCH_NPU=2.9.99"),
    "vllm_wheel_with_torch_2_9": ("cuda", "--set", "CUDA_VLLM=0.18.0", "--set", "CUDA_TORCH=2.9.0"),
}
_started: dict[str, tuple[subprocess.Popen, object, object]] = {}
_results: dict[str, subprocess.CompletedProcess] = {}


def _start(name: str) -> None:
    if name not in _started:
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # files: a full pipe would block pip
        proc = subprocess.Popen([sys.executable, "scripts/check_install.py", *CHECKS[name]], cwd=ROOT,
                                stdout=out, stderr=err, text=True)
        _started[name] = (proc, out, err)


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("index") for item in session.items):
        for name in CHECKS:
            _start(name)


def pytest_sessionfinish(session):
    for name, (proc, _, _) in _started.items():
        if name not in _results and proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="session")
def install_check():
    """install_check(name) -> the CompletedProcess of CHECKS[name], started in the background or now."""
    def result(name: str, timeout: float = 900) -> subprocess.CompletedProcess:
        if name not in _results:
            _start(name)
            proc, out, err = _started[name]
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            out.seek(0), err.seek(0)
            _results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        return _results[name]
    return result
