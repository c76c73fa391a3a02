"""scripts/setup_env.sh in a prepared Ascend environment (vLLM-Ascend's image, a conda env that imports
vllm_ascend), simulated here: a throwaway venv whose site-packages hold tiny stand-ins for vllm_ascend / vllm /
torch and an image-style `pip check` conflict (vllm-ascend's `opencv-python-headless<=4.11.0.86` beside a 4.13
build). The set-up must accept that conflict and record it for the environment chapter, and stop on one its own
install introduces. No package index: pip installs only wheels this test builds (--no-index); the project is a
stand-in wheel (SETUP_PROJECT_SPEC). Also: the Python version rule (3.10 and 3.11 on npu) and the build-tool
check for arctic-inference, each failing with its one line."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from bitcpm_validation.chapters import environment as E

ROOT = Path(__file__).resolve().parents[1]
IMAGE_CONFLICT = ("vllm-ascend 0.18.0 has requirement opencv-python-headless<=4.11.0.86, but you have "
                  "opencv-python-headless 4.13.0.92.")


def metadata(name: str, version: str, requires: list[str]) -> str:
    return "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])


def write_wheel(folder: Path, name: str, version: str, requires: list[str] = (), files: dict[str, str] = None) -> Path:
    """A minimal pure-Python wheel (what pip needs: METADATA, WHEEL, RECORD)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = dict(files or {})
    members[f"{info}/METADATA"] = metadata(name, version, list(requires))
    members[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    members[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, text in members.items():
            z.writestr(path, text)
    return out


def fake_installed(site: Path, name: str, version: str, requires: list[str] = (), files: dict[str, str] = None) -> None:
    """A distribution as the image has it (written straight into site-packages, as a prepared image would)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(metadata(name, version, list(requires)))
    for path, text in (files or {}).items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A venv with pip and nothing else (made once; each test copies it)."""
    prefix = tmp_path_factory.mktemp("template") / "env"
    venv.EnvBuilder(with_pip=True, symlinks=True).create(prefix)
    return prefix


def site_packages(prefix: Path) -> Path:
    return next((prefix / "lib").glob("python3*/site-packages"))


@pytest.fixture
def prepared(tmp_path, template) -> Path:
    """The simulated vLLM-Ascend image: vllm_ascend imports, and pip check reports the image's own conflict."""
    prefix = tmp_path / "image-env"
    shutil.copytree(template, prefix, symlinks=True)
    site = site_packages(prefix)
    fake_installed(site, "vllm-ascend", "0.18.0", ["opencv-python-headless<=4.11.0.86"],
                   {"vllm_ascend/__init__.py": ""})
    fake_installed(site, "opencv-python-headless", "4.13.0.92")
    fake_installed(site, "vllm", "0.18.0", ["transformers<5,>=4.56.0"], {"vllm/__init__.py": ""})
    fake_installed(site, "torch", "2.9.0", [], {"torch/__init__.py": "__version__ = '2.9.0'\n"})
    # the kernel registration step: a stand-in `python -m ipykernel install` that succeeds
    fake_installed(site, "ipykernel", "6.0.0", [], {"ipykernel/__init__.py": "", "ipykernel/__main__.py": ""})
    wheels = tmp_path / "wheels"
    for v in ("4.57.0", "5.0.0"):
        write_wheel(wheels, "transformers", v, files={"transformers/__init__.py": f"__version__ = '{v}'\n"})
    subprocess.run([str(prefix / "bin/python"), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                    "transformers==4.57.0"], check=True, env=pip_env(tmp_path))
    return prefix


def pip_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(tmp_path / "wheels"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def project_wheel(tmp_path: Path, requires: list[str]) -> Path:
    """A stand-in for the project's install (the real one needs the index)."""
    return write_wheel(tmp_path / "wheels", "bitcpm-validation", "0.1.0", requires, {
        "bitcpm_validation/__init__.py": "", "bitcpm_validation/engine/__init__.py": "",
        "bitcpm_validation/engine/vllm_cpu_alias.py": ""})


def run_setup(tmp_path: Path, prefix: Path, project: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**pip_env(tmp_path), "VENV": str(prefix), "PLATFORM": "npu", "SKIP_DEB_PACKAGES": "1",
           "ASCEND_TOOLKIT_HOME": str(tmp_path / "toolkit"), "ATB_HOME_PATH": str(tmp_path / "atb"),
           "SETUP_PROJECT_SPEC": str(project), **extra}
    return subprocess.run(["bash", "scripts/setup_env.sh"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_images_own_conflict_is_kept_as_a_note(tmp_path, prepared):
    r = run_setup(tmp_path, prepared, project_wheel(tmp_path, []))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reusing the prepared environment" in r.stdout and "only the project is installed" in r.stdout
    assert "no new conflict" in r.stdout and "setup: ok:" in r.stdout, r.stdout
    # recorded where the environment chapter reads it (under the environment's prefix)
    assert E.preexisting_conflicts(str(prepared)) == [IMAGE_CONFLICT]
    # a second run (nothing to install) accepts it again and keeps the note
    again = run_setup(tmp_path, prepared, project_wheel(tmp_path, []))
    assert again.returncode == 0, again.stderr
    assert E.preexisting_conflicts(str(prepared)) == [IMAGE_CONFLICT]


def test_a_conflict_the_project_install_introduces_stops_it(tmp_path, prepared):
    # the project needs transformers>=5: pip upgrades it and breaks the image's vllm (transformers<5)
    r = run_setup(tmp_path, prepared, project_wheel(tmp_path, ["transformers>=5"]))
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("setup: error: pip check: the set-up introduced the conflicts above"), r.stderr
    # what pip check reports after the install (pip's own warning during the install precedes it)
    assert err[-2] == "vllm 0.18.0 has requirement transformers<5,>=4.56.0, but you have transformers 5.0.0."
    assert IMAGE_CONFLICT not in r.stderr  # the image's own is not blamed on the set-up
    # a re-run does not take the set-up's conflict for the environment's own: the first record holds
    again = run_setup(tmp_path, prepared, project_wheel(tmp_path, ["transformers>=5"]))
    assert again.returncode != 0 and "transformers 5.0.0" in again.stderr


def test_a_venv_the_setup_made_has_no_preexisting_conflicts(tmp_path, prepared):
    """Every conflict in a venv the set-up created is its own (the marker it leaves there)."""
    marker = prepared / "share/bitcpm-validation/created-by-setup"
    marker.parent.mkdir(parents=True)
    marker.touch()
    r = run_setup(tmp_path, prepared, project_wheel(tmp_path, []))
    assert r.returncode != 0 and IMAGE_CONFLICT in r.stderr, r.stderr


# -- Python version ------------------------------------------------------------------------------------------
def preflight(*args: str, env: dict[str, str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/preflight.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.11.9"])
def test_npu_accepts_python_3_10_and_3_11(version):
    r = preflight("python", version, "--platform", "npu")
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.13"])
def test_npu_refuses_other_pythons_in_one_line(version):
    r = preflight("python", version, "--platform", "npu", "--venv", ".venv")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f".venv has Python {version}" in r.stderr and "3.11 or 3.10" in r.stderr
    assert "make setup PYTHON=python3.11" in r.stderr


def test_cpu_accepts_any_python_from_the_minimum():
    assert preflight("python", "3.12", "--platform", "cpu").returncode == 0
    r = preflight("python", "3.9", "--platform", "cpu")
    assert r.returncode == 1 and "need >= 3.10" in r.stderr


def wrapper(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def fresh_env(tmp_path: Path, template: Path) -> Path:
    prefix = tmp_path / "fresh"
    shutil.copytree(template, prefix, symlinks=True)
    return prefix


def ascend_env(tmp_path: Path, prefix: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VENV": str(prefix), "SKIP_DEB_PACKAGES": "1",
            "PLATFORM": "npu", "ASCEND_TOOLKIT_HOME": str(tmp_path), "ATB_HOME_PATH": str(tmp_path),
            "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, **extra}


def setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/setup_env.sh"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("reports", ["3.10", "3.12"])
def test_setup_takes_3_10_and_refuses_3_12(tmp_path, template, reports):
    """The set-up asks its environment's Python for the version (here one that says `reports`): 3.10 passes the
    check and goes on to the fresh install's first step (the build-tool check, made to fail before any pip work)."""
    real = fresh_env(tmp_path, template)
    prefix = tmp_path / "env"
    wrapper(prefix / "bin/python", f'case "$2" in *version_info*) echo {reports}; exit 0;; esac\n'
                                   f'exec {real}/bin/python "$@"\n')
    r = setup(ascend_env(tmp_path, prefix, BITCPM_PYTHON_INCLUDE=str(tmp_path / "no-headers")))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if reports == "3.10":
        assert "building arctic-inference" in r.stderr, r.stderr
    else:
        assert "has Python 3.12" in r.stderr and "needs Python 3.11 or 3.10" in r.stderr, r.stderr


def test_new_venv_python_is_chosen_by_the_version_rule(tmp_path):
    """No PYTHON on npu: python3.11, else python3.10, else python3 if it fits. Here python3.11 is absent, python3
    says 3.12 and python3.10 says 3.10: python3.10 makes the venv. Without python3.10: one line naming the fix."""
    bin_dir = tmp_path / "bin"
    for tool in ("bash", "dirname", "cat", "sed"):  # nothing else on PATH: no python3.11 of this host
        (bin_dir / tool).parent.mkdir(exist_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "used"
    for name, version in (("python3", "3.12"), ("python3.10", "3.10")):
        wrapper(bin_dir / name, f'case "$1" in *preflight.py) exec {sys.executable} "$@" {version};; esac\n'
                                f'echo "{name} $*" >> {log}; exit 1\n')  # stands in for `-m venv`: record, stop
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VENV": str(tmp_path / "new"), "SKIP_DEB_PACKAGES": "1",
           "PLATFORM": "npu", "ASCEND_TOOLKIT_HOME": str(tmp_path), "ATB_HOME_PATH": str(tmp_path)}
    r = setup(env)
    assert r.returncode != 0 and f"python3.10 -m venv {tmp_path / 'new'}" in log.read_text().splitlines(), r.stderr
    (bin_dir / "python3.10").unlink()
    r = setup(env)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no Python 3.11 or 3.10 found" in r.stderr
    assert "apt-get install -y python3.11 python3.11-venv python3.11-dev" in r.stderr


# -- build tools for arctic-inference ------------------------------------------------------------------------------
def test_build_tools_missing_headers_is_one_apt_line(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc/numa.h").write_text("")
    r = preflight("build-tools", "--python-include", str(tmp_path / "no-headers"), "--include-dir", str(tmp_path / "inc"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    v = "%d.%d" % sys.version_info[:2]
    assert f"Python.h in {tmp_path / 'no-headers'}" in r.stderr and f"apt-get install -y python{v}-dev`" in r.stderr
    assert "numa.h" not in r.stderr.split("run `")[0].replace(str(tmp_path / "no-headers"), "")


def test_build_tools_names_each_missing_tool(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("preflight", ROOT / "scripts/preflight.py")
    pf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pf)
    (tmp_path / "Python.h").write_text("")
    (tmp_path / "numa.h").write_text("")
    missing = pf.build_tool_problems(str(tmp_path), [str(tmp_path)], which=lambda name: None)
    assert [p for _, p in missing] == ["gcc", "g++", "cmake"]
    assert pf.install_line(["gcc", "g++", "cmake", "libnuma-dev"], which=lambda n: "/usr/bin/yum" if n == "yum" else None) \
        .endswith("yum install -y gcc gcc-c++ cmake numactl-devel")
    old_cmake = tmp_path / "cmake"
    old_cmake.write_text("#!/bin/sh\necho 'cmake version 3.16.3'\n")
    old_cmake.chmod(0o755)
    real = shutil.which
    missing = pf.build_tool_problems(str(tmp_path), [str(tmp_path)],
                                     which=lambda n: str(old_cmake) if n == "cmake" else real(n))
    assert ("cmake >= 3.18 (found 3.16)", "cmake") in missing


def test_setup_checks_build_tools_before_any_pip_work(tmp_path, template):
    """A fresh Ascend venv (no vllm_ascend in it) without Python's headers stops at once, with the apt line."""
    prefix = fresh_env(tmp_path, template)
    r = setup(ascend_env(tmp_path, prefix, BITCPM_PYTHON_INCLUDE=str(tmp_path / "no-headers")))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    v = "%d.%d" % sys.version_info[:2]
    assert "building arctic-inference" in r.stderr and f"python{v}-dev" in r.stderr and "apt-get install -y" in r.stderr
    assert "torch " not in r.stdout, r.stdout  # no install step was reached
