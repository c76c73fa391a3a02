"""Each platform's engine stack (scripts/pins.env) resolves on the package index for its own platform tags
and Python, without the device (scripts/check_install.py); an unsatisfiable pin is caught. Needs the index
(CI reaches it): marked `index`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.index
# npu on both architectures for each Python vLLM-Ascend v0.18.0 supports (>= 3.10, < 3.12)
TARGETS = ("npu-aarch64-cp310", "npu-aarch64-cp311", "npu-x86_64-cp310", "npu-x86_64-cp311", "cuda", "cpu")


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/check_install.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def all_targets(install_check) -> subprocess.CompletedProcess:
    return install_check("all")  # started in the background when collection ended (conftest.py)


@pytest.mark.parametrize("target", TARGETS)
def test_target_resolves(all_targets, target):
    out, err = all_targets.stdout, all_targets.stderr
    if re.search(rf"^check-install: NOT CHECKED: {target}: .*unreachable", err, re.M):
        assert not re.search(rf"^{target}: ok: ", out, re.M)  # never both "not checked" and "ok"
        pytest.skip(re.search(rf"NOT CHECKED: ({target}: .*)", err).group(1))
    assert not re.search(rf"^check-install: FAIL: {target}:", err, re.M), err[-3000:]
    assert re.search(rf"^{target}: ok: ", out, re.M), out[-3000:] + err[-3000:]
    assert all_targets.returncode in (0, 3)


@pytest.mark.parametrize("python", ["3.10", "3.11"])
def test_npu_follows_the_ascend_procedure(all_targets, python):
    target = f"npu-aarch64-cp{python.replace('.', '')}"
    line = next(ln for ln in all_targets.stdout.splitlines() if ln.startswith(f"{target}: ok:"))
    assert "VLLM_TARGET_DEVICE=empty" in line and "torch-npu 2.9.0" in line and f"(Python {python}, aarch64)" in line
    assert "built on the host from source: arctic-inference" in line


def test_the_targets_cover_both_pythons_and_architectures():
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_install

    known = check_install.targets(check_install.read_pins())
    assert tuple(known) == TARGETS
    assert {(t.arch, t.python) for t in known.values() if t.name.startswith("npu")} == {
        (a, p) for a in ("aarch64", "x86_64") for p in ("3.10", "3.11")}
    assert all(t.extra_index == "https://download.pytorch.org/whl/cpu" for n, t in known.items() if "x86_64" in n)
    assert check_install.select(known, ["npu-x86_64"]) == (["npu-x86_64-cp310", "npu-x86_64-cp311"], [])


def test_a_torch_npu_that_does_not_exist_fails(install_check):
    r = install_check("torch_npu_that_does_not_exist")
    assert r.returncode == 1
    assert "FAIL: npu-aarch64-cp310" in r.stderr and "torch-npu==2.9.99" in r.stderr, r.stderr[-2000:]


def test_the_vllm_wheel_with_torch_2_9_fails(install_check):
    """Yesterday's broken combination: the vllm 0.18.0 wheel declares torch==2.10.0."""
    r = install_check("vllm_wheel_with_torch_2_9")
    assert r.returncode == 1
    assert re.search(r"FAIL: cuda: vllm requires torch==2\.10\.0 but the pin is torch==2\.9\.0", r.stderr), r.stderr[-2000:]


def test_bad_override_is_one_line():
    r = check("--set", "nonsense")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr.strip().splitlines()[-1]
