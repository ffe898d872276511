#!/usr/bin/env bash
# deploy/docker: what can run without a Docker daemon, for real.
#  - nginx.conf is loaded by a real nginx (Debian's, with the slice module) in front of the
#    real modeldist-server's HTTP listener, only its addresses and cache path replaced: a blob
#    fetched twice is a MISS then a HIT, a Range and a query string are served from the cache,
#    and the origin sees no request after the first download; probes pass, /metrics does not.
#  - The Dockerfile's runtime stage installs the package of every shared library the built
#    server links (readelf NEEDED -> dpkg -S); the build stage's COPYs are enough for CMake to
#    configure the tree; the Dockerfile and compose.yaml hold together
#    (tests/node/check_deploy.mjs, parsed with `yaml`).
#  - With a Docker daemon (`docker info` answers), the image is built and compose.yaml checked
#    by docker itself.
#
# Usage: docker_test.sh SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH   (ctest -L deploy runs it)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$(dirname "$0")/../e2e/e2e_lib.sh"
NGINX=/usr/sbin/nginx
[[ -x $NGINX ]] || fail "nginx is not installed (Debian nginx-light); run tools/install-deps.sh"
NGINX_PID=""
stop_nginx() {
  [[ -n $NGINX_PID ]] || return 0
  kill -TERM "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
}
# nginx first, then e2e_lib's cleanup (the server, $WORK) with the test's exit status.
trap 'rc=$?; stop_nginx; (exit $rc); cleanup' EXIT

step "the Dockerfile and compose.yaml hold together"
node "$SOURCE_DIR/tests/node/check_deploy.mjs" "$SOURCE_DIR" docker

step "the runtime stage installs every library the server links"
# The image is a release build; the ASan+UBSan test build links other libraries (the sanitizer
# runtimes, and c-ares directly), so only a release binary is compared with the list.
# (The output is read whole first: `grep -q` would stop reading early, and readelf's SIGPIPE fails
# the pipeline under pipefail.)
needed=$(readelf -d "$SERVER_BIN")
if grep -q 'NEEDED.*libasan' <<<"$needed"; then
  echo "skipped: $SERVER_BIN is a sanitizer build; the release build's run checks the list"
