#!/usr/bin/env bash
# The openssl-only manifest check of docs/verify-manifest.md, run against the real server:
# the doc's recipe is tools/verify-manifest.sh verbatim, it accepts a genuine manifest, and it
# rejects a manifest or signature with one byte flipped and a key that is not the signer's.
#
# Usage: verify_manifest_test.sh SOURCE_DIR MODELDIST_SERVER E2E_PUBLISH   (ctest -L e2e)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

readonly SCRIPT=$SOURCE_DIR/tools/verify-manifest.sh
readonly DOC=$SOURCE_DIR/docs/verify-manifest.md
readonly OK_TEXT="Signature Verified Successfully"
readonly BAD_TEXT="Signature Verification Failure"

step "docs/verify-manifest.md shows tools/verify-manifest.sh verbatim"
sed -n '/^<!-- BEGIN tools\/verify-manifest.sh -->$/,/^<!-- END tools\/verify-manifest.sh -->$/p' \
  "$DOC" | sed '1,2d;$d' | sed '$d' >"$WORK/doc-snippet.sh"
diff -u "$SCRIPT" "$WORK/doc-snippet.sh" >&2 ||
  fail "the recipe in docs/verify-manifest.md differs from tools/verify-manifest.sh"

start_server
head -c 3000 /dev/urandom >"$WORK/artifact.bin"
publish verify-model v1 verify-tier "$WORK/artifact.bin" >/dev/null

step "the recipe verifies a manifest fetched from the server"
expect_exit 0 "$SCRIPT" "$ADDR" verify-tier PLATFORM_LINUX ARCH_X86_64 "$WORK/answers"
grep -qx "$OK_TEXT" "$WORK/stdout" || fail "no '$OK_TEXT' in: $(cat "$WORK/stdout")"
signed=$WORK/answers/signed-manifest.json
keys=$WORK/answers/signing-keys.json

step "the served PEM is the public half of the server's signing key"
# The key ring keeps each private key in data/keys/<key id>.pem.
key_id=$(jq -r '.keys[0].keyId' "$keys")
openssl pkey -in "$WORK/data/keys/$key_id.pem" -pubout >"$WORK/expected.pem"
jq -j '.keys[0].publicKeyPem' "$keys" | diff -u "$WORK/expected.pem" - >&2 ||
  fail "GetSigningKeys serves another key than data/keys/$key_id.pem"

step "--offline verifies the saved answers"
expect_exit 0 "$SCRIPT" --offline "$signed" "$keys"
grep -qx "$OK_TEXT" "$WORK/stdout" || fail "offline: $(cat "$WORK/stdout")"

# flip_byte IN OUT POS: OUT is IN with bit 0 of byte POS flipped.
flip_byte() {
  local b
  b=$(od -An -tu1 -j"$3" -N1 "$1" | tr -d ' ')
  {
    head -c "$3" "$1"
    # The flipped byte as an octal escape: printf's format is the only portable way to
    # write an arbitrary byte, NUL included.
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $((b ^ 1)))"
    tail -c +"$(($3 + 2))" "$1"
  } >"$2"
}

# expect_rejected JSON_FILE WHAT: the offline recipe must refuse JSON_FILE.
expect_rejected() {
  local rc=0
  "$SCRIPT" --offline "$1" "$keys" >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
  [[ $rc -ne 0 ]] || fail "a $2 verified: $(cat "$WORK/stdout")"
  grep -q "$BAD_TEXT" "$WORK/stdout" "$WORK/stderr" ||
    fail "a $2 was refused, but not with '$BAD_TEXT': $(cat "$WORK/stdout" "$WORK/stderr")"
}

jq -r .manifest "$signed" | base64 -d >"$WORK/manifest.bin"
size=$(wc -c <"$WORK/manifest.bin")
for pos in 0 $((size / 2)) $((size - 1)); do
  step "a manifest with byte $pos of $size flipped is refused"
  flip_byte "$WORK/manifest.bin" "$WORK/tampered.bin" "$pos"
  cmp -s "$WORK/manifest.bin" "$WORK/tampered.bin" && fail "flip_byte changed nothing"
  jq --arg m "$(base64 -w0 "$WORK/tampered.bin")" '.manifest = $m' "$signed" \
    >"$WORK/tampered.json"
  expect_rejected "$WORK/tampered.json" "manifest with one byte flipped"
done

step "a signature with one byte flipped is refused"
jq -r '.signatures[0].signature' "$signed" | base64 -d >"$WORK/signature.bin"
flip_byte "$WORK/signature.bin" "$WORK/bad-signature.bin" 10
jq --arg s "$(base64 -w0 "$WORK/bad-signature.bin")" '.signatures[0].signature = $s' "$signed" \
  >"$WORK/bad-signature.json"
expect_rejected "$WORK/bad-signature.json" "signature with one byte flipped"

step "another Ed25519 key under the signer's key id is refused"
openssl genpkey -algorithm ed25519 -out "$WORK/other.key" 2>/dev/null
openssl pkey -in "$WORK/other.key" -pubout >"$WORK/other.pem"
jq --rawfile pem "$WORK/other.pem" '.keys[0].publicKeyPem = $pem' "$keys" >"$WORK/other-keys.json"
rc=0
"$SCRIPT" --offline "$signed" "$WORK/other-keys.json" >"$WORK/stdout" 2>&1 || rc=$?
if [[ $rc -eq 0 ]] || ! grep -q "$BAD_TEXT" "$WORK/stdout"; then
  fail "a manifest verified with a key that did not sign it: $(cat "$WORK/stdout")"
fi

step "a signature whose key id is unknown is refused"
jq '.signatures[0].keyId = "0000000000000000"' "$signed" >"$WORK/unknown-key.json"
expect_exit 1 "$SCRIPT" --offline "$WORK/unknown-key.json" "$keys"
grep -q "no signing key with key id 0000000000000000" "$WORK/stderr" ||
  fail "unexpected: $(cat "$WORK/stderr")"

step "SIGTERM stops the server cleanly"
stop_server
echo "PASS"
