#!/bin/bash
# Fuzzes the model file checks (common/model_check) with libFuzzer, outside the normal build.
#
#   tools/fuzz-model-check.sh [SECONDS_EACH=60] [gguf|coreml_zip ...]
#
# Builds, with clang++ -fsanitize=fuzzer,address,undefined, one binary per parser from the
# model_check sources, common/status.cc, the generated resources.pb.cc of build/release (run a
# normal build first) and tests/fuzz/model_check/model_check_fuzzer.cc (an in-memory
# ByteSource), into build/fuzz/. Each run starts from the seed corpus kept in
# tests/fuzz/model_check/<parser>/ plus the files the test generators make
# (build/release/.../model_info_dump --seeds), and grows a scratch corpus in build/fuzz/; a crash
# leaves its input in build/fuzz/ and fails the script. The libFuzzer summary (execs, cov, ft)
# is printed per parser.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
parsers=("$@")
[ ${#parsers[@]} -eq 0 ] && parsers=(gguf coreml_zip)

gen=build/release/proto/gen
dump=build/release/tests/common/model_check/model_info_dump
[ -f "$gen/modeldist/v1/resources.pb.cc" ] || { echo "build build/release first" >&2; exit 1; }
mkdir -p build/fuzz
srcs=(common/model_check/gguf.cc common/model_check/gguf_types.cc common/model_check/coreml_zip.cc
      common/model_check/zip_names.cc common/entry_names.cc common/model_check/model_check.cc
      common/status.cc common/file_util.cc
      "$gen/modeldist/v1/resources.pb.cc" tests/fuzz/model_check/model_check_fuzzer.cc)
libs=$(pkg-config --libs absl_status absl_statusor absl_strings absl_cord absl_str_format protobuf libzip)
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I. -I"$gen" $(pkg-config --cflags libzip))

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
if [ -x "$dump" ]; then "$dump" --seeds "$seeds" > /dev/null; fi

for parser in "${parsers[@]}"; do
  define=()
  [ "$parser" = coreml_zip ] && define=(-DMODEL_CHECK_FUZZ_COREML_ZIP)
  bin=build/fuzz/model_check_${parser}_fuzzer
  echo "== building $bin"
  clang++ "${flags[@]}" "${define[@]}" "${srcs[@]}" $libs -o "$bin"
  corpus=build/fuzz/corpus_$parser
  mkdir -p "$corpus"
  cp -n tests/fuzz/model_check/"$parser"/* "$corpus"/ 2>/dev/null || true
  [ -d "$seeds/$parser" ] && cp -n "$seeds/$parser"/* "$corpus"/
  echo "== fuzzing $parser for ${seconds}s"
  log=build/fuzz/$parser.log
  status=0
  "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix=build/fuzz/"$parser"- -print_final_stats=1 "$corpus" > "$log" 2>&1 || status=$?
  grep -E "^#[0-9]+.*(INITED|DONE)|stat::|ERROR|SUMMARY|unexpected result" "$log" || true
  [ "$status" -eq 0 ] || { echo "fuzzer $parser failed (exit $status): see $log" >&2; exit 1; }
done
