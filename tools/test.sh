#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every test twice: once in
# a normal build and once under AddressSanitizer + UndefinedBehaviorSanitizer; between the two,
# every fuzz target for FUZZ_SECONDS (tools/fuzz.sh).
#
#   tools/test.sh            # everything (what CI runs)
#   SKIP_ASAN=1 tools/test.sh  # only the normal build, for a quicker local loop
#   SKIP_FUZZ=1 tools/test.sh  # without the fuzz targets' short run (FUZZ_SECONDS=20 each)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

jobs=$(nproc)
run_suite() {
  local dir=$1; shift
  echo "== configure $dir ($*)"
  cmake -S . -B "$dir" -DMODELDIST_WERROR=ON -DMODELDIST_BUILD_BENCH=ON "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; exit 1; }
  echo "== build $dir"
  cmake --build "$dir" -j"$jobs"
  echo "== test $dir"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}

mkdir -p build
run_suite build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "${SKIP_FUZZ:-0}" != 1 ]]; then
  # Every libFuzzer target briefly, from its committed seeds (docs/fuzzing.md has the long
  # run): a crash, sanitizer finding or broken property fails the run.
  echo "== fuzz (${FUZZ_SECONDS:-20}s per target)"
  tools/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
if [[ "${SKIP_ASAN:-0}" != 1 ]]; then
  # detect_leaks stays on: a leak fails the run like any other finding.
  export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build/asan -DCMAKE_BUILD_TYPE=Debug -DMODELDIST_SANITIZE=ON -DMODELDIST_BUILD_BENCH=OFF
fi
echo "== all tests passed"
