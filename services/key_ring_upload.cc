// KeyRing::UploadRoot: publishing a trust root that was made and signed offline (roles,
// common/trust.h). The server cannot make such a root: it only adds what it holds (online
// signatures), checks it as devices will, and stores it.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/status.h"
#include "common/trust.h"
#include "services/key_ring.h"

namespace modeldist::services {

absl::StatusOr<KeyRing::VerifiedRoot> KeyRing::UploadRoot(const v1::SignedTrustRoot& next,
                                                          absl::string_view actor) {
  absl::MutexLock lock(&mu_);
  v1::TrustRoot parsed;
  if (!parsed.ParseFromString(next.root())) {
    // Checked before signing: the ring signs only bytes that are a root.
    return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
                     "the uploaded root's signed bytes do not parse as a TrustRoot");
  }

  // Signatures by the online keys we hold of the newest root (which vouch for the next one
  // when the newest has no root keys, and which agents that predate roles count) and of the
  // next root (which accept the role). Only keys of those two roots sign: the ring never
  // signs a root with a key it merely holds. A signature the upload carries under one of
  // those key ids is replaced: verifiers count only the first signature per key id.
  v1::SignedTrustRoot signed_root = next;
  std::set<std::string> signed_by;
  for (const v1::TrustRoot* root : {&newest_.root, &parsed}) {
    for (const v1::SigningKey& key : root->keys()) {
      auto held = held_.find(key.key_id());
      if (held == held_.end() || !signed_by.insert(key.key_id()).second) continue;
      v1::Signature* sig = nullptr;
      for (v1::Signature& existing : *signed_root.mutable_signatures()) {
        if (existing.key_id() == key.key_id()) sig = &existing;
      }
      if (sig == nullptr) sig = signed_root.add_signatures();
      sig->set_key_id(key.key_id());
      sig->set_signature(held->second->key.Sign(kRootSignatureContext, signed_root.root()));
    }
  }

  MD_ASSIGN_OR_RETURN(v1::TrustRoot verified, VerifyNextRoot(newest_.root, signed_root));
  // The ring must hold the private key of every online key of the new root, for two reasons:
  // the server signs every manifest with them (it needs at least the threshold), and while
  // the newest root has no root keys the signatures added above are what authorizes the
  // change, so they must not vouch for a key someone else controls (whoever uploads would
  // then sign manifests devices accept). Holding them all covers both.
  std::vector<std::string> missing;
  for (const v1::SigningKey& key : verified.keys()) {
    if (held_.count(key.key_id()) == 0) missing.push_back(key.key_id());
  }
  if (!missing.empty()) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING",
        absl::StrCat("trust root ", verified.version(), " names online keys whose private keys ",
                     "this server does not hold: ", absl::StrJoin(missing, ", "), " (expected as ",
                     keys_dir_,
                     "/<key_id>.pem, mode 0600); the server signs manifests with the online "
                     "keys, so it must hold every one"),
        {{"missing_key_ids", absl::StrJoin(missing, ",")}});
  }
  MD_RETURN_IF_ERROR(store_->Append(verified.version(), signed_root.SerializeAsString(), actor));
  SetNewest({std::move(signed_root), std::move(verified)});
  return newest_;
}

}  // namespace modeldist::services
