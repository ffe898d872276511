#include "services/credentials.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist::services {
namespace {

struct ScopedRpc {
  absl::string_view method;
  v1::Scope scope;
};

// The one table of which scope each RegistryService rpc needs (the Scope enum's comments
// say the same for people). CredentialsTest.EveryRpcHasAScope fails for an rpc missing here.
constexpr ScopedRpc kScopes[] = {
    {"CreateModel", v1::SCOPE_PUBLISH},    {"GetModel", v1::SCOPE_READ},
    {"ListModels", v1::SCOPE_READ},        {"CreateVersion", v1::SCOPE_PUBLISH},
    {"GetVersion", v1::SCOPE_READ},        {"ListVersions", v1::SCOPE_READ},
    {"WriteArtifact", v1::SCOPE_PUBLISH},  {"QueryUpload", v1::SCOPE_READ},
    {"PublishVersion", v1::SCOPE_PUBLISH}, {"AttachRelease", v1::SCOPE_PUBLISH},
    {"YankVersion", v1::SCOPE_PUBLISH},    {"SetTier", v1::SCOPE_ROLLOUT},
    {"ListTiers", v1::SCOPE_READ},         {"StartRollout", v1::SCOPE_ROLLOUT},
    {"AdvanceRollout", v1::SCOPE_ROLLOUT}, {"PauseRollout", v1::SCOPE_ROLLOUT},
    {"ResumeRollout", v1::SCOPE_ROLLOUT},  {"CompleteRollout", v1::SCOPE_ROLLOUT},
    {"AbortRollout", v1::SCOPE_ROLLOUT},   {"ListRollouts", v1::SCOPE_READ},
    {"PinDevices", v1::SCOPE_ROLLOUT},     {"UnpinDevices", v1::SCOPE_ROLLOUT},
    {"ListPins", v1::SCOPE_READ},          {"ListAuditLog", v1::SCOPE_ADMIN},
    {"AddSigningKey", v1::SCOPE_KEYS},     {"RevokeSigningKey", v1::SCOPE_KEYS},
    {"RotateSigningKeys", v1::SCOPE_KEYS}, {"UploadTrustRoot", v1::SCOPE_ADMIN},
    {"CreateCredential", v1::SCOPE_ADMIN}, {"ListCredentials", v1::SCOPE_ADMIN},
    {"RevokeCredential", v1::SCOPE_ADMIN}, {"ScrubBlobs", v1::SCOPE_ADMIN},
    {"ListOrigins", v1::SCOPE_READ},       {"CheckOrigin", v1::SCOPE_READ},
    {"ImportArtifact", v1::SCOPE_PUBLISH}, {"GetFleetSummary", v1::SCOPE_READ},
    {"GetRolloutStatus", v1::SCOPE_READ},
};

}  // namespace

bool Caller::Has(v1::Scope scope) const {
  return std::any_of(scopes.begin(), scopes.end(),
                     [scope](v1::Scope s) { return s == scope || s == v1::SCOPE_ADMIN; });
}

Caller CallerOf(const v1::Credential& credential) {
  Caller caller{credential.name(), {}};
  for (int scope : credential.scopes()) caller.scopes.push_back(static_cast<v1::Scope>(scope));
  return caller;
}

absl::StatusOr<v1::Scope> RequiredScope(absl::string_view method) {
  for (const ScopedRpc& rpc : kScopes) {
    if (rpc.method == method) return rpc.scope;
  }
  // Refused rather than let through: an rpc nobody gave a scope must not be open to all.
  return MakeError(absl::StatusCode::kInternal, "SCOPE_UNKNOWN_RPC",
                   absl::StrCat("the server has no scope for rpc ", method));
}

std::vector<std::string> ScopedMethods() {
  std::vector<std::string> out;
  for (const ScopedRpc& rpc : kScopes) out.emplace_back(rpc.method);
  return out;
}

std::string ScopeWord(v1::Scope scope) {
  std::string name = v1::Scope_Name(scope);
  if (!absl::StartsWith(name, "SCOPE_") || scope == v1::SCOPE_UNSPECIFIED) {
    return absl::StrCat(static_cast<int>(scope));
  }
  return absl::AsciiStrToLower(name.substr(6));
}