else
  node "$SOURCE_DIR/tests/node/check_deploy.mjs" "$SOURCE_DIR" runtime-packages >"$WORK/runtime"
  # In debian:12-slim already (apt itself needs them).
  printf '%s\n' libc6 libgcc-s1 libstdc++6 zlib1g >>"$WORK/runtime"
  while read -r lib; do
    path=$(ldd "$SERVER_BIN" | awk -v lib="$lib" '$1 == lib {print $3}')
    [[ -n $path ]] || fail "ldd does not resolve $lib"
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")") ||
      fail "no Debian package owns $path"
    pkg=${pkg%%:*}
    grep -qx "$pkg" "$WORK/runtime" || fail "$lib ($pkg) is not installed by the runtime stage"
    echo "$pkg"
  done < <(readelf -d "$SERVER_BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p') | sort -u | xargs echo
fi

step "the build stage's COPYs are all CMake needs: the tree configures from them alone"
mkdir "$WORK/context"
while read -r src; do
  mkdir -p "$WORK/context/$(dirname "$src")"
  cp -r "$SOURCE_DIR/$src" "$WORK/context/$src"
done < <(node "$SOURCE_DIR/tests/node/check_deploy.mjs" "$SOURCE_DIR" build-copies)
grep -q -- "-DMODELDIST_BUILD_TESTS=OFF" "$SOURCE_DIR/deploy/docker/Dockerfile" ||
  fail "the Dockerfile's cmake flags changed: update the test"
cmake -S "$WORK/context" -B "$WORK/context/build" -DCMAKE_BUILD_TYPE=Release \
  -DMODELDIST_BUILD_TESTS=OFF -DMODELDIST_BUILD_BENCH=OFF >"$WORK/cmake.log" 2>&1 ||
  { tail -n 20 "$WORK/cmake.log" >&2; fail "cmake does not configure from the COPYed files"; }
rm -rf "$WORK/context"

if timeout 10 docker info >/dev/null 2>&1; then
  step "docker builds the image and accepts compose.yaml"
  docker compose -f "$SOURCE_DIR/deploy/docker/compose.yaml" config -q
  docker build -q -f "$SOURCE_DIR/deploy/docker/Dockerfile" -t "modeldist-deploy-test:$$" \
    "$SOURCE_DIR"
  docker image rm "modeldist-deploy-test:$$" >/dev/null
else
    step "no Docker daemon here (docker info fails): image build not run"
fi

step "nginx.conf in front of the real server"
start_server --http-listen 127.0.0.1:0 --http-port-file "$WORK/http-port"
ORIGIN_PORT=$(cat "$WORK/http-port")
head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom >"$WORK/model.gguf"
digest=$(publish llama-3.1-8b 2026.12.0 llama8b "$WORK/model.gguf")
sha=$(sha256sum "$WORK/model.gguf" | cut -d' ' -f1)

P=$WORK/nginx
mkdir -p "$P/tmp" "$P/cache"
# The deploy file with the compose names replaced by loopback addresses and a scratch cache.
conf=$(cat "$SOURCE_DIR/deploy/docker/nginx.conf")
for text in "server modeldist:8480;" "listen 8080;" "/var/cache/nginx/modeldist"; do
  [[ $conf == *"$text"* ]] || fail "nginx.conf no longer has \"$text\": update the test"
done
start_nginx() {
  local port=$1
  sed -e "s#server modeldist:8480;#server 127.0.0.1:$ORIGIN_PORT;#" \
    -e "s#listen 8080;#listen 127.0.0.1:$port;#" -e "s#/var/cache/nginx/modeldist#$P/cache#" \
    "$SOURCE_DIR/deploy/docker/nginx.conf" >"$P/modeldist.conf"
  cat >"$P/nginx.conf" <<CONF
$([[ $(id -u) -eq 0 ]] && echo "user root;")
worker_processes 1;
daemon off;
pid $P/nginx.pid;
error_log $P/error.log warn;
events { worker_connections 256; }
http {
  access_log $P/access.log;
  client_body_temp_path $P/tmp/body;
  proxy_temp_path $P/tmp/proxy;
  fastcgi_temp_path $P/tmp/fastcgi;
  uwsgi_temp_path $P/tmp/uwsgi;
  scgi_temp_path $P/tmp/scgi;
  include $P/modeldist.conf;
}
CONF
  : >"$P/error.log"
  "$NGINX" -p "$P" -c "$P/nginx.conf" &
  NGINX_PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  stop_nginx
  return 1
}
# Free high ports are found by trying: a taken one makes nginx exit ("Address already in use").
for _ in $(seq 10); do
  NGINX_PORT=$((20000 + RANDOM % 40000))
  start_nginx "$NGINX_PORT" && break
  grep -q "Address already in use" "$P/error.log" || fail "nginx did not start: $(cat "$P/error.log")"
  NGINX_PORT=""
done
[[ -n $NGINX_PORT ]] || fail "no free port for nginx in 10 tries"
CACHE=http://127.0.0.1:$NGINX_PORT
step "nginx pid $NGINX_PID on 127.0.0.1:$NGINX_PORT, origin 127.0.0.1:$ORIGIN_PORT"

# blob requests the origin answered, from its /metrics.
origin_blob_requests() {
  curl -sS "http://127.0.0.1:$ORIGIN_PORT/metrics" |
    awk '/^modeldist_http_requests_total\{route="blob"/ {n += $2} END {print n + 0}'
}
# get URL [CURL ARGS...]: the body in $WORK/body, prints the status and X-Cache-Status.
get() {
  local url=$1
  shift
  curl -sS -D "$WORK/headers" -o "$WORK/body" "$@" "$url"
  awk 'NR == 1 {s = $2} tolower($1) == "x-cache-status:" {c = $2} END {print s, c}' \
    "$WORK/headers" | tr -d '\r'
}

step "first GET: a MISS, the blob's bytes"
[[ $(get "$CACHE/v1/blobs/$digest") == "200 MISS" ]] || fail "first GET: $(cat "$WORK/headers")"
[[ $(sha256sum "$WORK/body" | cut -d' ' -f1) == "$sha" ]] || fail "the bytes through nginx differ"
grep -qi '^cache-control: public, max-age=31536000, immutable' "$WORK/headers" ||
  fail "the origin's Cache-Control did not pass: $(cat "$WORK/headers")"
after_first=$(origin_blob_requests)
((after_first >= 4)) || fail "the origin saw $after_first blob requests, want a 1 MiB slice each"

step "second GET: a HIT, same bytes, the origin not asked"
[[ $(get "$CACHE/v1/blobs/$digest") == "200 HIT" ]] || fail "second GET: $(cat "$WORK/headers")"
[[ $(sha256sum "$WORK/body" | cut -d' ' -f1) == "$sha" ]] || fail "the cached bytes differ"

step "a Range from the cache"
[[ $(get "$CACHE/v1/blobs/$digest" -H "Range: bytes=1500000-1500099") == "206 HIT" ]] ||
  fail "Range: $(cat "$WORK/headers")"
cmp -s "$WORK/body" <(tail -c +1500001 "$WORK/model.gguf" | head -c 100) || fail "Range bytes differ"
grep -qi "^content-range: bytes 1500000-1500099/$((3 * 1024 * 1024 + 12345))" "$WORK/headers" ||
  fail "no Content-Range: $(cat "$WORK/headers")"

step "a query string neither splits the cache nor reaches the origin"
[[ $(get "$CACHE/v1/blobs/$digest?download=1&x=2") == "200 HIT" ]] ||
  fail "with a query string: $(cat "$WORK/headers")"
[[ $(origin_blob_requests) == "$after_first" ]] ||
  fail "the origin saw $(origin_blob_requests) blob requests, $after_first after the first GET"

step "probes and the edge function pass, /metrics and unknown paths do not"
[[ $(curl -sS "$CACHE/readyz") == '{"status":"ready"}' ]] || fail "/readyz through nginx"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$CACHE/metrics") == 404 ]] || fail "/metrics is open"
curl -sS -X POST "$CACHE/functions/v1/local-llm-manifest" -H "Content-Type: application/json" \
  -d '{"platform": "linux", "tier": "llama8b", "arch": "x86_64"}' >"$WORK/answer.json"
[[ $(jq -r '.artifacts[0].sha256' "$WORK/answer.json") == "$sha" ]] ||
  fail "edge function through nginx: $(cat "$WORK/answer.json")"
[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "$CACHE/v1/blobs/$digest") == 403 ]] ||
  fail "POST to a blob is not refused"
stop_nginx
stop_server
echo PASS
