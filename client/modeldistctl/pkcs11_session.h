// File: pkcs11_session.h
//
// The PKCS#11 C API under pkcs11_signer.h: a token's module loaded with dlopen and
// initialized, and a logged-in session on the one token a pkcs11: URI names, with the lookups
// of Ed25519 keys by label and id. Only pkcs11_signer.cc uses it; the include path of
// <p11-kit/pkcs11.h> is private to the modeldistctl library.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SESSION_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SESSION_H_

#include <p11-kit/pkcs11.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/pkcs11_uri.h"
#include "client/modeldistctl/signer.h"
#include "common/ed25519.h"

namespace modeldist::ctl {

// A local error (exit 3) with `reason` (one of pkcs11_signer.h's).
absl::Status Pkcs11Error(absl::StatusCode code, absl::string_view reason,
                         absl::string_view message);

// "CKR_PIN_INCORRECT" for the return values people meet, else "CKR 0x..".
std::string Pkcs11RvName(CK_RV rv);

class Pkcs11Module;

class Pkcs11Session {
 public:
  // Loads and initializes the module, finds the one initialized token that matches the URI's
  // token attributes, opens a session (read-write with `rw`) and logs in with `access.pin`.
  static absl::StatusOr<std::unique_ptr<Pkcs11Session>> Open(const Pkcs11Uri& uri,
                                                             const Pkcs11Access& access, bool rw);
  // Logs out, closes the session, and finalizes the module when this process initialized it.
  ~Pkcs11Session();
  Pkcs11Session(const Pkcs11Session&) = delete;
  Pkcs11Session& operator=(const Pkcs11Session&) = delete;

  CK_FUNCTION_LIST_PTR f() const;
  CK_SESSION_HANDLE handle() const { return handle_; }
  // The token's label, for messages.
  const std::string& label() const { return label_; }

  // The Ed25519 keys of `key_class` with the URI's label and id (at most 2: enough to tell one
  // from several).
  absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> Find(const Pkcs11Uri& uri,
                                                     CK_OBJECT_CLASS key_class) const;

  // CKA_EC_POINT of `object` as an Ed25519 public key; `what` names it in errors
  // (PKCS11_KEY_UNSUITABLE).
  absl::StatusOr<Ed25519PublicKey> PublicKeyOf(CK_OBJECT_HANDLE object,
                                               absl::string_view what) const;

 private:
  Pkcs11Session(std::shared_ptr<Pkcs11Module> module, CK_SESSION_HANDLE handle, std::string label);
  absl::Status Login(const CK_TOKEN_INFO& info, const std::string& pin);

  std::shared_ptr<Pkcs11Module> module_;
  CK_SESSION_HANDLE handle_;
  std::string label_;
  bool logged_in_ = false;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PKCS11_SESSION_H_
