#!/bin/sh
# Verifies the Ed25519 signature of a modeldist signed manifest with openssl alone, so anyone
# can check what a server, cache or mirror hands out without trusting modeldist code.
#
#   tools/verify-manifest.sh HOST:PORT TIER PLATFORM ARCH [DIR]
#       asks the server (plaintext gRPC, via `buf curl` from tools/buf) for the manifest and
#       the signing keys, and verifies; DIR, if given, keeps the answers as JSON.
#   tools/verify-manifest.sh --offline SIGNED_MANIFEST.json SIGNING_KEYS.json
#       verifies answers saved earlier (the JSON that buf curl or grpcurl print for
#       ManifestService.GetManifest and GetSigningKeys).
#
# Prints "Signature Verified Successfully" and exits 0, or prints why not and exits non-zero.
# Needs: openssl 3, jq, base64 (and buf, for the online form). BUF="buf" uses a buf on PATH.
set -eu

buf() {
  if [ -n "${BUF:-}" ]; then
    $BUF "$@"
  else
    npx --prefix "$(dirname "$0")/buf" --no-install buf "$@"
  fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${1:-}" = --offline ] && [ $# -eq 3 ]; then
  signed=$2
  keys=$3
elif [ $# -eq 4 ] || [ $# -eq 5 ]; then
  out=${5:-$work}
  mkdir -p "$out"
  signed=$out/signed-manifest.json
  keys=$out/signing-keys.json
  buf curl --protocol grpc --http2-prior-knowledge \
    -d "{\"tier\":\"$2\",\"platform\":\"$3\",\"arch\":\"$4\"}" \
    "http://$1/modeldist.v1.ManifestService/GetManifest" >"$signed"
  buf curl --protocol grpc --http2-prior-knowledge -d '{}' \
    "http://$1/modeldist.v1.ManifestService/GetSigningKeys" >"$keys"
else
  sed -n '5,12p' "$0" >&2
  exit 2
fi

# 1. The exact manifest bytes and the signature; JSON carries bytes fields as base64.
jq -r '.manifest' "$signed" | base64 -d >"$work/manifest.bin"
jq -r '.signatures[0].signature' "$signed" | base64 -d >"$work/signature.bin"
# 2. The public key with the signature's key id, as PEM.
key_id=$(jq -r '.signatures[0].keyId' "$signed")
jq -r --arg id "$key_id" '.keys[] | select(.keyId == $id) | .publicKeyPem' "$keys" \
  >"$work/key.pem"
if [ ! -s "$work/key.pem" ]; then
  echo "no signing key with key id $key_id" >&2
  exit 1
fi
# 3. What was signed: the context "modeldist-manifest-v1", one NUL byte, the manifest bytes.
{ printf 'modeldist-manifest-v1\000'; cat "$work/manifest.bin"; } >"$work/message.bin"
# 4. Ed25519 is verified over the raw message (-rawin), not over a digest of it.
openssl pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin -in "$work/message.bin" \
  -sigfile "$work/signature.bin"
