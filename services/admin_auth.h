// File: admin_auth.h
//
// Bearer-token check for admin rpcs. The token is compared in constant time and never
// logged or echoed in an error.
#ifndef MODELDIST_SERVICES_ADMIN_AUTH_H_
#define MODELDIST_SERVICES_ADMIN_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::services {

class AdminAuth {
 public:
  // `token` must be non-empty (the server refuses to start without one).
  explicit AdminAuth(std::string token) : token_(std::move(token)) {}

  // OK when the call carries `authorization: Bearer <token>`; UNAUTHENTICATED otherwise.
  absl::Status Check(const grpc::ServerContext& context) const;

 private:
  std::string token_;
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
