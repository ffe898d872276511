#!/usr/bin/env bash
# The real modeldist-server as an admin sees it through a reflection-based gRPC CLI
# (`buf curl`, from tools/buf): services listed, unary and server-streaming calls with JSON,
# health, admin auth, and readable errors.
#
# Usage: buf_curl_test.sh SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH   (ctest -L e2e runs it)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

# gRPC status codes as `buf curl` exit codes: code << 3.
readonly EXIT_INVALID_ARGUMENT=$((3 << 3))
readonly EXIT_NOT_FOUND=$((5 << 3))
readonly EXIT_UNAUTHENTICATED=$((16 << 3))

# A 4 KiB chunk size turns a 10000-byte artifact into 3 Read messages (4096 + 4096 + 1808).
start_server --chunk-size 4KiB
head -c 10000 /dev/urandom >"$WORK/artifact.bin"
want_digest=sha256:$(sha256sum "$WORK/artifact.bin" | cut -d' ' -f1)
# A new sequence is never below the server's clock in microseconds (TierBinding.sequence).
clock_before_bind=$(date +%s%6N)
digest=$(publish e2e-model v1 e2e-tier "$WORK/artifact.bin")
[[ $digest == "$want_digest" ]] || fail "e2e_publish printed $digest, want $want_digest"

step "--list-services shows our services, health and reflection"
buf_curl --list-services "$URL" >"$WORK/services"
for service in modeldist.v1.RegistryService modeldist.v1.ManifestService \
  modeldist.v1.ArtifactService grpc.health.v1.Health \
  grpc.reflection.v1alpha.ServerReflection; do
  grep -qx "$service" "$WORK/services" || fail "$service not listed; got: $(cat "$WORK/services")"
done

step "--list-methods shows the rpcs"
buf_curl --list-methods "$URL" >"$WORK/methods"
for method in modeldist.v1.ManifestService/GetManifest modeldist.v1.ArtifactService/Read \
  modeldist.v1.RegistryService/WriteArtifact modeldist.v1.RegistryService/ScrubBlobs; do
  grep -qx "$method" "$WORK/methods" || fail "$method not listed"
done

step "unary GetManifest with JSON input: signed manifest for what we published"
manifest_request='{"tier":"e2e-tier","platform":"PLATFORM_LINUX","arch":"ARCH_X86_64"}'
buf_curl -d "$manifest_request" "$URL/modeldist.v1.ManifestService/GetManifest" \
  >"$WORK/signed.json"
jq -e '(.manifest | type) == "string" and (.signatures | length) >= 1
       and (.signatures[0].keyId | test("^[0-9a-f]{16}$"))' "$WORK/signed.json" >/dev/null ||
  fail "unexpected SignedManifest JSON: $(cat "$WORK/signed.json")"
# `manifest` is bytes (base64 in JSON); decode it as modeldist.v1.Manifest to check its fields.
jq -r .manifest "$WORK/signed.json" | base64 -d >"$WORK/manifest.bin"
buf_cli convert "$SOURCE_DIR/proto" --type modeldist.v1.Manifest \
  --from "$WORK/manifest.bin#format=binpb" --to "$WORK/manifest.json#format=json"
jq -e --arg digest "$digest" '
  .tier == "e2e-tier" and .channel == "stable"
  and .version == "models/e2e-model/versions/v1"
  and .artifact.digest == $digest and .artifact.sizeBytes == "10000"
  and .artifact.chunkSize == "4194304" and (.artifact.chunkChain | length) == 1
  and .issuedAt != null and .expiresAt != null' "$WORK/manifest.json" >/dev/null ||
  fail "unexpected Manifest: $(cat "$WORK/manifest.json")"
# The artifact fits one 4 MiB chunk, so its chain has one entry: the whole file's SHA-256.
chunk_hex=$(jq -r '.artifact.chunkChain[0]' "$WORK/manifest.json" | base64 -d | od -An -tx1 | tr -d ' \n')
[[ "sha256:$chunk_hex" == "$digest" ]] || fail "chain entry $chunk_hex does not match $digest"
sequence1=$(jq -r .sequence "$WORK/manifest.json")
((sequence1 >= clock_before_bind)) ||
  fail "sequence $sequence1 is below the clock at the bind ($clock_before_bind us)"
sig_len=$(jq -r '.signatures[0].signature' "$WORK/signed.json" | base64 -d | wc -c)
[[ $sig_len -eq 64 ]] || fail "signature is $sig_len bytes, want 64 (Ed25519)"

