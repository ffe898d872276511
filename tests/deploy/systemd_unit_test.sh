#!/usr/bin/env bash
# deploy/modeldist-server.service: `systemd-analyze verify` accepts it without a single warning
# (it reports unknown keys and bad values but still exits 0, so any output fails the test),
# `systemd-analyze security` rates its sandbox at most 2.0 ("OK"), it holds the hardening
# docs promise, its writable path is the example config's data-dir, and the binary needs no
# writable-and-executable memory (MemoryDenyWriteExecute would kill it otherwise). ExecStart
# must name an existing binary for verify, so the test checks a copy that runs the built one.
#
# Usage: systemd_unit_test.sh SOURCE_DIR MODELDIST_SERVER   (ctest -L deploy runs it)
set -euo pipefail
SOURCE_DIR=${1:?usage: $0 SOURCE_DIR MODELDIST_SERVER}
SERVER_BIN=${2:?usage: $0 SOURCE_DIR MODELDIST_SERVER}
UNIT=$SOURCE_DIR/deploy/modeldist-server.service
CONF=$SOURCE_DIR/deploy/modeldist-server.conf

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "--- $*"; }
command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze is not installed (Debian: systemd); run tools/install-deps.sh"
[[ -x $SERVER_BIN ]] || fail "$SERVER_BIN is not built"
SERVER_BIN=$(realpath "$SERVER_BIN") # ExecStart needs an absolute path

WORK=$(mktemp -d "${TMPDIR:-/tmp}/modeldist-systemd.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step "the unit runs /usr/local/bin/modeldist-server; the copy runs $SERVER_BIN"
grep -q '^ExecStart=/usr/local/bin/modeldist-server ' "$UNIT" || fail "ExecStart moved: update the test"
sed "s#^ExecStart=/usr/local/bin/modeldist-server #ExecStart=$SERVER_BIN #" "$UNIT" \
  >"$WORK/modeldist-server.service"

step "systemd-analyze verify: no errors, no warnings"
(cd "$WORK" && systemd-analyze verify ./modeldist-server.service) >"$WORK/verify.log" 2>&1 ||
  { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify failed"; }
[[ ! -s $WORK/verify.log ]] || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify warns"; }

step "systemd-analyze security: exposure at most 2.0"
(cd "$WORK" && systemd-analyze security --offline=true --threshold=20 --no-pager \
  ./modeldist-server.service) >"$WORK/security.log" 2>&1 ||
  { cat "$WORK/security.log" >&2; fail "the sandbox rates worse than 2.0"; }
grep -o 'Overall exposure level.*' "$WORK/security.log"

step "the hardening the docs promise is there"
for line in User=modeldist ProtectSystem=strict NoNewPrivileges=true PrivateDevices=true \
  ProtectKernelTunables=true ProtectKernelModules=true ProtectControlGroups=true \
  CapabilityBoundingSet= MemoryDenyWriteExecute=true SystemCallFilter=@system-service \
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK" \
  "ReadWritePaths=/var/lib/modeldist" "LoadCredential=admin.token:/etc/modeldist/admin.token"; do
  grep -qxF "$line" "$UNIT" || fail "no \"$line\" in the unit"
done
grep -q -- "--config /etc/modeldist/modeldist-server.conf" "$UNIT" || fail "the unit reads no --config"
grep -q -- "--admin-token-file %d/admin.token" "$UNIT" || fail "the token is not the credential"

step "the writable path is the example config's data-dir"
data_dir=$(sed -n 's/^data-dir *=* *//p' "$CONF")
[[ $data_dir == /var/lib/modeldist ]] || fail "the config's data-dir is \"$data_dir\""
grep -qxF "ReadWritePaths=$data_dir" "$UNIT" || fail "ReadWritePaths is not $data_dir"

step "no writable-and-executable memory needed (MemoryDenyWriteExecute)"
for elf in "$SERVER_BIN" $(ldd "$SERVER_BIN" | awk '$3 ~ /^\// {print $3}'); do
  stack=$(readelf -lW "$elf" | awk '$1 == "GNU_STACK" {print $7}')
  [[ $stack == RW ]] || fail "$elf asks for an executable stack (GNU_STACK flags \"$stack\")"
  wx=$(readelf -lW "$elf" | awk '$1 == "LOAD" && $7 ~ /W/ && $7 ~ /E/')
  if [[ -n $wx ]]; then
    fail "$elf has a writable and executable segment"
  fi
done
echo PASS
