#include "client/modeldistctl/signer.h"

#include <openssl/crypto.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/pkcs11_signer.h"
#include "client/modeldistctl/pkcs11_uri.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

class FileSigner final : public Signer {
 public:
  explicit FileSigner(Ed25519PrivateKey key) : key_(std::move(key)) {}
  const Ed25519PublicKey& public_key() const override { return key_.public_key(); }
  absl::StatusOr<std::string> Sign(absl::string_view context,
                                   absl::string_view message) const override {
    return key_.Sign(context, message);
  }

 private:
  Ed25519PrivateKey key_;
};

absl::StatusOr<std::unique_ptr<Signer>> OpenKeyFile(const std::string& path) {
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::LoadPemFile(path);
  if (!key.ok()) {
    return LocalError(WithMessage(
        key.status(), absl::StrCat("--key ", path, ": ", key.status().message(),
                                   " (expected a PKCS#8 Ed25519 private key, e.g. NAME.pem from "
                                   "`root keygen`, or a pkcs11: URI)")));
  }
  return std::make_unique<FileSigner>(*std::move(key));
}

// Wipes the PIN when the access is done with (it is copied nowhere else).
struct WipedAccess {
  Pkcs11Access access;
  ~WipedAccess() { OPENSSL_cleanse(access.pin.data(), access.pin.size()); }
};

}  // namespace

void AddPkcs11Flags(Flags* f) {
  f->Add("pkcs11-module", "SO", "",
         absl::StrCat("with a pkcs11: --key: the token's PKCS#11 module (default: $",
                      kPkcs11ModuleEnv, ")"));
  f->Add("pin-file", "FILE", "",
         absl::StrCat("with a pkcs11: --key: a file whose first line is the token's user PIN "
                      "(default: $",
                      kPkcs11PinEnv, ")"));
}

absl::StatusOr<Pkcs11Access> Pkcs11AccessFromFlags(const Invocation& inv, const Flags& flags,
                                                   absl::string_view uri_module_path) {
  Pkcs11Access access;
  access.module_path = flags.Get("pkcs11-module");
  if (access.module_path.empty()) access.module_path = std::string(uri_module_path);
  if (access.module_path.empty()) access.module_path = inv.GetEnv(kPkcs11ModuleEnv).value_or("");
  if (access.module_path.empty()) {
    return UsageError(
        absl::StrCat("a pkcs11: --key needs the token's module: --pkcs11-module SO or $",
                     kPkcs11ModuleEnv, " (e.g. /usr/lib/softhsm/libsofthsm2.so)"));
  }
  const std::string pin_file = flags.Get("pin-file");
  if (!pin_file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(pin_file);
    if (!text.ok()) {
      return LocalError(MakeError(
          text.status().code(), "PKCS11_PIN_UNREADABLE",
          absl::StrCat("cannot read --pin-file ", pin_file, ": ", text.status().message())));
    }
    access.pin = text->substr(0, text->find_first_of("\r\n"));
    OPENSSL_cleanse(text->data(), text->size());
  } else {
    access.pin = inv.GetEnv(kPkcs11PinEnv).value_or("");
  }
  return access;
}

absl::StatusOr<std::unique_ptr<Signer>> OpenSigner(const Invocation& inv, const Flags& flags) {
  const std::string key = flags.Get("key");
  if (!IsPkcs11Uri(key)) {
    if (flags.IsSet("pkcs11-module") || flags.IsSet("pin-file")) {
      return UsageError("--pkcs11-module and --pin-file go with a pkcs11: --key");
    }
    return OpenKeyFile(key);
  }
  MD_ASSIGN_OR_RETURN(Pkcs11Uri uri, ParsePkcs11Uri(key));
  WipedAccess access;
  MD_ASSIGN_OR_RETURN(access.access,
                      Pkcs11AccessFromFlags(inv, flags, uri.module_path.value_or("")));
  return OpenPkcs11Signer(uri, access.access);
}

}  // namespace modeldist::ctl