step "GetSigningKeys names the key that signed"
buf_curl -d '{}' "$URL/modeldist.v1.ManifestService/GetSigningKeys" >"$WORK/keys.json"
key_id=$(jq -r '.signatures[0].keyId' "$WORK/signed.json")
jq -e --arg id "$key_id" '.keys | any(.keyId == $id and .algorithm == "ed25519"
    and (.publicKeyPem | startswith("-----BEGIN PUBLIC KEY-----")))' "$WORK/keys.json" \
  >/dev/null || fail "no ed25519 key $key_id in $(cat "$WORK/keys.json")"

step "ArtifactService.Stat"
buf_curl -d "{\"digest\":\"$digest\"}" "$URL/modeldist.v1.ArtifactService/Stat" \
  >"$WORK/stat.json"
jq -e --arg digest "$digest" \
  '.digest == $digest and .sizeBytes == "10000" and .readMessageBytes == "4096"' "$WORK/stat.json" \
  >/dev/null || fail "unexpected StatResponse: $(cat "$WORK/stat.json")"

step "server-streaming Read: 3 JSON documents whose bytes hash to the digest"
buf_curl -d "{\"digest\":\"$digest\"}" "$URL/modeldist.v1.ArtifactService/Read" \
  >"$WORK/read.json"
docs=$(jq -s length "$WORK/read.json")
[[ $docs -eq 3 ]] || fail "Read sent $docs messages, want 3"
# int64 is a JSON string, and proto3 JSON leaves out the default offset 0.
offsets=$(jq -r '.offset // "0"' "$WORK/read.json" | tr '\n' ' ')
[[ $offsets == "0 4096 8192 " ]] || fail "Read offsets are '$offsets', want '0 4096 8192 '"
# Each message's data is base64 on its own (padding included), so decode them one by one.
: >"$WORK/read.bin"
while read -r chunk; do
  printf '%s' "$chunk" | base64 -d >>"$WORK/read.bin"
done < <(jq -r .data "$WORK/read.json")
got=sha256:$(sha256sum "$WORK/read.bin" | cut -d' ' -f1)
[[ $got == "$digest" ]] || fail "Read bytes hash to $got, want $digest"

step "a resumed Read (offset 5000) sends the rest"
buf_curl -d "{\"digest\":\"$digest\",\"offset\":\"5000\"}" \
  "$URL/modeldist.v1.ArtifactService/Read" >"$WORK/resumed.json"
rest=$(jq -r .data "$WORK/resumed.json" | while read -r c; do printf '%s' "$c" | base64 -d; done |
  wc -c)
[[ $rest -eq 5000 ]] || fail "Read from 5000 gave $rest bytes, want 5000"

step "grpc.health.v1.Health/Check {\"service\":\"\"} is SERVING"
buf_curl -d '{"service":""}' "$URL/grpc.health.v1.Health/Check" >"$WORK/health.json" ||
  fail "Health/Check failed (is health.proto's descriptor linked into the server?)"
jq -e '.status == "SERVING"' "$WORK/health.json" >/dev/null ||
  fail "health: $(cat "$WORK/health.json")"

step "an admin rpc without a token is UNAUTHENTICATED and changes nothing"
expect_exit "$EXIT_UNAUTHENTICATED" buf_curl -d '{}' \
  "$URL/modeldist.v1.RegistryService/ListTiers"
jq -e '.code == "unauthenticated" and (.message | contains("authorization"))' \
  "$WORK/stderr" >/dev/null || fail "unexpected error: $(cat "$WORK/stderr")"
expect_exit "$EXIT_UNAUTHENTICATED" buf_curl -H "authorization: Bearer wrong-token-0123456789" \
  -d '{"tier":"e2e-tier","version":"models/e2e-model/versions/v1"}' \
  "$URL/modeldist.v1.RegistryService/SetTier"

step "with the token, admin rpcs work: ListTiers, then SetTier raises the sequence"
buf_curl -H "authorization: Bearer $TOKEN" -d '{}' \
  "$URL/modeldist.v1.RegistryService/ListTiers" >"$WORK/tiers.json"
jq -e --arg sequence "$sequence1" '.tiers | any(.tier == "e2e-tier" and .channel == "stable"
    and .sequence == $sequence and .version == "models/e2e-model/versions/v1")' \
  "$WORK/tiers.json" >/dev/null ||
  fail "unexpected ListTiers: $(cat "$WORK/tiers.json")"