v1::Scope ScopeFromWord(absl::string_view word) {
  v1::Scope scope;
  if (!v1::Scope_Parse(absl::StrCat("SCOPE_", absl::AsciiStrToUpper(word)), &scope)) {
    return v1::SCOPE_UNSPECIFIED;
  }
  return scope;
}

std::string NewCredentialToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // No randomness means no safe token; a server that cannot make one must not limp on.
    std::abort();
  }
  return absl::StrCat("mdc_", absl::WebSafeBase64Escape(absl::string_view(
                                  reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

std::string TokenSha256Hex(absl::string_view token) { return Sha256::HexOf(token); }

std::string PeerAddress(absl::string_view peer) {
  if (absl::ConsumePrefix(&peer, "ipv4:")) return std::string(peer.substr(0, peer.rfind(':')));
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    if (absl::ConsumePrefix(&peer, "[")) return std::string(peer.substr(0, peer.find(']')));
    // Newer gRPC versions percent-encode the brackets.
    if (absl::ConsumePrefix(&peer, "%5B") || absl::ConsumePrefix(&peer, "%5b")) {
      return std::string(peer.substr(0, std::min(peer.find("%5D"), peer.find("%5d"))));
    }
    return std::string(peer.substr(0, peer.rfind(':')));
  }
  return std::string(peer);
}

std::string RateLimitKey(absl::string_view address) {
  // A zone ("fe80::1%eth0") does not change who the peer is.
  const std::string host(address.substr(0, address.find('%')));
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) != 1) return std::string(address);
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &v6.s6_addr[12], v4, sizeof(v4)) != nullptr) return v4;
  }
  std::memset(&v6.s6_addr[8], 0, 8);
  char prefix[INET6_ADDRSTRLEN];
  if (::inet_ntop(AF_INET6, &v6, prefix, sizeof(prefix)) == nullptr) return std::string(address);
  return absl::StrCat(prefix, "/64");
}

absl::Duration AuthFailureLimiter::RefusedFor(const std::string& peer) {
  const absl::Time now = options_.now();
  const std::string key = RateLimitKey(peer);
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(key);
  if (options_.max_failures <= 0 || it == peers_.end() || !it->second.blocked) {
    return absl::ZeroDuration();
  }
  return std::max(absl::ZeroDuration(), it->second.window_start + options_.window - now);
}

void AuthFailureLimiter::Erase(absl::flat_hash_map<std::string, Entry>::iterator it) {
  (it->second.blocked ? blocked_ : unblocked_).erase(it->second.order);
  peers_.erase(it);
}

bool AuthFailureLimiter::MakeRoom(absl::Time now) {
  while (peers_.size() >= options_.max_peers) {
    if (!unblocked_.empty()) {
      Erase(peers_.find(unblocked_.front()));
      continue;
    }
    // Only blocked peers: free those whose window ended (a scan, but only in this rare state;
    // blocked_ is in blocking order, which is not quite window order).
    const size_t before = peers_.size();
    for (auto order = blocked_.begin(); order != blocked_.end();) {
      auto it = peers_.find(*order);
      ++order;
      if (now - it->second.window_start >= options_.window) Erase(it);
    }
    if (peers_.size() == before) return false;
  }
  return true;
}

void AuthFailureLimiter::Failed(const std::string& peer) {
  const absl::Time now = options_.now();
  const std::string key = RateLimitKey(peer);
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(key);
  if (it != peers_.end() && now - it->second.window_start >= options_.window) {
    // The window passed: a new one starts with this failure, last in the eviction order.
    Erase(it);
    it = peers_.end();
  }
  if (it == peers_.end()) {
    if (!MakeRoom(now)) return;
    unblocked_.push_back(key);
    it = peers_.emplace(key, Entry{now, 0, false, std::prev(unblocked_.end())}).first;
  }
  Entry& entry = it->second;
  ++entry.failures;
  if (!entry.blocked && options_.max_failures > 0 && entry.failures >= options_.max_failures) {
    blocked_.splice(blocked_.end(), unblocked_, entry.order);
    entry.blocked = true;
  }
}

size_t AuthFailureLimiter::tracked() const {
  absl::MutexLock lock(&mu_);
  return peers_.size();
}

}  // namespace modeldist::services
