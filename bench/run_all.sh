#!/usr/bin/env bash
# Builds the benchmarks (Release) and runs them all, writing each driver's output to
# $RESULTS_DIR (default: $BUILD_DIR/bench-results). Every figure is a ratio against a peer
# measured in the same run; see docs/benchmarks.md for how to read them.
#
# Usage: bench/run_all.sh [--quick]
#   --quick   smaller artifacts and fewer/shorter repetitions (a smoke test, not for the docs)
# Environment: BUILD_DIR (default <repo>/build-bench), RESULTS_DIR, BENCH_TMP (default /tmp),
#              CMAKE_ARGS (extra configure arguments), JOBS (default: nproc),
#              AGENT_BIG=1 (agent_bench also syncs an 8 GiB artifact once: ~3.5 min more,
#              ~17 GiB free in BENCH_TMP).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$repo/build-bench}"
results="${RESULTS_DIR:-$build/bench-results}"
tmp="${BENCH_TMP:-/tmp}"
jobs="${JOBS:-$(nproc)}"
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

for tool in nginx curl openssl docker-registry; do
  command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] ||
    { echo "run_all.sh: $tool is required (Debian packages nginx, curl, openssl," \
      "docker-registry)" >&2; exit 1; }
done
command -v wrk >/dev/null ||
  echo "run_all.sh: wrk not found (apt-get install -y wrk); manifest_bench skips its peer," \
    "http_bench its edge part" >&2

# Tests are not needed here, and a half-edited tests/ tree must not block a benchmark run.
# shellcheck disable=SC2086
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMODELDIST_BUILD_TESTS=OFF \
  -DMODELDIST_BUILD_BENCH=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$jobs" --target modeldist-server modeldist-agent modeldistctl download_bench \
  manifest_bench report_bench http_bench rss_bench agent_bench publish_bench

mkdir -p "$results"
if ((quick)); then
  download_args=(--size 256MiB --reps 1)
  manifest_args=(--reps 1 --duration 2)
  report_args=(--reps 1 --duration 2)
  http_args=(--size 256MiB --reps 1 --duration 2 --warmup 1)
  rss_args=(--sizes 64MiB,256MiB --clients 8)
  agent_args=(--size 256MiB --reps 1)
  publish_args=(--size 256MiB --reps 1)
else
  download_args=()
  manifest_args=()
  report_args=()
  http_args=()
  rss_args=()
  agent_args=()
  publish_args=()
fi
[[ "${AGENT_BIG:-0}" == 1 ]] && agent_args+=(--big)

# run RESULT_NAME BINARY ARGS...: runs bench/BINARY, output to $results/RESULT_NAME.txt.
run() {
  local name="$1" binary="$2"
  shift 2
  echo "== $binary $* ($(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))" |
    tee "$results/$name.txt"
  # stderr (progress, per-rep lines) goes to the log too: it holds every raw figure.
  "$build/bench/$binary" "$@" 2>&1 | tee -a "$results/$name.txt"
}

run download_bench download_bench --tmp "$tmp" "${download_args[@]}"
# The same on tmpfs: separates the page-cache allocation cost of the disk file system (large
# on the CI VM, see docs/benchmarks.md) from the transport and hashing.
if [[ -d /dev/shm ]]; then
  run download_bench_tmpfs download_bench --tmp /dev/shm "${download_args[@]}"
fi
run manifest_bench manifest_bench --tmp "$tmp" "${manifest_args[@]}"
# The same with the load generator on the server's cores: how much a co-located client costs.
run manifest_bench_shared manifest_bench --tmp "$tmp" --placement shared "${manifest_args[@]}"
# ReportStatus at >= 20k reports/s, and what it costs GetManifest in the same run (issue 15).
run report_bench report_bench --tmp "$tmp" "${report_args[@]}"
# The HTTP listener: the blob endpoint vs nginx and docker-registry (curl), the edge manifest
# endpoint vs nginx (wrk); without wrk, the blob part only.
if command -v wrk >/dev/null; then
  run http_bench http_bench --tmp "$tmp" "${http_args[@]}"
else
  run http_bench http_bench --tmp "$tmp" --parts blob "${http_args[@]}"
fi
run rss_bench rss_bench --tmp "$tmp" "${rss_args[@]}"
run agent_bench agent_bench --tmp "$tmp" "${agent_args[@]}"
# Publishing ends in an fsync, so this one needs BENCH_TMP on a disk (it refuses tmpfs).
if [[ "$(stat -f -c %T "$tmp")" == tmpfs ]]; then
  echo "run_all.sh: $tmp is tmpfs; publish_bench skipped (set BENCH_TMP to a disk)" >&2
else
  run publish_bench publish_bench --tmp "$tmp" "${publish_args[@]}"
fi

echo
echo "Summary (also in $results):"
for f in download_bench download_bench_tmpfs manifest_bench manifest_bench_shared report_bench \
  http_bench rss_bench agent_bench publish_bench; do
  [[ -f "$results/$f.txt" ]] && grep -h '^RESULT' "$results/$f.txt" | sed "s/^/$f: /"
done
