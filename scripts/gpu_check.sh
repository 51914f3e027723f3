#!/usr/bin/env bash
# GPU check of the outlook-attention kernel and its PyTorch op, one script (torch + CUDA + cmake + nvcc;
# no network, no TensorRT). Budget: under 8 minutes on an H200 (typical ~6; every step has a timeout).
#   1. build the kernel library for this GPU        4. static SASS estimate (when cuobjdump is present)
#   2. GPU tests (kernel vs float64 and CPU replay, 5. core benchmark: ours / eager / torch.compile,
#      the op, the fused model, torch backend fp16)    graph-timed over inputs >= 4x L2, vs roofline
#   3. CPU host-replay tests                         6. D1 end to end img/s, batch 64 FP16: eager (timm's
#                                                       code), compile, fused, fused + compile
# Everything goes to $OUT (default ./gpu_check_out): gpu_check.log, one log per step, e2e.json, summary.txt.
#   bash scripts/gpu_check.sh
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUTDIR="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUTDIR"
exec > >(tee "$OUTDIR/gpu_check.log") 2>&1

PY="${PYTHON:-python3}"
BUILD="${VOLO_BUILD_DIR:-${TMPDIR:-/tmp}/volo_outlook_gpu_check}"
export PATH="$PATH:/usr/local/cuda/bin"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$BUILD/cache}"
status=0

step() { echo; echo "=== $* ($(date +%T)) ==="; }
# run NAME SECONDS CMD...: one step, its own log, failure recorded (the script goes on)
run() {
  local name="$1" secs="$2"; shift 2
  if ! timeout "$secs" "$@" 2>&1 | tee "$OUTDIR/$name.log"; then
    echo "STEP $name FAILED (or timed out after ${secs}s)"; status=1
  fi
}

step "environment"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
nvcc --version | tail -2 || echo "nvcc not found"
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available(), '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, '| capability', torch.cuda.get_device_capability() if torch.cuda.is_available() else None)" || status=1

step "1. build kernel library"
ARCH="$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')" 2>/dev/null || echo 90)"
LIB=""
run build 180 "$PY" -c "
import sys
from volo_deploy.plugins_native import build_kernel_library
print(build_kernel_library(sys.argv[1], archs=sys.argv[2]))" "$BUILD" "$ARCH"
if [[ -f "$BUILD/libvolo_outlook_kernel.so" ]]; then
  LIB="$BUILD/libvolo_outlook_kernel.so"
  export VOLO_OUTLOOK_KERNEL_LIB="$LIB"   # the torch op uses this build (no second nvcc run)
fi

step "2. pytest -m gpu tests/gpu"
run gpu_tests 180 "$PY" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider

step "3. CPU host-replay tests (same index code as the kernel)"
run hostref_tests 90 "$PY" -m pytest tests/test_plugin_hostref.py -q -p no:cacheprovider

step "4. static estimate from the SASS (needs cuobjdump + nvdisasm)"
if "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import outlook_sass as s; s.find_tool('cuobjdump'); s.find_tool('nvdisasm')" 2>/dev/null; then
  run static 90 "$PY" benchmarks/outlook_kernel.py --static
else
  echo "skipped: cuobjdump/nvdisasm not found (PATH, CUDA_HOME, or pip nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)"
fi

step "5. core benchmark (D1 stage-1, batch 64): ours vs eager vs torch.compile vs roofline"
BENCH_ARGS=(--iters 100)
if [[ -n "$LIB" ]]; then BENCH_ARGS+=(--lib "$LIB"); fi
run core_bench 180 "$PY" benchmarks/outlook_kernel.py "${BENCH_ARGS[@]}"

step "6. D1 end to end, batch 64 FP16 (anchors: core eager 1.364 ms, compile 0.596 ms; roofline 11.8 us)"
run e2e 240 "$PY" benchmarks/volo_cuda_e2e.py --batch 64 --dtype fp16 --json "$OUTDIR/e2e.json"

step "summary"
{
  echo "static:   $(tail -1 "$OUTDIR/static.log" 2>/dev/null || echo 'not run')"
  echo "measured: $(grep -h '^fp16: ours' "$OUTDIR/core_bench.log" 2>/dev/null || echo 'not run')"
  echo "e2e:      $(grep -h '^fused / eager' "$OUTDIR/e2e.log" 2>/dev/null || echo 'not run')"
  echo "tests:    $(grep -hE '[0-9]+ (passed|failed)' "$OUTDIR/gpu_tests.log" 2>/dev/null | tail -1)"
  echo "status:   $status"
} | tee "$OUTDIR/summary.txt"
exit "$status"
