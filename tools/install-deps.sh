#!/usr/bin/env bash
# Installs, on a fresh Debian 12 (bookworm) machine, everything modeldist's build and tests
# need: the toolchain and libraries from the Debian archive, and buf (for `buf curl` in the
# e2e tests) from npm as pinned in tools/buf/package-lock.json.
#
# Usage: sudo tools/install-deps.sh
#
# Safe to run again: packages already installed are left at their version (--no-upgrade), and
# tools/buf/node_modules is rebuilt from the lock file. Quiet when all goes well; on any
# failure it prints the failing step's output and exits non-zero.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=$(mktemp "${TMPDIR:-/tmp}/modeldist-install-deps.XXXXXX")
readonly REPO LOG
trap 'rm -f "$LOG"' EXIT

fail() {
  echo "install-deps.sh: $*" >&2
  exit 1
}

# run WHAT CMD...: runs CMD with its output in $LOG, shown only when it fails.
run() {
  local what=$1
  shift
  if ! "$@" >"$LOG" 2>&1; then
    cat "$LOG" >&2
    fail "$what failed: $*"
  fi
}

[[ $(id -u) -eq 0 ]] || fail "run as root, e.g. sudo $0"
# shellcheck source=/dev/null
. /etc/os-release
if [[ ${ID:-} != debian || ${VERSION_ID:-} != 12 ]] && [[ -z ${MODELDIST_ANY_OS:-} ]]; then
  fail "this script targets Debian 12; this is ${PRETTY_NAME:-unknown}" \
    "(set MODELDIST_ANY_OS=1 to try anyway)"
fi

packages=(
  # Build: compiler, CMake, and the libraries the CMake files find.
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  grpc-proto            # grpc/health/v1/health.proto, compiled into the server
  libssl-dev libsqlite3-dev libcurl4-openssl-dev libabsl-dev libzip-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev
  sqlite3 nginx-light jq openssl ca-certificates
)
# Node may come from elsewhere (e.g. NodeSource, which bundles npm and conflicts with Debian's
# npm package); only a machine without node gets Debian's nodejs and npm.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi

export DEBIAN_FRONTEND=noninteractive
run "apt-get update" apt-get update
missing=()
for p in "${packages[@]}"; do
  # Captured, not piped into `grep -q`: with pipefail, grep's early exit would SIGPIPE
  # apt-cache and count the package as missing.
  policy=$(apt-cache policy "$p")
  [[ $policy == *"Candidate: "* && $policy != *"Candidate: (none)"* ]] || missing+=("$p")
done
((${#missing[@]} == 0)) || fail "not in the configured apt sources: ${missing[*]}"
run "apt-get install" apt-get install -y --no-install-recommends --no-upgrade "${packages[@]}"

command -v npm >/dev/null ||
  fail "node is installed ($(command -v node)) but npm is not; install the npm that goes" \
    "with that node, then run this script again"
(cd "$REPO/tools/buf" && run "npm ci in tools/buf" npm ci --no-audit --no-fund --loglevel=error)
version=$(npx --prefix "$REPO/tools/buf" --no-install buf --version 2>&1) ||
  fail "buf does not run after npm ci: $version"
want=$(jq -r '.devDependencies["@bufbuild/buf"]' "$REPO/tools/buf/package.json")
[[ $version == "$want" ]] || fail "buf is $version, tools/buf/package.json pins $want"

echo "install-deps.sh: build and test dependencies installed (buf $version)"
