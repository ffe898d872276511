#!/usr/bin/env bash
# deploy/modeldist-server.conf, the documented example config: (a) it names every flag of
# `modeldist-server --help`, each after a comment documenting it (a new flag without an entry
# fails here), and nothing else; (b) the real server starts with `--config` on it, the
# deployment's paths and addresses overridden on the command line, and answers its gRPC and
# HTTP health checks; the values of the file are applied, and a mistake in it stops the start
# naming the file and line. The Kubernetes ConfigMap's config loads the same way.
#
# Usage: config_test.sh SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH   (ctest -L deploy runs it)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$(dirname "$0")/../e2e/e2e_lib.sh"
CONF=$SOURCE_DIR/deploy/modeldist-server.conf

step "(a) every flag of --help is in the example config, documented"
"$SERVER_BIN" --help >"$WORK/help.txt"
mapfile -t flags < <(sed -n 's/^  --\([a-z0-9-]*\).*/\1/p' "$WORK/help.txt" | grep -vx -e help -e config)
((${#flags[@]} > 15)) || fail "only ${#flags[@]} flags read from --help"
for flag in "${flags[@]}"; do
  line=$(grep -nE "^#?${flag}( |=|$)" "$CONF" | head -n 1 | cut -d: -f1) ||
    true
  [[ -n $line ]] || fail "--$flag is not in deploy/modeldist-server.conf: document it there"
  # Above it, past the entries of its group (tls-cert, tls-key), a "# " comment documents it.
  above=$((line - 1))
  while sed -n "${above}p" "$CONF" | grep -qE '^#?[a-z][a-z0-9-]* *(=| )'; do above=$((above - 1)); done
  sed -n "${above}p" "$CONF" | grep -q '^# [^ ]' ||
    fail "--$flag in deploy/modeldist-server.conf (line $line) has no comment above it"
done
# ...and names nothing else (commented-out entries included).
while read -r name; do
  grep -qx -- "$name" <<<"$(printf '%s\n' "${flags[@]}")" ||
    fail "deploy/modeldist-server.conf names \"$name\", which --help does not list"
done < <(sed -nE 's/^#?([a-z][a-z0-9-]*) *(=| ).*/\1/p' "$CONF")
echo "${#flags[@]} flags documented"

# check_health: the gRPC health service and the HTTP probes answer.
check_health() {
  local out
  out=$(buf_curl -d '{}' "$URL/grpc.health.v1.Health/Check") || fail "health check: $out"
  [[ $(jq -r .status <<<"$out") == SERVING ]] || fail "gRPC health: $out"
  [[ $(curl -sS "$HTTP/healthz") == '{"status":"ok"}' ]] || fail "/healthz"
  [[ $(curl -sS "$HTTP/readyz") == '{"status":"ready"}' ]] || fail "/readyz"
}
# serve CONFIG: starts the server on CONFIG, with the deployment's addresses and paths replaced;
# sets HTTP.
serve() {
  rm -f "$WORK/port" "$WORK/http-port"
  start_server --config "$1" --http-listen 127.0.0.1:0 --http-port-file "$WORK/http-port"
  HTTP=http://127.0.0.1:$(cat "$WORK/http-port")
}

step "(b) the server starts on the example config and answers its health checks"
serve "$CONF"
check_health
grep -q "(data: $WORK/data," "$WORK/server.log" || fail "--data-dir did not override the file"
grep -q "manifests at /functions/v1/local-llm-manifest" "$WORK/server.log" || fail "no HTTP line"
stop_server

step "the file's values are applied (a copy with another http-manifest-path)"
sed 's#^http-manifest-path = .*#http-manifest-path = /edge/manifest#' "$CONF" >"$WORK/edited.conf"
grep -q '^http-manifest-path = /edge/manifest$' "$WORK/edited.conf" || fail "sed changed nothing"
serve "$WORK/edited.conf"
grep -q "manifests at /edge/manifest" "$WORK/server.log" || fail "http-manifest-path not applied"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$HTTP/edge/manifest")
[[ $code == 400 ]] || fail "POST /edge/manifest without a platform: $code, want 400"
stop_server

step "a mistake stops the start with the file and line"
{ head -n 5 "$CONF"; echo "listen-adress = 127.0.0.1:1"; } >"$WORK/bad.conf"
expect_exit 2 "$SERVER_BIN" --config "$WORK/bad.conf" --admin-token-file "$WORK/admin.token" \
  --data-dir "$WORK/bad"
grep -qF "$WORK/bad.conf:6: unknown option \"listen-adress\"" "$WORK/stderr" ||
  fail "not named: $(cat "$WORK/stderr")"
[[ ! -e $WORK/bad ]] || fail "the data dir was created before the config was read"

step "the Kubernetes ConfigMap's config loads too"
node "$SOURCE_DIR/tests/node/check_deploy.mjs" "$SOURCE_DIR" configmap-conf >"$WORK/k8s.conf"
grep -q '^data-dir = ' "$WORK/k8s.conf" || fail "no config extracted: $(cat "$WORK/k8s.conf")"
serve "$WORK/k8s.conf"
check_health
stop_server
echo PASS