head -c 5000 /dev/urandom >"$WORK/artifact2.bin"
digest2=$(publish e2e-model v2 other-tier "$WORK/artifact2.bin")
clock_before_set=$(date +%s%6N)
buf_curl -H "authorization: Bearer $TOKEN" \
  -d '{"tier":"e2e-tier","version":"models/e2e-model/versions/v2"}' \
  "$URL/modeldist.v1.RegistryService/SetTier" >"$WORK/binding.json"
jq -e '.version == "models/e2e-model/versions/v2"' "$WORK/binding.json" >/dev/null ||
  fail "unexpected TierBinding: $(cat "$WORK/binding.json")"
sequence2=$(jq -r .sequence "$WORK/binding.json")
((sequence2 > sequence1 && sequence2 >= clock_before_set)) ||
  fail "SetTier gave sequence $sequence2: want above $sequence1 and the clock ($clock_before_set us)"
buf_curl -d "$manifest_request" "$URL/modeldist.v1.ManifestService/GetManifest" |
  jq -r .manifest | base64 -d >"$WORK/manifest2.bin"
buf_cli convert "$SOURCE_DIR/proto" --type modeldist.v1.Manifest \
  --from "$WORK/manifest2.bin#format=binpb" --to "$WORK/manifest2.json#format=json"
jq -e --arg digest "$digest2" --arg sequence "$sequence2" \
  '.sequence == $sequence and .artifact.digest == $digest' \
  "$WORK/manifest2.json" >/dev/null || fail "manifest after SetTier: $(cat "$WORK/manifest2.json")"

step "INVALID_ARGUMENT names the bad field"
expect_exit "$EXIT_INVALID_ARGUMENT" buf_curl -H "authorization: Bearer $TOKEN" \
  -d '{"parent":"models/e2e-model","versionId":"v3","artifacts":[{"platform":"PLATFORM_LINUX",
       "arch":"ARCH_ANY","format":"FORMAT_GGUF","digest":"sha256:XYZ","sizeBytes":"3"}]}' \
  "$URL/modeldist.v1.RegistryService/CreateVersion"
jq -e '.code == "invalid_argument" and (.message | contains("artifacts[0].digest"))
       and (.details | any(.type == "google.rpc.ErrorInfo"))' "$WORK/stderr" >/dev/null ||
  fail "unexpected error: $(cat "$WORK/stderr")"
expect_exit "$EXIT_INVALID_ARGUMENT" buf_curl -d '{"tier":"e2e-tier","arch":"ARCH_X86_64"}' \
  "$URL/modeldist.v1.ManifestService/GetManifest"
jq -e '.code == "invalid_argument" and (.message | contains("platform"))' "$WORK/stderr" \
  >/dev/null || fail "unexpected error: $(cat "$WORK/stderr")"

step "server-streaming ScrubBlobs (described by reflection): every stored blob OK"
buf_curl -H "authorization: Bearer $TOKEN" -d '{"bytesPerSecond":"0"}' \
  "$URL/modeldist.v1.RegistryService/ScrubBlobs" >"$WORK/scrub.json"
jq -s -e 'length >= 2 and all(.outcome == "OK")
          and (.[-1].blobsDone == .[-1].blobsTotal) and (map(.digest) | index($d) != null)' \
  --arg d "$digest" "$WORK/scrub.json" >/dev/null || fail "unexpected scrub: $(cat "$WORK/scrub.json")"
expect_exit "$EXIT_INVALID_ARGUMENT" buf_curl -H "authorization: Bearer $TOKEN" \
  -d '{"bytesPerSecond":"-1"}' "$URL/modeldist.v1.RegistryService/ScrubBlobs"
jq -e '.code == "invalid_argument" and (.message | contains("bytes_per_second"))' \
  "$WORK/stderr" >/dev/null || fail "unexpected error: $(cat "$WORK/stderr")"

step "NOT_FOUND for a tier nobody bound"
expect_exit "$EXIT_NOT_FOUND" buf_curl \
  -d '{"tier":"no-such-tier","platform":"PLATFORM_LINUX","arch":"ARCH_X86_64"}' \
  "$URL/modeldist.v1.ManifestService/GetManifest"

step "SIGTERM stops the server cleanly"
stop_server
echo "PASS"
