# shellcheck shell=bash
# Sourced by the e2e shell tests (bash). Starts the real modeldist-server on 127.0.0.1:0 in a
# scratch directory, stops it by its PID on every exit path, and wraps `buf curl`.
#
# The sourcing script is called as: SCRIPT SOURCE_DIR SERVER_BINARY E2E_PUBLISH_BINARY
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH (ctest passes these)" >&2
  exit 2
fi
SOURCE_DIR=$1
SERVER_BIN=$2
PUBLISH_BIN=$3

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Prints what a check is about, so a ctest log reads as a list of passed steps.
step() { echo "--- $*"; }

for tool in jq openssl base64 sha256sum node; do
  command -v "$tool" >/dev/null || fail "$tool is not installed; run tools/install-deps.sh"
done
for bin in "$SERVER_BIN" "$PUBLISH_BIN"; do
  [[ -x $bin ]] || fail "$bin is not built; build the modeldist-server and e2e_publish targets"
done
# A missing buf must fail the test, not skip it: a skipped e2e test looks like a passing one.
[[ -x $SOURCE_DIR/tools/buf/node_modules/.bin/buf ]] ||
  fail "tools/buf/node_modules is missing: run '(cd tools/buf && npm ci --no-audit --no-fund)'" \
    "or 'tools/install-deps.sh' once, then rerun the tests"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/modeldist-e2e.XXXXXX")
SERVER_PID=""

# Stops the server by its PID (SIGTERM, then SIGKILL after 20 s), and prints its log when the
# test failed.
cleanup() {
  local rc=$?
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 200); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f $WORK/server.log ]]; then
    echo "--- server log (end):" >&2
    tail -n 40 "$WORK/server.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# buf from tools/buf, speaking plaintext gRPC (its default protocol is Connect).
buf_curl() {
  npx --prefix "$SOURCE_DIR/tools/buf" --no-install buf curl --protocol grpc \
    --http2-prior-knowledge "$@"
}
buf_cli() { npx --prefix "$SOURCE_DIR/tools/buf" --no-install buf "$@"; }

# start_server [FLAGS...]: starts the server with a fresh token and data dir; sets TOKEN,
# ADDR (HOST:PORT) and URL for the sourcing script. The scripts publish opaque bytes labelled
# GGUF or CoreML zip, so the model checks are off.
# shellcheck disable=SC2034
start_server() {
  openssl rand -hex 24 >"$WORK/admin.token"
  TOKEN=$(cat "$WORK/admin.token")
  "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/data" \
    --admin-token-file "$WORK/admin.token" --port-file "$WORK/port" --no-model-checks "$@" \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 600); do
    [[ -s $WORK/port ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "modeldist-server exited before serving"
    sleep 0.1
  done
  [[ -s $WORK/port ]] || fail "modeldist-server wrote no port file within 60 s"
  ADDR=127.0.0.1:$(cat "$WORK/port")
  URL=http://$ADDR
  step "server pid $SERVER_PID on $ADDR"
}

# stop_server: SIGTERM; the server must exit 0 (under ASan, also: no leak reports).
stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [[ $rc -eq 0 ]] || fail "modeldist-server exited with status $rc on SIGTERM"
}

# publish MODEL VERSION TIER FILE: publishes FILE and binds TIER; prints the digest.
publish() {
  "$PUBLISH_BIN" --server "$ADDR" --token-file "$WORK/admin.token" --model "$1" \
    --version "$2" --tier "$3" --file "$4"
}

# expect_exit WANT CMD...: runs CMD, which must exit with WANT; its stderr is kept in
# $WORK/stderr and its stdout in $WORK/stdout.
expect_exit() {
  local want=$1
  shift
  local rc=0
  "$@" >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
  if [[ $rc -ne $want ]]; then
    cat "$WORK/stderr" >&2
    fail "exit status $rc, want $want: $*"
  fi
}
