#!/usr/bin/env bash
# GPU check of the outlook-attention kernel, one script (torch + CUDA + cmake + nvcc; no network,
# no TensorRT): build the kernel library, run the GPU tests, run the benchmark.
# Writes everything to $OUT/gpu_check.log when $OUT is set (else ./gpu_check.log). Budget: < 6 min.
#   bash scripts/gpu_check.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
LOG="${OUT:-$REPO}/gpu_check.log"
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

PY="${PYTHON:-python3}"
BUILD="${VOLO_BUILD_DIR:-${TMPDIR:-/tmp}/volo_outlook_gpu_check}"
export PATH="$PATH:/usr/local/cuda/bin"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
status=0

step() { echo; echo "=== $* ($(date +%T)) ==="; }

step "environment"
nvidia-smi || echo "nvidia-smi failed"
nvcc --version | tail -2 || echo "nvcc not found"
cmake --version | head -1 || echo "cmake not found"
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available(), '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, '| capability', torch.cuda.get_device_capability() if torch.cuda.is_available() else None)" || status=1

step "build kernel library"
ARCH="$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')" 2>/dev/null || echo 90)"
LIB=""
if timeout 240 "$PY" -c "
import sys
from volo_deploy.plugins_native import build_kernel_library
print(build_kernel_library(sys.argv[1], archs=sys.argv[2]))" "$BUILD" "$ARCH"; then
  LIB="$BUILD/libvolo_outlook_kernel.so"
else
  echo "BUILD FAILED"; status=1
fi

step "pytest -m gpu tests/gpu"
if ! timeout 200 "$PY" -m pytest -m gpu tests/gpu -q -rs; then
  echo "GPU TESTS FAILED (rc above)"; status=1
fi

step "CPU host-replay tests (same index code as the kernel)"
if ! timeout 60 "$PY" -m pytest tests/test_plugin_hostref.py -q; then
  echo "HOST REPLAY TESTS FAILED"; status=1
fi

step "benchmark"
BENCH_ARGS=(--iters 100)
if [[ -n "$LIB" ]]; then BENCH_ARGS+=(--lib "$LIB"); fi
if ! timeout 200 "$PY" benchmarks/outlook_kernel.py "${BENCH_ARGS[@]}"; then
  echo "BENCHMARK FAILED"; status=1
fi

step "done: status $status"
exit "$status"
