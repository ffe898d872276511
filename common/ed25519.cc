#include "common/ed25519.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> RawPublic(EVP_PKEY* pkey) {
  std::string raw(32, '\0');
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1 ||
      len != 32) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEY", "not an Ed25519 key");
  }
  return raw;
}

}  // namespace

std::string SignedBytes(absl::string_view context, absl::string_view message) {
  std::string out;
  out.reserve(context.size() + 1 + message.size());
  out.append(context.data(), context.size());
  out.push_back('\0');
  out.append(message.data(), message.size());
  return out;
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRaw(absl::string_view raw) {
  if (raw.size() != 32) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEY",
                     absl::StrCat("an Ed25519 public key has 32 bytes, got ", raw.size()));
  }
  return Ed25519PublicKey(std::string(raw));
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey || EVP_PKEY_id(pkey.get()) != EVP_PKEY_ED25519) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEY",
                     "not a PEM Ed25519 public key");
  }
  auto raw = RawPublic(pkey.get());
  if (!raw.ok()) return raw.status();
  return Ed25519PublicKey(*std::move(raw));
}

std::string Ed25519PublicKey::KeyId() const { return Sha256::HexOf(raw_).substr(0, 16); }

std::string Ed25519PublicKey::ToPem() const {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()));
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), pkey.get());
  return BioToString(bio.get());
}

bool Ed25519PublicKey::Verify(absl::string_view context, absl::string_view message,
                              absl::string_view signature) const {
  if (signature.size() != 64) return false;
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()));
  if (!pkey) return false;
  std::string tbs = SignedBytes(context, message);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey.get()) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                             signature.size(), reinterpret_cast<const unsigned char*>(tbs.data()),
                             tbs.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

struct Ed25519PrivateKey::Impl {
  PkeyPtr pkey;
};

Ed25519PrivateKey::Ed25519PrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  public_key_ =
      std::make_unique<Ed25519PublicKey>(*Ed25519PublicKey::FromRaw(*RawPublic(impl_->pkey.get())));
}
Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey& Ed25519PrivateKey::operator=(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey::~Ed25519PrivateKey() = default;

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Generate() {
  PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!pkey) {
    return MakeError(absl::StatusCode::kInternal, "KEY_GENERATION_FAILED",
                     "Ed25519 key generation failed");
  }
  auto impl = std::make_unique<Impl>();
  impl->pkey = std::move(pkey);
  return Ed25519PrivateKey(std::move(impl));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::LoadPemFile(const std::string& path) {
  auto pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey || EVP_PKEY_id(pkey.get()) != EVP_PKEY_ED25519) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEY",
                     absl::StrCat(path,
                                  " is not a PEM Ed25519 private key (make one with "
                                  "`modeldistctl keys generate`)"),
                     {{"path", path}});
  }
  auto impl = std::make_unique<Impl>();
  impl->pkey = std::move(pkey);
  return Ed25519PrivateKey(std::move(impl));
}

absl::Status Ed25519PrivateKey::SavePemFile(const std::string& path) const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return MakeError(absl::StatusCode::kInternal, "KEY_ENCODING_FAILED",
                     "encoding the private key failed");
  }
  return WriteFileAtomically(path, BioToString(bio.get()), 0600, /*overwrite=*/false);
}

std::string Ed25519PrivateKey::Sign(absl::string_view context, absl::string_view message) const {
  std::string tbs = SignedBytes(context, message);
  std::string sig(64, '\0');
  size_t len = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, impl_->pkey.get());
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size());
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  return sig;
}

}  // namespace modeldist
