#include "client/modeldistctl/pkcs11_signer.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/pkcs11_session.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// DER of the OID 1.3.101.112 (id-Ed25519, RFC 8410): CKA_EC_PARAMS of an Ed25519 key.
constexpr unsigned char kEd25519Params[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
constexpr size_t kEd25519SignatureBytes = 64;

std::string DescribeKey(const Pkcs11Uri& uri, const std::string& token) {
  std::string out = "key";
  if (uri.object.has_value()) absl::StrAppend(&out, " \"", *uri.object, "\"");
  if (uri.id.has_value()) absl::StrAppend(&out, " id ", HexEncode(*uri.id));
  return absl::StrCat(out, " in token \"", token, "\"");
}

class Pkcs11Signer final : public Signer {
 public:
  Pkcs11Signer(std::unique_ptr<Pkcs11Session> session, CK_OBJECT_HANDLE key, Ed25519PublicKey pub,
               std::string name)
      : session_(std::move(session)),
        key_(key),
        public_key_(std::move(pub)),
        name_(std::move(name)) {}

  const Ed25519PublicKey& public_key() const override { return public_key_; }

  absl::StatusOr<std::string> Sign(absl::string_view context,
                                   absl::string_view message) const override {
    std::string data = SignedBytes(context, message);
    std::string signature(kEd25519SignatureBytes, '\0');
    CK_ULONG length = signature.size();
    CK_MECHANISM mechanism = {CKM_EDDSA, nullptr, 0};  // no parameters: pure Ed25519
    CK_RV rv = session_->f()->C_SignInit(session_->handle(), &mechanism, key_);
    if (rv == CKR_OK) {
      rv = session_->f()->C_Sign(session_->handle(), reinterpret_cast<CK_BYTE_PTR>(data.data()),
                                 data.size(), reinterpret_cast<CK_BYTE_PTR>(signature.data()),
                                 &length);
    }
    if (rv != CKR_OK) {
      return Pkcs11Error(absl::StatusCode::kInternal, "PKCS11_SIGN_FAILED",
                         absl::StrCat(name_, " did not sign: ", Pkcs11RvName(rv)));
    }
    signature.resize(length);
    if (!public_key_.Verify(context, message, signature)) {
      return Pkcs11Error(
          absl::StatusCode::kInternal, "PKCS11_SIGN_FAILED",
          absl::StrCat(name_, " made a signature that its public key object (key id ",
                       public_key_.KeyId(), ") does not verify: the two are not one key pair"));
    }
    return signature;
  }

 private:
  std::unique_ptr<Pkcs11Session> session_;
  CK_OBJECT_HANDLE key_;
  Ed25519PublicKey public_key_;
  std::string name_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Signer>> OpenPkcs11Signer(const Pkcs11Uri& uri,
                                                         const Pkcs11Access& access) {
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Pkcs11Session> session,
                      Pkcs11Session::Open(uri, access, /*rw=*/false));
  const std::string name = DescribeKey(uri, session->label());
  MD_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> keys, session->Find(uri, CKO_PRIVATE_KEY));
  if (keys.empty()) {
    return Pkcs11Error(
        absl::StatusCode::kNotFound, "PKCS11_KEY_NOT_FOUND",
        absl::StrCat("no Ed25519 private ", name,
                     access.pin.empty() ? " (without a PIN a token may hide its private "
                                          "keys: give --pin-file)"
                                        : ""));
  }
  if (keys.size() > 1) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_KEY_AMBIGUOUS",
                       absl::StrCat("several Ed25519 private keys match ", name,
                                    "; name one with both object= and id="));
  }
  // The public key object next to it, else the private key's own CKA_EC_POINT (some modules
  // keep it there).
  MD_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> publics, session->Find(uri, CKO_PUBLIC_KEY));
  if (publics.size() > 1) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_KEY_AMBIGUOUS",
                       absl::StrCat("several Ed25519 public keys match ", name,
                                    "; name one with both object= and id="));
  }
  absl::StatusOr<Ed25519PublicKey> pub =
      publics.empty() ? session->PublicKeyOf(keys.front(), name)
                      : session->PublicKeyOf(publics.front(), absl::StrCat("public ", name));
  if (!pub.ok() && publics.empty()) {
    return Pkcs11Error(
        absl::StatusCode::kNotFound, "PKCS11_KEY_NOT_FOUND",
        absl::StrCat("no Ed25519 public key object for ", name, ": the key id comes from it"));
  }
  if (!pub.ok()) return pub.status();
  return std::make_unique<Pkcs11Signer>(std::move(session), keys.front(), *std::move(pub), name);
}

absl::StatusOr<Ed25519PublicKey> GeneratePkcs11Key(const Pkcs11Uri& uri,
                                                   const Pkcs11Access& access) {
  if (!uri.object.has_value()) {
    return UsageError("a key made in a token needs a label: object=LABEL in the pkcs11: URI");
  }
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Pkcs11Session> session,
                      Pkcs11Session::Open(uri, access, /*rw=*/true));
  const std::string name = DescribeKey(uri, session->label());
  // Labels and ids select keys later: a second key under the same name would make every
  // later use ambiguous. Each is checked alone (the URI may give both).
  for (int part = 0; part < 2; ++part) {
    Pkcs11Uri alone;
    if (part == 0) alone.object = uri.object;
    if (part == 1 && !uri.id.has_value()) continue;
    if (part == 1) alone.id = uri.id;
    for (CK_OBJECT_CLASS key_class : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      MD_ASSIGN_OR_RETURN(std::vector<CK_OBJECT_HANDLE> found, session->Find(alone, key_class));
      if (!found.empty()) {
        return Pkcs11Error(
            absl::StatusCode::kAlreadyExists, "PKCS11_KEY_EXISTS",
            absl::StrCat(
                "token \"", session->label(), "\" already holds an Ed25519 key ",
                part == 0 ? "labelled \"" + *uri.object + "\"" : "with id " + HexEncode(*uri.id),
                "; refusing to make a second"));
      }
    }
  }
  CK_BBOOL yes = CK_TRUE;
  CK_BBOOL no = CK_FALSE;
  std::string label = *uri.object;
  std::string id = uri.id.value_or("");
  std::string params(reinterpret_cast<const char*>(kEd25519Params), sizeof(kEd25519Params));
  std::vector<CK_ATTRIBUTE> public_template = {{CKA_TOKEN, &yes, sizeof(yes)},
                                               {CKA_VERIFY, &yes, sizeof(yes)},
                                               {CKA_EC_PARAMS, params.data(), params.size()},
                                               {CKA_LABEL, label.data(), label.size()}};
  std::vector<CK_ATTRIBUTE> private_template = {
      {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},      {CKA_LABEL, label.data(), label.size()}};
  if (uri.id.has_value()) {
    public_template.push_back({CKA_ID, id.data(), id.size()});
    private_template.push_back({CKA_ID, id.data(), id.size()});
  }
  CK_MECHANISM mechanism = {CKM_EC_EDWARDS_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
  CK_RV rv = session->f()->C_GenerateKeyPair(session->handle(), &mechanism, public_template.data(),
                                             public_template.size(), private_template.data(),
                                             private_template.size(), &public_key, &private_key);
  if (rv != CKR_OK) {
    return Pkcs11Error(absl::StatusCode::kFailedPrecondition, "PKCS11_KEYGEN_FAILED",
                       absl::StrCat("cannot make Ed25519 ", name, ": ", Pkcs11RvName(rv)));
  }
  return session->PublicKeyOf(public_key, absl::StrCat("the new public ", name));
}

}  // namespace modeldist::ctl
