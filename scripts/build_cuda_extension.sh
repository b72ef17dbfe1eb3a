#!/usr/bin/env bash
# Builds the whole extension, CUDA kernels included, against a CUDA build of
# torch on a machine without a GPU (CONVKIT_FORCE_CUDA=1), into a temporary
# folder, then loads the library with torch.ops.load_library to prove it links
# and registers its CPU, CUDA and AutocastCUDA kernels.
#
# The torch comes from a separate venv: $CONVKIT_CUDA_VENV (default
# ${TMPDIR:-/tmp}/convkit-venv-cuda), created with torch==$CONVKIT_CUDA_TORCH
# (default 2.14.1) when it does not have it yet.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CONVKIT_CUDA_VENV:-${TMPDIR:-/tmp}/convkit-venv-cuda}
TORCH_VERSION=${CONVKIT_CUDA_TORCH:-2.14.1}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
export MAX_JOBS=${MAX_JOBS:-2}

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') and torch.version.cuda else 1)" 2>/dev/null; then
  echo "build_cuda_extension: creating $VENV with torch==$TORCH_VERSION (CUDA build)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" numpy ninja pybind11
fi
PY="$VENV/bin/python"
"$PY" -c "import torch; assert torch.version.cuda, 'torch has no CUDA'; print('build_cuda_extension: torch', torch.__version__, 'CUDA', torch.version.cuda)"

# The CUDA wheels keep the cuBLAS/cuSPARSE headers that ATen's CUDA headers include here.
NV_INCLUDE=$("$PY" -c "import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'include'))" 2>/dev/null || true)
[ -d "$NV_INCLUDE" ] && export CPATH="$NV_INCLUDE${CPATH:+:$CPATH}"

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
start=$(date +%s)
(cd "$ROOT" && PATH="$VENV/bin:$PATH" CONVKIT_FORCE_CUDA=1 "$PY" setup.py -q build_ext --build-lib "$OUT/lib" --build-temp "$OUT/tmp") \
  > "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; echo "build_cuda_extension: BUILD FAILED"; exit 1; }
grep -iE "convkit:|warning" "$OUT/build.log" | grep -v "^$" | head -20 || true
echo "build_cuda_extension: built in $(( $(date +%s) - start )) s"

LIB=$(find "$OUT/lib" -name '_C*.so' | head -1)
[ -n "$LIB" ] || { echo "build_cuda_extension: no library produced"; exit 1; }
"$PY" - "$LIB" <<'PYEOF'
import sys
import torch
torch.ops.load_library(sys.argv[1])
ops = torch.ops.convkit
assert ops._build_torch_version() == torch.__version__, ops._build_torch_version()
for name in ("corr2d", "conv2d", "conv2d_backward", "activation_avg_pool2d", "activation_avg_pool2d_backward"):
    for key in ("CPU", "CUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"convkit::{name}", key), (name, key)
for name in ("corr2d", "conv2d"):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"convkit::{name}", "AutocastCUDA"), name
# CPU kernels of the same library still work.
x, k = torch.arange(9.0).view(3, 3), torch.arange(4.0).view(2, 2)
assert ops.corr2d(x, k).tolist() == [[19.0, 25.0], [37.0, 43.0]]
print(f"build_cuda_extension: {sys.argv[1].rsplit('/', 1)[-1]} loads; CPU, CUDA and AutocastCUDA kernels registered: OK")
PYEOF
