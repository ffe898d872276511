// File: ed25519.h
//
// Ed25519 keys over OpenSSL 3. Signatures are made over `context || 0x00 || message` so that a
// signature for one purpose (a manifest) can never be replayed as another (a trust root).
// Private keys live in PKCS#8 PEM files with mode 0600 and are never logged.
#ifndef MODELDIST_COMMON_ED25519_H_
#define MODELDIST_COMMON_ED25519_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

inline constexpr absl::string_view kManifestSignatureContext = "modeldist-manifest-v1";

// Returns `context` + one NUL byte + `message`: the exact bytes that are signed.
std::string SignedBytes(absl::string_view context, absl::string_view message);

class Ed25519PublicKey {
 public:
  // From the raw 32-byte key; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<Ed25519PublicKey> FromRaw(absl::string_view raw);
  // From a PEM SubjectPublicKeyInfo.
  static absl::StatusOr<Ed25519PublicKey> FromPem(absl::string_view pem);

  const std::string& raw() const { return raw_; }
  // First 16 hex digits of SHA-256(raw).
  std::string KeyId() const;
  std::string ToPem() const;
  // True when `signature` is a valid signature of SignedBytes(context, message).
  bool Verify(absl::string_view context, absl::string_view message,
              absl::string_view signature) const;

 private:
  explicit Ed25519PublicKey(std::string raw) : raw_(std::move(raw)) {}
  std::string raw_;
};

class Ed25519PrivateKey {
 public:
  static absl::StatusOr<Ed25519PrivateKey> Generate();
  // Reads a PKCS#8 PEM private key. NOT_FOUND if the file is missing, INVALID_ARGUMENT if it
  // is not an Ed25519 key. The message never contains key material.
  static absl::StatusOr<Ed25519PrivateKey> LoadPemFile(const std::string& path);
  // Writes the key atomically with mode 0600. ALREADY_EXISTS if `path` exists.
  absl::Status SavePemFile(const std::string& path) const;

  Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) noexcept;
  ~Ed25519PrivateKey();

  const Ed25519PublicKey& public_key() const { return *public_key_; }
  // Returns the 64-byte signature of SignedBytes(context, message).
  std::string Sign(absl::string_view context, absl::string_view message) const;

 private:
  struct Impl;
  explicit Ed25519PrivateKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Ed25519PublicKey> public_key_;
};

}  // namespace modeldist

#endif  // MODELDIST_COMMON_ED25519_H_
