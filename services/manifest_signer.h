// File: manifest_signer.h
//
// The seam between the manifest cache and whatever holds the signing keys (the server's
// KeyRing; a single key in tests), so the cache never sees private keys.
#ifndef MODELDIST_SERVICES_MANIFEST_SIGNER_H_
#define MODELDIST_SERVICES_MANIFEST_SIGNER_H_

#include <vector>

#include "absl/strings/string_view.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::services {

class ManifestSigner {
 public:
  virtual ~ManifestSigner() = default;
  // Signatures over `manifest` (serialized Manifest bytes) by every current signing key, at
  // least the trust root's threshold of them.
  virtual std::vector<v1::Signature> SignManifest(absl::string_view manifest) const = 0;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MANIFEST_SIGNER_H_
