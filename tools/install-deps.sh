#!/usr/bin/env bash
# Makes sure this machine has everything modeldist's build and tests need: the toolchain and
# libraries from the Debian 12 (bookworm) archive, and buf (for `buf curl` in the e2e tests)
# from npm as pinned in tools/buf/package-lock.json, and the official clients the tests check
# against (tests/node/package-lock.json).
#
# Usage: tools/install-deps.sh   (as any user)
#
# It first checks what is present. On a machine that has it all it changes nothing, needs no
# root and no network: it never runs apt-get (not even `apt-get update`) then. Only when a
# Debian package is missing does it install the missing ones, as root: directly when run as
# root, through sudo otherwise (which asks for the password), or it says what to run when
# there is no sudo. buf is installed with `npm ci` into tools/buf/node_modules (no root) only
# when the pinned version is not there. Packages already installed are left at their version.
# Quiet when all goes well; on any failure it prints the failing step's output and exits
# non-zero.
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

packages=(
  # Build: compiler, CMake, and the libraries the CMake files find.
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  grpc-proto            # grpc/health/v1/health.proto, compiled into the server
  libssl-dev libsqlite3-dev libcurl4-openssl-dev libabsl-dev libzip-dev
  libmicrohttpd-dev     # the HTTP listener (CDN origin, edge endpoint, /metrics)
  libp11-kit-dev        # pkcs11.h, for modeldistctl's keys in PKCS#11 tokens (dlopen'd)
  # Tests and benchmarks; clang with libFuzzer (in libclang-rt-14-dev) and GNU time for
  # tools/fuzz.sh.
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev time
  sqlite3 nginx-light jq openssl ca-certificates
  softhsm2              # a PKCS#11 token for the tests of modeldistctl's pkcs11: keys
  # Origins the tests run on loopback: OpenStack Swift with its S3 API (it checks SigV4
  # signatures) and the memcached its proxy requires; the curl program fetches a presigned
  # URL as a device would.
  swift swift-proxy swift-object swift-container swift-account memcached curl
  # Caches in front of the HTTP listener (Varnish; nginx's proxy_cache is in nginx-light),
  # promtool (in prometheus) to check /metrics, and the load generators of the benchmarks.
  varnish prometheus wrk nghttp2-client
  # deploy/ checks: PostgreSQL for the Supabase bucket SQL (the tests run their own cluster),
  # systemd-analyze for the unit.
  postgresql systemd
)
# Node may come from elsewhere (e.g. NodeSource, which bundles npm and conflicts with Debian's
# npm package); only a machine without node gets Debian's nodejs and npm.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi

# The packages dpkg does not list as installed (all of them when there is no dpkg).
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || status=
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
  # shellcheck source=/dev/null
  . /etc/os-release
  if [[ ${ID:-} != debian || ${VERSION_ID:-} != 12 ]] && [[ -z ${MODELDIST_ANY_OS:-} ]]; then
    fail "missing: ${missing[*]}; this script installs them on Debian 12, and this is" \
      "${PRETTY_NAME:-unknown} (install them yourself, or set MODELDIST_ANY_OS=1 to try)"
  fi
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null ||
      fail "missing: ${missing[*]}; install them as root (there is no sudo here):" \
        "apt-get update && apt-get install --no-install-recommends ${missing[*]}"
    echo "install-deps.sh: installing ${missing[*]} with sudo" >&2
    as_root=(sudo)
  fi
  # Through env, since sudo does not pass the environment on.
  run "apt-get update" "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  unknown=()
  for p in "${missing[@]}"; do
    # Captured, not piped into `grep -q`: with pipefail, grep's early exit would SIGPIPE
    # apt-cache and count the package as unknown.
    policy=$(apt-cache policy "$p")
    [[ $policy == *"Candidate: "* && $policy != *"Candidate: (none)"* ]] || unknown+=("$p")
  done
  ((${#unknown[@]} == 0)) || fail "not in the configured apt sources: ${unknown[*]}"
  run "apt-get install" "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends --no-upgrade "${missing[@]}"
  # Only promtool is wanted from prometheus (and varnishd and postgres are started by the
  # tests): the services these packages start and enable would hold ports 9090, 6081 and 5432.
  # (In a container whose policy-rc.d forbids starting services, nothing started.)
  for unit in prometheus varnish postgresql; do
    [[ " ${missing[*]} " == *" $unit "* ]] || continue
    if [[ -d /run/systemd/system ]]; then
      "${as_root[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    else
      "${as_root[@]}" invoke-rc.d "$unit" stop >/dev/null 2>&1 || true
    fi
  done
fi

command -v npm >/dev/null ||
  fail "node is installed ($(command -v node)) but npm is not; install the npm that goes" \
    "with that node, then run this script again"
want=$(jq -r '.devDependencies["@bufbuild/buf"]' "$REPO/tools/buf/package.json")
# npm's update notice would land in the output (stderr goes to $LOG for a failure message).
export NPM_CONFIG_UPDATE_NOTIFIER=false
buf_version() { npx --prefix "$REPO/tools/buf" --no-install buf --version 2>"$LOG"; }
if ! version=$(buf_version) || [[ $version != "$want" ]]; then
  (cd "$REPO/tools/buf" && run "npm ci in tools/buf" npm ci --no-audit --no-fund --loglevel=error)
  version=$(buf_version) || fail "buf does not run after npm ci: $(cat "$LOG")"
  [[ $version == "$want" ]] || fail "buf is $version, tools/buf/package.json pins $want"
fi

# The official clients the tests hold our signers and the Supabase stand-in against, pinned in
# tests/node/package-lock.json; npm ci only when node_modules is older than the lock file.
node_dir="$REPO/tests/node"
if [[ ! -f $node_dir/node_modules/.package-lock.json ||
  $node_dir/package-lock.json -nt $node_dir/node_modules/.package-lock.json ]]; then
  (cd "$node_dir" && run "npm ci in tests/node" npm ci --no-audit --no-fund --loglevel=error)
fi

if ((${#missing[@]} > 0)); then
  echo "install-deps.sh: installed ${missing[*]}; build and test dependencies present (buf $version)"
else
  echo "install-deps.sh: build and test dependencies present (buf $version)"
fi
