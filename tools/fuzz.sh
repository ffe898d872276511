#!/bin/bash
# Builds and runs the libFuzzer targets of tests/fuzz/ (docs/fuzzing.md), outside the CMake
# build: clang++ -fsanitize=fuzzer,address,undefined straight from the sources listed below.
#
#   tools/fuzz.sh [SECONDS_EACH=60] [TARGET...]   build, then fuzz each target (all by default)
#   tools/fuzz.sh --build [TARGET...]             only build
#   tools/fuzz.sh --seeds [TARGET...]             remake tests/fuzz/<target>/corpus/ with the
#                                                 target's seed generator (MODELDIST_FUZZ_SEEDS)
#   tools/fuzz.sh --list                          the targets
#   FUZZ_NO_BUILD=1 tools/fuzz.sh ...             run the binaries built before
#
# Needs the generated protobuf sources of build/release (a normal build first). Objects are
# cached in build/fuzz/obj (remade when their source or any header is newer). Each run starts
# from tests/fuzz/<target>/corpus/ and grows a scratch corpus in build/fuzz/corpus_<target>
# (never committed); a crash, leak or timeout leaves its input as build/fuzz/<target>-crash-*
# (replay: build/fuzz/<target>_fuzzer FILE) and fails the script. One line per target sums
# up the run: executions, coverage (cov, ft), corpus size, CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

gen=build/release/proto/gen
pb() { for p in "$@"; do echo "$gen/modeldist/v1/$p.pb.cc"; done; }
base="common/status.cc common/file_util.cc common/fs.cc $gen/modeldist/v1/resources.pb.cc"
crypto="common/digest.cc common/ed25519.cc"

# The one list of targets: name -> the sources it links besides tests/fuzz/<name>/<name>_fuzzer.cc.
declare -A SRCS=(
  [trust]="$base $crypto common/trust.cc common/release.cc common/names.cc common/chunk_chain.cc
           $(pb manifest)"
  [chunk_chain]="$base $crypto common/trust.cc common/release.cc common/names.cc
                 common/chunk_chain.cc $(pb manifest)"
  [unzip]="$base client/agent/unzip.cc common/model_check/zip_names.cc common/entry_names.cc"
  [names]="$base common/names.cc common/digest.cc services/request_validation.cc"
  [flags]="$base common/flags.cc"
  [http]="$base services/http_server/byte_range.cc common/http/http.cc"
  [edge_manifest]="$base common/digest.cc common/names.cc common/json.cc common/enum_names.cc
                   common/grpc_status.cc services/edge_manifest_endpoint.cc
                   services/http_server/http_error.cc services/http_server/listener.cc
                   $(pb manifest)"
  [origins_config]="$base storage/origin/origin_config.cc $(pb origins)"
  [gguf]="$base common/model_check/gguf.cc common/model_check/gguf_types.cc
          common/model_check/coreml_zip.cc common/model_check/zip_names.cc common/entry_names.cc
          common/model_check/model_check.cc"
  [coreml_zip]="$base common/model_check/gguf.cc common/model_check/gguf_types.cc
                common/model_check/coreml_zip.cc common/model_check/zip_names.cc
                common/entry_names.cc common/model_check/model_check.cc"
  [bundle]="$base common/tar.cc common/bundle_format.cc common/entry_names.cc common/digest.cc"
)
# Run order: the parsers added last first, so a short session covers them.
ORDER=(trust chunk_chain unzip names flags http edge_manifest origins_config gguf coreml_zip
       bundle)
# Bigger inputs where the format needs them (zips, GGUF headers, bundles).
declare -A MAX_LEN=([unzip]=65536 [gguf]=65536 [coreml_zip]=65536 [bundle]=65536)

mode=run
case "${1:-}" in
  --build | --seeds) mode="${1#--}"; shift ;;
  --list) printf '%s\n' "${ORDER[@]}"; exit 0 ;;
  '' | [0-9]*) seconds="${1:-60}"; shift || true ;;
  *) echo "usage: tools/fuzz.sh [SECONDS_EACH | --build | --seeds | --list] [TARGET...]" >&2; exit 1 ;;
