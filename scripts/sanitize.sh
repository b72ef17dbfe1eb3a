#!/usr/bin/env bash
# Runs the test suite against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of convkit's C++ ops.
#
#   scripts/sanitize.sh                      # pytest tests -m "not slow"
#   scripts/sanitize.sh tests/test_fuzz.py   # any pytest arguments instead
#
# The sanitized library is built (CONVKIT_SANITIZE=1) in a scratch copy of the
# source tree, so the normal in-place build is left alone; CONVKIT_SANITIZE_DIR
# keeps that copy between runs (default /tmp/convkit-sanitize) so rebuilds are
# incremental. Python itself is not instrumented, so the ASan runtime (and the
# libstdc++ it must intercept) are preloaded. Before the tests run, canaries
# prove the sanitizers are live: the convkit library must carry ASan/UBSan
# instrumentation, and a small library built with the same flags must abort on
# a heap overflow and on a signed overflow under the same environment.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${CONVKIT_SANITIZE_DIR:-${TMPDIR:-/tmp}/convkit-sanitize}
PYTHON=${PYTHON:-python}
CXX=${CXX:-c++}
# CUDA under ASan needs its own setup (protect_shadow_gap=0, compute-sanitizer
# for device code); the sanitizer run covers the host C++ by default.
export CONVKIT_CPU_ONLY=${CONVKIT_CPU_ONLY:-1}
export MAX_JOBS=${MAX_JOBS:-2}
start=$SECONDS

say() { echo "sanitize: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

runtime() {
  local path
  path=$("$CXX" -print-file-name="$1")
  [[ "$path" == /* && -e "$path" ]] || die "$CXX cannot find $1 (install the compiler's sanitizer runtime)"
  readlink -f "$path"
}
LIBASAN=$(runtime libasan.so)
LIBSTDCXX=$(runtime libstdc++.so)

# 1. A scratch copy of the working tree (tracked and untracked, not ignored),
#    mtimes kept so ninja only recompiles what changed.
mkdir -p "$WORK/src"
# drop what an earlier copy left (deleted files stay deleted), keep the build
find "$WORK/src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
   | while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done \
   | tar --null -T - -cf -) | tar -C "$WORK/src" -xf -
SRC="$WORK/src"

# 2. The sanitized build.
say "building with CONVKIT_SANITIZE=1 in $SRC"
(cd "$SRC" && CONVKIT_SANITIZE=1 "$PYTHON" setup.py -q build_ext --inplace >"$WORK/build.log" 2>&1) \
  || { tail -n 40 "$WORK/build.log" >&2; die "sanitized build failed (log: $WORK/build.log)"; }
say "built in $((SECONDS - start)) s"

export LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
# allocator_may_return_null: a huge request must reach torch as a failed
# allocation (a Python exception), as it does without ASan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}
export CONVKIT_SANITIZED=1  # lets a test skip what is pointless under the sanitizers
cd "$SRC"

# 3. Canaries. The library that `import convkit` loads here is the
#    instrumented one ...
library=$("$PYTHON" -c 'import convkit._ops as o; print(o._compiled_library())') || die "import convkit failed"
[[ "$library" == "$SRC"/* ]] || die "import convkit loaded $library, not the sanitized build in $SRC"
symbols=$(nm -D --undefined-only "$library")
grep -q '__asan_report' <<<"$symbols" || die "$library has no AddressSanitizer instrumentation"
grep -q '__ubsan_handle' <<<"$symbols" || die "$library has no UndefinedBehaviorSanitizer instrumentation"

# ... and the runtime really stops a bad program built with the same flags.
flags=$("$PYTHON" -c 'import convkit._build as b; print(" ".join(b.cxx_flags("canary")))')
cat >"$WORK/canary.cpp" <<'CPP'
#include <climits>
#define EXPORT extern "C" __attribute__((visibility("default")))
// volatile hides the allocation's size from UBSan, so this read is ASan's to catch
EXPORT int heap_read(int i) { int* volatile p = new int[4](); int v = p[i]; delete[] p; return v; }
EXPORT int add_to_max(int i) { volatile int big = INT_MAX; return big + i; }
CPP
# shellcheck disable=SC2086
"$CXX" -shared -fPIC $flags -o "$WORK/canary.so" "$WORK/canary.cpp" -fsanitize=address,undefined
canary() {  # canary FUNCTION ARG EXPECTED-MESSAGE (empty: must succeed)
  local out rc=0
  out=$("$PYTHON" -c "import ctypes, sys; print(getattr(ctypes.CDLL(sys.argv[1]), sys.argv[2])(int(sys.argv[3])))" \
        "$WORK/canary.so" "$1" "$2" 2>&1) || rc=$?
  if [[ -z "$3" ]]; then
    [[ $rc == 0 ]] || die "canary $1($2) should run cleanly: $out"
  else
    [[ $rc != 0 ]] && grep -q "$3" <<<"$out" || die "canary $1($2) was not caught (rc=$rc): $out"
  fi
}
canary heap_read 3 ""
canary heap_read 4 "heap-buffer-overflow"
canary add_to_max 0 ""
canary add_to_max 1 "signed integer overflow"
say "canaries: $library is instrumented; heap overflow and signed overflow are caught"

# 4. The test suite.
if [[ $# -eq 0 ]]; then set -- tests -m "not slow"; fi
say "running: pytest $*"
# --capture=sys: pytest captures Python's output only, so a sanitizer report
# (written to file descriptor 2) reaches the log even when it stops the run.
rc=0
"$PYTHON" -m pytest -p no:cacheprovider --capture=sys "$@" || rc=$?
if [[ $rc -gt 128 ]]; then
  say "FAILED: pytest was killed by signal $((rc - 128)); a sanitizer report above says where"
fi
say "pytest exit status $rc after $((SECONDS - start)) s in total"
exit $rc
