// File: credentials.h
//
// Named admin credentials (proto/modeldist/v1/registry.proto, Scope and Credential): who a
// caller is (Caller), which scope each RegistryService rpc needs (one table, RequiredScope),
// the tokens (made here, stored by the catalog only as their SHA-256), and the limit on failed
// authentications per peer address (AuthFailureLimiter). services/admin_auth.h authenticates a
// call with these.
#ifndef MODELDIST_SERVICES_CREDENTIALS_H_
#define MODELDIST_SERVICES_CREDENTIALS_H_

#include <cstddef>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modeldist/v1/registry.pb.h"

namespace modeldist::services {

// The name of the bootstrap admin token's caller (every scope); no credential may take it.
inline constexpr absl::string_view kBootstrapName = "admin";

// An authenticated caller: the audit log's actor and what it may do.
struct Caller {
  std::string name;
  std::vector<v1::Scope> scopes;

  // Whether the caller may run an rpc that needs `scope` (SCOPE_ADMIN grants every scope).
  bool Has(v1::Scope scope) const;
};

// The caller a credential authenticates.
Caller CallerOf(const v1::Credential& credential);

// The scope RegistryService's rpc `method` (its short name, e.g. "CreateModel") needs;
// INTERNAL (SCOPE_UNKNOWN_RPC) for an rpc the table lacks, which a test rules out.
absl::StatusOr<v1::Scope> RequiredScope(absl::string_view method);

// The rpcs the table names, so a test can check it against the service's descriptor.
std::vector<std::string> ScopedMethods();

// `read` for SCOPE_READ, and so on: how people and modeldistctl name a scope.
std::string ScopeWord(v1::Scope scope);
// The inverse of ScopeWord; SCOPE_UNSPECIFIED for an unknown word.
v1::Scope ScopeFromWord(absl::string_view word);

// A new credential token: `mdc_` and the base64url (no padding) of 32 random bytes.
std::string NewCredentialToken();

// The lowercase hex SHA-256 of `token`: all the catalog keeps of it.
std::string TokenSha256Hex(absl::string_view token);

// The address part of a gRPC peer string ("ipv4:127.0.0.1:5555" -> "127.0.0.1",
// "ipv6:[::1]:5555" or "ipv6:%5B::1%5D:5555" -> "::1"); other peers ("unix:...", in-process)
// are returned whole.
std::string PeerAddress(absl::string_view peer);

// What AuthFailureLimiter counts failures under for a PeerAddress: an IPv4 address (also one
// written as IPv4-mapped IPv6, ::ffff:a.b.c.d) as is, an IPv6 address by its /64 prefix
// ("2001:db8:0:1::/64": one attacker commonly owns a whole /64, so counting single addresses
// would give it 2^64 tries), anything else (unix sockets, in-process) whole.
std::string RateLimitKey(absl::string_view address);

// Counts failed authentications per peer (its RateLimitKey). A peer with `max_failures`
// failures in its current window (which starts at its first failure and lasts `window`) is
// refused until the window ends. At most `max_peers` peers are tracked, so a flood of
// addresses costs bounded memory: a new peer evicts the unblocked peer whose window started
// first. A blocked peer is never evicted before its window ends (else an attacker could free
// itself by failing from other addresses); when every tracked peer is blocked, failures of
// untracked peers are not counted until a window ends. `max_failures` 0 turns the limit off.
// Thread-safe.
class AuthFailureLimiter {
 public:
  struct Options {
    int max_failures = 10;
    absl::Duration window = absl::Seconds(60);
    size_t max_peers = 10000;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  AuthFailureLimiter() : AuthFailureLimiter(Options()) {}
  explicit AuthFailureLimiter(Options options) : options_(std::move(options)) {}

  // How long `peer` is still refused: zero when it may try to authenticate now.
  absl::Duration RefusedFor(const std::string& peer) ABSL_LOCKS_EXCLUDED(mu_);
  // Records one failed authentication of `peer`.
  void Failed(const std::string& peer) ABSL_LOCKS_EXCLUDED(mu_);
  // How many peers are tracked (for tests of the bound).
  size_t tracked() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    absl::Time window_start;
    int failures = 0;
    bool blocked = false;                    // failures reached max_failures in this window
    std::list<std::string>::iterator order;  // its place in unblocked_ or blocked_
  };

  // Makes room for one more peer; false when every tracked peer is still blocked.
  bool MakeRoom(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Erase(absl::flat_hash_map<std::string, Entry>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> peers_ ABSL_GUARDED_BY(mu_);  // by RateLimitKey
  // Unblocked peers by window start, oldest first: the eviction order.
  std::list<std::string> unblocked_ ABSL_GUARDED_BY(mu_);
  // Blocked peers, in the order they became blocked (evicted only once their window ended).
  std::list<std::string> blocked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_CREDENTIALS_H_
