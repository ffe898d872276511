// File: pkcs11_signer.h
//
// Ed25519 keys in a PKCS#11 token (a smart card, an HSM, SoftHSM), used through the PKCS#11 C
// API of the token's module, which is loaded with dlopen: modeldistctl links no module, and
// needs none unless a --key is a pkcs11: URI (pkcs11_uri.h). Signing is CKM_EDDSA (pure
// Ed25519) over the same SignedBytes a key file signs, so verifiers cannot tell the two apart;
// the key id comes from the public key object's CKA_EC_POINT, as a key file's comes from its
// public key. The private key never leaves the token.
//
// Failures are local errors (exit 3) with a reason: PKCS11_MODULE_UNLOADABLE,
// PKCS11_TOKEN_NOT_FOUND, PKCS11_TOKEN_AMBIGUOUS, PKCS11_SESSION_FAILED, PKCS11_LOGIN_FAILED,
// PKCS11_KEY_NOT_FOUND, PKCS11_KEY_AMBIGUOUS, PKCS11_KEY_UNSUITABLE, PKCS11_SIGN_FAILED,
// PKCS11_KEY_EXISTS, PKCS11_KEYGEN_FAILED. Messages name the token and key, never the PIN.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SIGNER_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SIGNER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "client/modeldistctl/pkcs11_uri.h"
#include "client/modeldistctl/signer.h"
#include "common/ed25519.h"

namespace modeldist::ctl {

// Loads the module, finds the one token and the one Ed25519 private key `uri` names, logs in
// with `access.pin`, and returns a Signer that holds the session until it is destroyed. Each
// signature is checked against the public key before it is returned, so a public key object
// that belongs to another key is found at once, not by the devices.
absl::StatusOr<std::unique_ptr<Signer>> OpenPkcs11Signer(const Pkcs11Uri& uri,
                                                         const Pkcs11Access& access);

// Generates an Ed25519 key pair inside the token `uri` names (CKM_EC_EDWARDS_KEY_PAIR_GEN),
// labelled `uri.object` (required) and with CKA_ID `uri.id` when given; the private key is
// sensitive and not extractable. PKCS11_KEY_EXISTS when a key with that label or id is there.
// Returns the public key.
absl::StatusOr<Ed25519PublicKey> GeneratePkcs11Key(const Pkcs11Uri& uri,
                                                   const Pkcs11Access& access);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SIGNER_H_
