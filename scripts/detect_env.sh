#!/usr/bin/env bash
# Print the environment prefix the project installs into and runs from (make's VENV):
#   VENV if given; else an activated conda env that is the project's (environment.yml: bitcpm-validation) or
#   already imports vllm_ascend; else, when there is no .venv yet, a system Python that imports vllm_ascend
#   (the vllm-ascend container); else .venv.
set -euo pipefail
if [ -n "${VENV:-}" ]; then echo "$VENV"; exit 0; fi
has_ascend() { "$1" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm_ascend') is None)" >/dev/null 2>&1; }
if [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
  if [ "${CONDA_DEFAULT_ENV:-}" = bitcpm-validation ] || has_ascend "$CONDA_PREFIX/bin/python"; then
    echo "$CONDA_PREFIX"; exit 0
  fi
fi
if [ ! -d .venv ] && command -v python3 >/dev/null 2>&1 && has_ascend python3; then
  python3 -c "import sys; print(sys.prefix)"; exit 0
fi
echo .venv
