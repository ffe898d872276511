// File: signer.h
//
// The key that signs roots and releases (docs/trust.md), whichever way it is held: a PKCS#8
// PEM file (`root keygen`), or an Ed25519 key in a PKCS#11 token (a smart card, an HSM,
// SoftHSM) named by a pkcs11: URI (pkcs11_signer.h). Every command that signs takes --key and
// opens it here, so that a new kind of key is one more Signer rather than a branch per command.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_SIGNER_H_
#define MODELDIST_CLIENT_MODELDISTCTL_SIGNER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/invocation.h"
#include "common/ed25519.h"
#include "common/flags.h"

namespace modeldist::ctl {

// The environment variables that stand in for --pkcs11-module and --pin-file.
inline constexpr char kPkcs11ModuleEnv[] = "MODELDIST_PKCS11_MODULE";
inline constexpr char kPkcs11PinEnv[] = "MODELDIST_PKCS11_PIN";

class Signer {
 public:
  virtual ~Signer() = default;
  // The public key; its KeyId() is the key id of the signatures.
  virtual const Ed25519PublicKey& public_key() const = 0;
  // The 64-byte Ed25519 signature of SignedBytes(context, message). A token can fail here
  // (removed, logged out); a local error with a reason then.
  virtual absl::StatusOr<std::string> Sign(absl::string_view context,
                                           absl::string_view message) const = 0;
};

// Where a pkcs11: key is found, and the PIN that unlocks it. The PIN is never logged.
struct Pkcs11Access {
  std::string module_path;  // the PKCS#11 module (.so) to load
  std::string pin;          // empty: log in without one (a PIN pad), or not at all
};

// Declares --pkcs11-module and --pin-file, which go with a pkcs11: --key.
void AddPkcs11Flags(Flags* f);

// The module and PIN for a pkcs11: --key: --pkcs11-module, else the URI's module-path, else
// $MODELDIST_PKCS11_MODULE; the first line of --pin-file, else $MODELDIST_PKCS11_PIN. A usage
// error when no module is named; a local error PKCS11_PIN_UNREADABLE when the PIN file
// cannot be read.
absl::StatusOr<Pkcs11Access> Pkcs11AccessFromFlags(const Invocation& inv, const Flags& flags,
                                                   absl::string_view uri_module_path);

// The signer --key names: a PKCS#8 Ed25519 private key file, or a pkcs11: URI (with
// --pkcs11-module and --pin-file). Local errors (exit 3) that say which and why.
absl::StatusOr<std::unique_ptr<Signer>> OpenSigner(const Invocation& inv, const Flags& flags);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_SIGNER_H_
