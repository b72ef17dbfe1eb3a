#!/usr/bin/env bash
# Compiles every cuda/*.cu with plain nvcc (no torch) for sm_80 and sm_90, two
# files at a time, and prints each file's compile time. Exits non-zero on the
# first error. Usage: scripts/compile_cuda_kernels.sh [extra nvcc flags...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$NVCC" ]; then
  echo "compile_cuda_kernels: nvcc not found (set NVCC=...)" >&2
  exit 1
fi
JOBS=${MAX_JOBS:-2}
OUTDIR=$(mktemp -d)
trap 'rm -rf "$OUTDIR"' EXIT
FLAGS=(-std=c++17 -O3 --expt-relaxed-constexpr -Werror all-warnings -I"$ROOT/csrc" -I"$ROOT/cuda"
       -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "$@")
echo "compile_cuda_kernels: $("$NVCC" --version | tail -1), $JOBS jobs"
start=$(date +%s)
compile() {
  local src=$1 t0 t1
  t0=$(date +%s%N)
  if ! "$NVCC" "${FLAGS[@]}" -c "$src" -o "$OUTDIR/$(basename "$src").o" > "$OUTDIR/$(basename "$src").log" 2>&1; then
    cat "$OUTDIR/$(basename "$src").log" >&2
    echo "FAILED $src" >&2
    return 1
  fi
  t1=$(date +%s%N)
  printf '  %-32s %4d.%01d s\n' "${src#"$ROOT"/}" $(( (t1 - t0) / 1000000000 )) $(( (t1 - t0) / 100000000 % 10 ))
}
status=0
pids=()
# Largest first, so the longest compile does not start last.
for src in $(ls -S "$ROOT"/cuda/*.cu); do
  compile "$src" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$JOBS" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "compile_cuda_kernels: $(ls "$ROOT"/cuda/*.cu | wc -l) files in $(( $(date +%s) - start )) s, $([ $status = 0 ] && echo OK || echo FAILED)"
exit $status
