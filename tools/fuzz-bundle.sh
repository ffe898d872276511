#!/bin/bash
# Fuzzes what a device reads from a model bundle before any signature check (common/tar.cc's
# TarReader and common/bundle_format.cc's ParseBundleIndex) with libFuzzer, outside the normal
# build, as tools/fuzz-model-check.sh does for the model checks.
#
#   tools/fuzz-bundle.sh [SECONDS=60]
#
# Builds build/fuzz/bundle_fuzzer with clang++ -fsanitize=fuzzer,address,undefined from those
# sources, the common files they use, the generated resources.pb.cc of build/release (run a
# normal build first) and tests/fuzz/bundle/bundle_fuzzer.cc. The run starts from the seed
# corpus in tests/fuzz/bundle/corpus/ (small bundles as the writer makes them) and grows a
# scratch corpus in build/fuzz/corpus_bundle; a crash leaves its input in build/fuzz/ and fails
# the script. The libFuzzer summary (execs, cov, ft) is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

gen=build/release/proto/gen
[ -f "$gen/modeldist/v1/resources.pb.cc" ] || { echo "build build/release first" >&2; exit 1; }
mkdir -p build/fuzz
srcs=(common/tar.cc common/bundle_format.cc common/entry_names.cc common/file_util.cc
      common/digest.cc common/status.cc "$gen/modeldist/v1/resources.pb.cc"
      tests/fuzz/bundle/bundle_fuzzer.cc)
libs=$(pkg-config --libs absl_status absl_statusor absl_strings absl_cord absl_str_format \
       protobuf libcrypto)
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I. -I"$gen")

bin=build/fuzz/bundle_fuzzer
echo "== building $bin"
clang++ "${flags[@]}" "${srcs[@]}" $libs -o "$bin"
corpus=build/fuzz/corpus_bundle
mkdir -p "$corpus"
cp -n tests/fuzz/bundle/corpus/* "$corpus"/
echo "== fuzzing bundles for ${seconds}s"
log=build/fuzz/bundle.log
status=0
"$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix=build/fuzz/bundle- -print_final_stats=1 "$corpus" > "$log" 2>&1 || status=$?
grep -E "^#[0-9]+.*(INITED|DONE)|stat::|ERROR|SUMMARY|unexpected result|broken promise" "$log" || true
[ "$status" -eq 0 ] || { echo "fuzzer failed (exit $status): see $log" >&2; exit 1; }
