#!/usr/bin/env bash
# Print the engine platform of this host: npu | cuda | cpu. PLATFORM=... overrides.
set -euo pipefail
case "${PLATFORM:-}" in
  cpu|cuda|npu) echo "$PLATFORM"; exit 0 ;;
  ""|auto) ;;
  *) echo "detect_platform: PLATFORM must be cpu, cuda or npu (got '$PLATFORM')" >&2; exit 2 ;;
esac
if command -v npu-smi >/dev/null 2>&1 || [ -d /usr/local/Ascend/ascend-toolkit ] || [ -d /usr/local/Ascend/driver ]; then
  echo npu
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo cuda
else
  echo cpu
fi
