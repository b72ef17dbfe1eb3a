#!/usr/bin/env bash
# GPU verification for a machine with a GPU, nvcc and no network (torch with
# CUDA, ninja, pytest, pytest-benchmark installed). Run from the repository
# root: builds convkit in place, runs the whole test suite (CUDA included),
# compute-sanitizer memcheck and racecheck on a small subset, then the
# convkit vs cuDNN benchmark. Logs, a summary and the benchmark table go to
# $OUT (default ./out). Every step has a time limit (scaled by LIMIT_SCALE,
# default 1); the whole run stays under 7 minutes on an H100.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
PY=${PYTHON:-python}
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
START=$(date +%s)
FAILED=0

# step NAME LIMIT_SECONDS COMMAND...: runs with a time limit, logs to $OUT/NAME.log.
step() {
  local name=$1 limit=$(( $2 * ${LIMIT_SCALE:-1} )) t0 rc
  shift 2
  echo "== $name (limit ${limit}s): $*"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 25 "$OUT/$name.log"
  local verdict=ok
  [ $rc -eq 0 ] || { verdict="FAILED (rc $rc$([ $rc -eq 124 ] && echo ', timed out'))"; FAILED=1; }
  printf '%-12s %-28s %4ds\n' "$name" "$verdict" $(( $(date +%s) - t0 )) | tee -a "$SUMMARY"
  return $rc
}

# The machine goes first into the summary (few files: a lent machine may return only 8).
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  nvcc --version | tail -1
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$SUMMARY"

# Only the local GPU's architecture: a faster build than the default 8.0;9.0.
ARCH=$($PY -c "import torch; c = torch.cuda.get_device_capability(); print(f'{c[0]}.{c[1]}')" 2>/dev/null || echo "8.0;9.0")
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
rm -rf build convkit/_C*.so
step build 180 $PY setup.py build_ext --inplace || { echo "build failed; see $OUT/build.log"; exit 1; }
grep -q "CUDA kernels included" "$OUT/build.log" || { echo "the build left the CUDA kernels out" | tee -a "$SUMMARY"; exit 1; }

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Every GPU case of the suite (test_cuda.py and the cuda-parametrized tests),
# spread over a few processes; no -x: one run should show every failure.
WORKERS=$($PY -c "import xdist" 2>/dev/null && echo "-n 6" || echo "")
step tests 150 $PY -m pytest tests -q -m "not slow" -k cuda $WORKERS --maxfail=60 -p no:cacheprovider -rf
step slow 60 $PY -m pytest tests/test_cuda.py -q -m slow -p no:cacheprovider -rf
step bench 90 $PY scripts/bench_cuda.py --iters 10 --reps 3 --out "$OUT/bench_cuda.md"

SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
# One small case per kernel family and pass: naive, direct, SIMT GEMM (split-K
# weight gradient included) and tensor cores (float16).
SUBSET='test_conv2d_matches_torch and (2x32x20x20 or 4x6x14x14 or 1x16x13x17) and (float16 or float32)'
RACE_SUBSET="test_conv2d_matches_torch and float16 and ((4x6x14x14 and direct) or (2x32x20x20 and (gemm or tensorcore)))"
if [ -x "$SANITIZER" ]; then
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1
  step memcheck 75 "$SANITIZER" --tool memcheck --error-exitcode 1 --print-limit 20 \
    $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "$SUBSET"
  step racecheck 60 "$SANITIZER" --tool racecheck --error-exitcode 1 --print-limit 20 \
    $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "$RACE_SUBSET"
  unset PYTORCH_NO_CUDA_MEMORY_CACHING
else
  echo "compute-sanitizer not found: memcheck and racecheck skipped" | tee -a "$SUMMARY"
  FAILED=1
fi

echo "== total $(( $(date +%s) - START ))s" | tee -a "$SUMMARY"
cat "$SUMMARY"
exit $FAILED
