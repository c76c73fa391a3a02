#!/usr/bin/env python3
"""What scripts/setup_env.sh checks before any pip work, each failure as one line naming the fix.

    python scripts/preflight.py python [3.10] --platform npu [--venv .venv]   # this Python (or the one given) fits?
    python scripts/preflight.py build-tools                                  # tools to build arctic-inference?

`python`: on npu the Python must be one of ASCEND_PYTHONS (scripts/pins.env; vLLM-Ascend v0.18.0's
installation guide, docs/source/installation.md: ">= 3.10, < 3.12"), elsewhere >= PYTHON_MIN. The version is
the running interpreter's unless given, so the set-up can ask about the one its environment reports.
Written for any Python 3 (it has to run on the Python it rejects).

`build-tools`: vllm-ascend 0.18.0 requires arctic-inference==0.1.1, which the index has only as source; its
csrc/suffix_decoding/CMakeLists.txt needs CMake >= 3.18 with CMAKE_CXX_STANDARD 20, a C++20 compiler and
Python's development headers (find_package(Python ... Development.Module)); vLLM-Ascend's guide installs
`gcc g++ cmake libnuma-dev` for the same step. Overrides: --python-include / BITCPM_PYTHON_INCLUDE (where
Python.h should be), --include-dir / BITCPM_SYSTEM_INCLUDE (colon-separated: where numa.h should be).

Exit status 0 when fine, 1 with one line on stderr when not.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig

PINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pins.env")
CMAKE_MIN = (3, 18)  # arctic-inference 0.1.1: csrc/suffix_decoding/CMakeLists.txt cmake_minimum_required(VERSION 3.18)
# apt package -> yum/dnf package (openEuler: vLLM-Ascend's guide gives `yum install gcc g++ cmake numactl-devel`)
YUM_NAMES = {"gcc": "gcc", "g++": "gcc-c++", "cmake": "cmake", "libnuma-dev": "numactl-devel"}


def read_pins(path=PINS):
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                pins[key.strip()] = value.strip()
    return pins


def major_minor(text):
    m = re.match(r"^(\d+)\.(\d+)", text.strip())
    if not m:
        raise ValueError("not a Python version: %r (give e.g. 3.11)" % text)
    return int(m.group(1)), int(m.group(2))


def accepted_pythons(pins, platform):
    """(accepted 'X.Y' list or None for 'any >= minimum', the minimum 'X.Y')."""
    if platform == "npu":
        return [v.strip() for v in pins["ASCEND_PYTHONS"].split(",") if v.strip()], None
    return None, pins.get("PYTHON_MIN", "3.10")


def python_problem(version, platform, pins, venv=None):
    """None when `version` fits `platform`; else the one line that says what to do."""
    mm = major_minor(version)
    accepted, minimum = accepted_pythons(pins, platform)
    where = "%s has Python %d.%d" % (venv, mm[0], mm[1]) if venv else "Python %d.%d" % mm
    if accepted is not None:
        if mm in [major_minor(v) for v in accepted]:
            return None
        names = " or ".join(accepted)
        return ("%s; the Ascend stack (vllm-ascend %s, torch-npu %s) needs Python %s (vLLM-Ascend's guide: >= 3.10, "
                "< 3.12): %sthen make setup PYTHON=python%s (or conda env create -f environment.yml)"
                % (where, pins.get("ASCEND_VLLM_ASCEND", "?"), pins.get("ASCEND_TORCH_NPU", "?"), names,
                   "remove %s, " % venv if venv else "install it, ", accepted[0]))
    if mm >= major_minor(minimum):
        return None
    return "%s; need >= %s: %spass PYTHON=/path/to/python3 (>= %s)" % (
        where, minimum, "remove %s and " % venv if venv else "", minimum)


def _version_of(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out or "")
    return tuple(int(x or 0) for x in m.groups()) if m else None


def _accepts_cxx20(cxx):
    try:
        p = subprocess.run([cxx, "-std=c++20", "-fsyntax-only", "-x", "c++", "-"], input="int main() { return 0; }\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        return p.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def build_tool_problems(python_include, include_dirs, which=shutil.which):
    """[(what is missing, apt package)] for building arctic-inference here."""
    missing = []
    if not which("gcc"):
        missing.append(("gcc", "gcc"))
    cxx = which("g++")
    if not cxx:
        missing.append(("g++", "g++"))
    elif not _accepts_cxx20(cxx):
        missing.append(("a g++ that accepts -std=c++20 (GCC >= 10)", "g++"))
    cmake = which("cmake")
    got = _version_of([cmake, "--version"]) if cmake else None
    if not cmake or got is None or got[:2] < CMAKE_MIN:
        missing.append(("cmake >= %d.%d%s" % (CMAKE_MIN + ((" (found %d.%d)" % got[:2]) if got else "",)), "cmake"))
    if not os.path.isfile(os.path.join(python_include, "Python.h")):
        missing.append(("Python.h in %s (Python's development headers)" % python_include,
                        "python%d.%d-dev" % sys.version_info[:2]))
    if not any(os.path.isfile(os.path.join(d, "numa.h")) for d in include_dirs):
        missing.append(("numa.h (libnuma)", "libnuma-dev"))
    return missing


def install_line(packages, which=shutil.which):
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    if not which("apt-get") and (which("dnf") or which("yum")):
        names = [YUM_NAMES.get(p, "python3-devel" if p.startswith("python") else p) for p in packages]
        return "%s%s install -y %s" % (sudo, "dnf" if which("dnf") else "yum", " ".join(dict.fromkeys(names)))
    return "%sapt-get install -y %s" % (sudo, " ".join(dict.fromkeys(packages)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what")
    py = sub.add_parser("python", help="does this Python (or VERSION) fit the platform?")
    py.add_argument("version", nargs="?", default="%d.%d" % sys.version_info[:2])
    py.add_argument("--platform", default="cpu", choices=["cpu", "cuda", "npu"])
    py.add_argument("--venv", help="the environment it is in (named in the fix)")
    bt = sub.add_parser("build-tools", help="can arctic-inference be built from source here?")
    bt.add_argument("--python-include", default=os.environ.get("BITCPM_PYTHON_INCLUDE")
                    or sysconfig.get_paths()["include"])
    bt.add_argument("--include-dir", action="append",
                    default=[d for d in os.environ.get("BITCPM_SYSTEM_INCLUDE", "").split(":") if d] or None)
    args = ap.parse_args(argv)
    pins = read_pins()
    if args.what == "python":
        try:
            problem = python_problem(args.version, args.platform, pins, args.venv)
        except ValueError as err:
            problem = str(err)
    elif args.what == "build-tools":
        dirs = args.include_dir or ["/usr/include", "/usr/local/include"]
        missing = build_tool_problems(args.python_include, dirs)
        problem = None if not missing else (
            "building arctic-inference (required by vllm-ascend, source-only on the index) needs %s: run `%s`, then "
            "make setup again" % (", ".join(m for m, _ in missing), install_line([p for _, p in missing])))
    else:
        ap.error("say what to check: python or build-tools")
    if problem:
        print("setup: error: " + problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
