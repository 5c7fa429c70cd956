#!/usr/bin/env bash
# Builds pomaidb_core._kernels with AddressSanitizer and UndefinedBehaviorSanitizer into
# build/asan and runs tests/kernels against that build.  Exits non-zero on a test failure or on
# any sanitizer report: ASan stops the process at its first report, and UBSan is made fatal at
# compile time (-fno-sanitize-recover=all).
#
# Usage: .ci/sanitize.sh [extra pytest args]      (PYTHON=... picks the interpreter)
#
# The tests import a staging package, build/asan/stage/pomaidb_core, that links to the source
# modules and to the sanitized _kernels; the editable install's import redirect is removed for
# that one process so it cannot hand back the normal build.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build/asan"
stage="$build/stage"
python="${PYTHON:-python3}"
cxx="${CXX:-g++}"

cmake -S "$repo/cpp" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DPOMAIDB_SANITIZE=ON -DPOMAIDB_WERROR=ON \
  -DPython_EXECUTABLE="$(command -v "$python")" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build"

rm -rf "$stage"
mkdir -p "$stage/pomaidb_core"
for entry in "$repo"/pomaidb_core/*; do
  case "$(basename "$entry")" in
    _kernels*|__pycache__) ;;
    *) ln -s "$entry" "$stage/pomaidb_core/" ;;
  esac
done
ln -s "$build"/_kernels*.so "$stage/pomaidb_core/"

# Python itself is not instrumented, so the ASan runtime must be loaded before it, and
# libstdc++ right after it (ASan resolves its C++ exception interceptors at startup); CPython
# keeps objects alive until exit by design, so leak checking would only report noise.
export LD_PRELOAD="$("$cxx" -print-file-name=libasan.so) $("$cxx" -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc  # let ASan see every Python buffer, not pymalloc's arenas
export PYTHONDONTWRITEBYTECODE=1

cd "$repo"
"$python" -c '
import sys
stage, args = sys.argv[1], sys.argv[2:]
sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
sys.path.insert(0, stage)
import pytest
import pomaidb_core._kernels as built
assert built.__file__.startswith(stage), built.__file__
# --capture=sys: a sanitizer writes its report to fd 2 and ends the process, which would
# discard the fd-level capture of pytest along with the report.
sys.exit(pytest.main(["tests/kernels", "-q", "-p", "no:cacheprovider", "--capture=sys", *args]))
' "$stage" "$@"
