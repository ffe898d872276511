// File: admin_auth.h
//
// Authentication and scope checks of RegistryService rpcs (registry.proto's header): the
// bootstrap admin token, named credentials' tokens (services/credentials.h; looked up by
// SHA-256 in the catalog) and, with --admin-client-ca, TLS client certificates whose subject
// common name is a credential's name. Tokens are compared in constant time and never logged
// or echoed in an error. Failed authentications are counted and limited per peer address.
#ifndef MODELDIST_SERVICES_ADMIN_AUTH_H_
#define MODELDIST_SERVICES_ADMIN_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/credentials.h"
#include "services/metrics/metrics.h"
#include "storage/catalog.h"

namespace modeldist::services {

class AdminAuth {
 public:
  struct Options {
    // Where named credentials live; nullptr: only the bootstrap token authenticates.
    storage::Catalog* catalog = nullptr;
    // Whether the TLS server verifies client certificates against --admin-client-ca, so a
    // verified certificate's common name may name the caller.
    bool client_certificates = false;
    // modeldist_auth_failures_total{reason}; nullptr: not counted.
    metrics::CounterFamily* failures = nullptr;
    AuthFailureLimiter::Options limiter;
  };

  // `token` (the bootstrap token) must be non-empty (the server refuses to start without one).
  explicit AdminAuth(std::string token) : AdminAuth(std::move(token), Options()) {}
  AdminAuth(std::string token, Options options);

  // The caller of `context`, if it may run RegistryService's rpc `method` (its short name,
  // e.g. "CreateModel"; RequiredScope). RESOURCE_EXHAUSTED (AUTH_RATE_LIMITED) for a peer that
  // failed too often lately; UNAUTHENTICATED (MISSING_TOKEN, MALFORMED_TOKEN, WRONG_TOKEN,
  // UNKNOWN_CERTIFICATE); PERMISSION_DENIED (SCOPE_MISSING) naming the scope needed.
  absl::StatusOr<Caller> Authorize(const grpc::ServerContext& context,
                                   absl::string_view method) const;

  // The caller of `context`, without a scope check; the errors of Authorize but SCOPE_MISSING.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context) const;

 private:
  // Who the call's metadata or certificate names; UNAUTHENTICATED when nobody.
  absl::StatusOr<Caller> Identify(const grpc::ServerContext& context) const;
  absl::StatusOr<Caller> FromToken(absl::string_view token) const;
  absl::StatusOr<Caller> FromCertificate(const grpc::ServerContext& context) const;
  void Count(absl::string_view reason) const;

  const std::string token_;
  const Options options_;
  // Mutable: counting failures is not a change of what the caller sees (it is thread-safe).
  mutable AuthFailureLimiter limiter_;
};

// Whether `given` is `secret`, compared in constant time (no early exit on the first
// different byte, so timing tells nothing about the secret).
bool SecretEquals(absl::string_view given, absl::string_view secret);

// Reads the admin token: the first line of `token_file` when given, else the environment
// variable MODELDIST_ADMIN_TOKEN. FAILED_PRECONDITION when neither yields a token of at least
// 16 characters, with a message saying how to make one.
absl::StatusOr<std::string> LoadAdminToken(const std::string& token_file);

// The first line of `path`, the file `flag` names, trimmed: a shared secret of at least 16
// characters. FAILED_PRECONDITION (INVALID_SECRET_FILE) naming the flag otherwise.
absl::StatusOr<std::string> LoadSecretFile(const std::string& path, absl::string_view flag);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ADMIN_AUTH_H_
