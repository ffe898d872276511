#!/usr/bin/env bash
# The real modeldist-server's HTTP listener through its flags, as an operator starts it: the
# seed's step 6 with curl, the app's reading of the answer with jq (URL, SHA-256, size; the
# bytes at the URL match), the signed manifest in the answer checked with the openssl recipe,
# /metrics accepted by promtool, the probes, the JSON request log in --log-file, the origin
# secret, a clean SIGTERM, and flags refused with a message.
#
# Usage: http_test.sh SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH   (ctest -L e2e runs it)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

command -v promtool >/dev/null || fail "promtool is not installed; run tools/install-deps.sh"

step "bad HTTP flags are refused, naming the flag"
expect_exit 2 "$SERVER_BIN" --data-dir "$WORK/bad" --admin-token-file /dev/null \
  --log-level loud
grep -q -- "--log-level" "$WORK/stderr" || fail "no --log-level in: $(cat "$WORK/stderr")"
openssl rand -hex 24 >"$WORK/bad.token"
expect_exit 2 "$SERVER_BIN" --data-dir "$WORK/bad" --admin-token-file "$WORK/bad.token" \
  --listen 127.0.0.1:0 --http-listen nonsense
grep -q -- "--http-listen" "$WORK/stderr" || fail "no --http-listen in: $(cat "$WORK/stderr")"

openssl rand -hex 20 >"$WORK/origin.secret"
start_server --http-listen 127.0.0.1:0 --http-port-file "$WORK/http-port" \
  --log-file "$WORK/requests.log" --http-origin-secret-file "$WORK/origin.secret"
HTTP=http://127.0.0.1:$(cat "$WORK/http-port")
grep -q "HTTP on 127.0.0.1:" "$WORK/server.log" || fail "no HTTP line in the server's log"
head -c 300000 /dev/urandom >"$WORK/model.gguf"
digest=$(publish llama-3.1-8b 2026.11.0 llama8b "$WORK/model.gguf")

step "the seed's step 6: POST {platform, tier}"
curl -sS -X POST "$HTTP/functions/v1/local-llm-manifest" \
  -H "Content-Type: application/json" \
  -d '{"platform": "linux", "tier": "llama8b", "arch": "x86_64"}' >"$WORK/answer.json"
url=$(jq -r '.artifacts[0].url' "$WORK/answer.json")
sha=$(jq -r '.artifacts[0].sha256' "$WORK/answer.json")
size=$(jq -r '.artifacts[0].size_bytes' "$WORK/answer.json")
[[ sha256:$sha == "$digest" ]] || fail "sha256 $sha, published $digest"
[[ $size == 300000 ]] || fail "size_bytes $size, want 300000"
[[ $url == "$HTTP/v1/blobs/$digest" ]] || fail "url $url"

step "the URL serves the bytes to the CDN (with the origin secret), and to nobody else"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[[ $code == 403 ]] || fail "a blob GET without the origin secret got $code, want 403"
curl -sSf -H "X-Modeldist-Origin-Secret: $(cat "$WORK/origin.secret")" -o "$WORK/download" "$url"
[[ $(sha256sum "$WORK/download" | cut -d' ' -f1) == "$sha" ]] || fail "downloaded bytes differ"

step "the signed manifest in the answer verifies with the openssl recipe"
jq '.artifacts[0].signed_manifest' "$WORK/answer.json" >"$WORK/signed.json"
buf_curl -d '{}' "$URL/modeldist.v1.ManifestService/GetSigningKeys" >"$WORK/keys.json"
expect_exit 0 "$SOURCE_DIR/tools/verify-manifest.sh" --offline "$WORK/signed.json" \
  "$WORK/keys.json"
grep -qx "Signature Verified Successfully" "$WORK/stdout" || fail "not verified: $(cat "$WORK/stdout")"

step "probes and /metrics"
[[ $(curl -sS "$HTTP/healthz") == '{"status":"ok"}' ]] || fail "/healthz"
[[ $(curl -sS "$HTTP/readyz") == '{"status":"ready"}' ]] || fail "/readyz"
curl -sS "$HTTP/metrics" >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt" >&2 || fail "promtool rejects /metrics"
grep -q '^modeldist_http_requests_total{route="blob",code="200"} 1$' "$WORK/metrics.txt" ||
  fail "blob 200 not counted once: $(grep http_requests_total "$WORK/metrics.txt")"
grep -q '^modeldist_http_requests_total{route="blob",code="403"} 1$' "$WORK/metrics.txt" ||
  fail "blob 403 not counted once"

step "one JSON line per request in --log-file, without the secret"
jq -e -s 'map(select(.protocol == "http" and .code == "403")) | length == 1' \
  "$WORK/requests.log" >/dev/null || fail "no single 403 line in the request log"
jq -e -s 'map(select(.protocol == "grpc")) | length > 0' "$WORK/requests.log" >/dev/null ||
  fail "no gRPC line in the request log"
if grep -qF "$(cat "$WORK/origin.secret")" "$WORK/requests.log" "$WORK/server.log"; then
  fail "the origin secret reached a log"
fi

step "SIGTERM stops the server cleanly with the listener open"
stop_server
echo "PASS"
