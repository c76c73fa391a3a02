#!/usr/bin/env python3
"""vLLM's source release, prepared for an Ascend host the way vLLM-Ascend installs it.

vLLM-Ascend's documented procedure builds vLLM from source with VLLM_TARGET_DEVICE=empty (no CUDA
kernels, no torch pin: requirements/common.txt only), then installs vllm-ascend. Where both name a
package, vllm-ascend pins it tighter and has to win (vLLM 0.18.0: `opencv-python-headless>=4.13.0`
against vllm-ascend 0.18.0's `<=4.11.0.86`; upstream's own Dockerfile installs vllm-ascend last).
So that the finished environment passes `pip check`, the prepared source's requirements/common.txt
narrows each such requirement by vllm-ascend's, and takes vllm-ascend's alone where the two cannot both
hold (each change is printed).

    python scripts/vllm_source.py vllm==0.18.0 --dest build/vllm-src --ascend-requires "opencv-python-headless<=4.11.0.86" ...
    VLLM_TARGET_DEVICE=empty pip install build/vllm-src/vllm-0.18.0

Used by scripts/setup_env.sh (PLATFORM=npu) and scripts/check_install.py (the same requirements, resolved).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import threading
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # a fresh venv (the set-up runs this before vLLM brings packaging): pip's own copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import Version

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bitcpm-validation" / "sdists"


class SourceError(RuntimeError):
    pass


def index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def fetch_sdist(spec: str) -> Path:
    """The source release `name==version` from the package index (PEP 691 JSON), cached."""
    name, sep, version = spec.partition("==")
    if not sep:
        raise SourceError(f"{spec!r}: give name==version, e.g. vllm==0.18.0")
    filename = f"{name}-{version}.tar.gz"
    cached = CACHE / filename
    if cached.is_file():
        return cached
    req = urllib.request.Request(f"{index_url()}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
    except OSError as err:
        raise SourceError(f"cannot read {index_url()}/{name}/ ({err}): check the network / PIP_INDEX_URL") from None
    entry = next((f for f in files if f["filename"] == filename), None)
    if entry is None:
        raise SourceError(f"{name} {version} has no source release ({filename}) on {index_url()}")
    with urllib.request.urlopen(entry["url"], timeout=600) as r:
        data = r.read()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.part")  # targets fetch in parallel
    tmp.write_bytes(data)
    tmp.replace(cached)
    return cached


def read_member(sdist: Path, suffix: str) -> str:
    with tarfile.open(sdist, mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(suffix)), None)
        if member is None:
            raise SourceError(f"{sdist.name} has no {suffix}")
        return tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]


def requirement_lines(text: str) -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-")]


def _empty(spec: SpecifierSet) -> bool:
    """True when no version can satisfy spec (a lower bound above an upper bound, or two different ==)."""
    lows = [Version(s.version) for s in spec if s.operator in (">=", ">", "==")]
    highs = [Version(s.version) for s in spec if s.operator in ("<=", "<", "==")]
    if not lows or not highs:
        return False
    lo, hi = max(lows), min(highs)
    strict = any(s.operator in (">", "<") and Version(s.version) in (lo, hi) for s in spec)
    return lo > hi or (lo == hi and strict)


def tighten(common: Iterable[str], ascend_requires: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """vLLM's requirement lines, each narrowed by vllm-ascend's requirement on the same package; where the two
    cannot both hold, vllm-ascend's alone (it wins). Returns (lines, [(vLLM's, the line used)])."""
    theirs: dict[str, Requirement] = {}
    for text in ascend_requires:
        try:
            r = Requirement(text)
        except InvalidRequirement:
            continue
        if r.marker is None:
            theirs[canonicalize_name(r.name)] = r
    out, replaced = [], []
    for line in common:
        ours = Requirement(line)
        other = theirs.get(canonicalize_name(ours.name))
        if other is None or str(other.specifier) == "" or set(other.specifier) <= set(ours.specifier):
            out.append(line)
            continue
        both = ours.specifier & other.specifier
        new = Requirement(str(ours))
        new.specifier = other.specifier if _empty(both) else both
        out.append(str(new))
        replaced.append((line, str(new)))
    return out, replaced


def prepare(spec: str, dest: Path, ascend_requires: list[str]) -> Path:
    """Unpack the source release into dest and write the tightened requirements/common.txt."""
    sdist = fetch_sdist(spec)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, mode="r:gz") as tar:
        tar.extractall(dest, filter="data") if sys.version_info >= (3, 12) else tar.extractall(dest)  # noqa: S202
    root = dest / sdist.name[: -len(".tar.gz")]
    common = root / "requirements" / "common.txt"
    lines, replaced = tighten(requirement_lines(common.read_text(encoding="utf-8")), ascend_requires)
    common.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for old, new in replaced:
        print(f"vllm_source: requirements/common.txt: {old!r} -> {new!r} (vllm-ascend's pin wins)")
    return root


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="vLLM's source release with vllm-ascend's tighter requirements")
    ap.add_argument("spec", help="vllm==VERSION")
    ap.add_argument("--dest", type=Path, required=True, help="folder to unpack into; prints the source root")
    ap.add_argument("--ascend-requires", nargs="*", default=[], help="vllm-ascend's Requires-Dist lines")
    args = ap.parse_args(argv)
    try:
        print(prepare(args.spec, args.dest, args.ascend_requires))
    except SourceError as err:
        print(f"vllm_source: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