esac
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ORDER[@]}")
for t in "${targets[@]}"; do
  [ -n "${SRCS[$t]:-}" ] || { echo "unknown target $t (tools/fuzz.sh --list)" >&2; exit 1; }
done
[ -f "$gen/modeldist/v1/resources.pb.cc" ] || { echo "build build/release first" >&2; exit 1; }

libs=$(pkg-config --libs absl_status absl_statusor absl_strings absl_cord absl_str_format \
       absl_time absl_flat_hash_map absl_synchronization protobuf grpc++ libzip libcrypto libcurl \
       libmicrohttpd)
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined -I. -I"$gen" $(pkg-config --cflags libzip))
mkdir -p build/fuzz/obj

# The objects, compiled FUZZ_JOBS (nproc) at a time into build/fuzz/obj; an object is remade
# when its source or any header is newer. A failed compile leaves no object, so the link fails.
newest_header=$(find common client services storage tests/fuzz "$gen" -name '*.h' \
                -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
object_of() { echo "build/fuzz/obj/${1//\//_}.o"; }
compile() {
  local s obj
  for s in $(printf "%s\n" "$@" | sort -u); do
    obj=$(object_of "$s")
    if [ ! "$obj" -nt "$s" ] || [ ! "$obj" -nt "$newest_header" ]; then
      rm -f "$obj"
      (clang++ "${flags[@]}" -c "$s" -o "$obj.tmp" && mv "$obj.tmp" "$obj") &
      while [ "$(jobs -rp | wc -l)" -ge "${FUZZ_JOBS:-$(nproc)}" ]; do wait -n || true; done
    fi
  done
  wait
}

link() {
  local t=$1 objs=() s
  for s in ${SRCS[$t]} "tests/fuzz/$t/${t}_fuzzer.cc"; do objs+=("$(object_of "$s")"); done
  clang++ -fsanitize=fuzzer,address,undefined "${objs[@]}" $libs -o "build/fuzz/${t}_fuzzer"
}

# FUZZ_NO_BUILD=1 runs the binaries built before (e.g. by --build under the build lock).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  all=()
  for t in "${targets[@]}"; do all+=(${SRCS[$t]} "tests/fuzz/$t/${t}_fuzzer.cc"); done
  echo "== compiling $(printf "%s\n" "${all[@]}" | sort -u | wc -l) sources into build/fuzz/obj"
  compile "${all[@]}"
  for t in "${targets[@]}"; do
    echo "== linking build/fuzz/${t}_fuzzer"
    link "$t"
  done
fi
[ "$mode" = build ] && exit 0

if [ "$mode" = seeds ]; then
  for t in "${targets[@]}"; do
    mkdir -p "tests/fuzz/$t/corpus"
    MODELDIST_FUZZ_SEEDS="tests/fuzz/$t/corpus" "build/fuzz/${t}_fuzzer"
    echo "$t: $(ls "tests/fuzz/$t/corpus" | wc -l) seeds in tests/fuzz/$t/corpus"
  done
  exit 0
fi

failed=()
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus_$t
  mkdir -p "$corpus"
  log=build/fuzz/$t.log
  status=0
  # -timeout: a single input taking seconds is a finding (an accidental quadratic loop).
  /usr/bin/time -f '%U %S' -o "build/fuzz/$t.time" "build/fuzz/${t}_fuzzer" \
    -max_total_time="$seconds" -max_len="${MAX_LEN[$t]:-4096}" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="build/fuzz/$t-" -print_final_stats=1 "$corpus" "tests/fuzz/$t/corpus" \
    > "$log" 2>&1 || status=$?
  cpu=$(awk '{printf "%.0f", $1 + $2}' "build/fuzz/$t.time" 2>/dev/null || echo "?")
  done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(grep -aE '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  echo "$t: execs=${execs:-?} cpu_s=$cpu exit=$status | ${done_line:-no DONE line}"
  if [ "$status" -ne 0 ]; then
    grep -aE 'ERROR|SUMMARY|property violated|unexpected|Test unit written' "$log" | head -5 || true
    failed+=("$t")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz targets failed: ${failed[*]} (logs: build/fuzz/<target>.log)" >&2; exit 1; }
