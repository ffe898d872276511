// File: error_contract.h
//
// The errors each rpc declares in its proto comment, read from proto/modeldist/v1/*.proto in
// the source tree, and a check of real answers against them.
//
// An rpc's comment lists its errors after a line `Errors:`, one bullet per code,
//   // * NOT_FOUND: no such version (VERSION_NOT_FOUND).
// with each ErrorInfo reason that comes with the code in parentheses (UPPER_SNAKE_CASE words
// with at least one '_'). A service's comment may add errors every rpc of it can return,
// after `Errors of every rpc:`, and those of its unary rpcs only, after `Errors of every unary
// rpc:`. A bullet continues on lines indented by two more spaces; any other line ends the
// list. A bullet whose code is not a gRPC code, or an rpc without `Errors:`, is a parse error:
// a comment the parser misreads fails the tests instead of declaring nothing.
//
// TestServer sends every call of its stubs through ErrorContractInterceptors, so every
// services test that gets an error also checks that the rpc declares it.
#ifndef MODELDIST_TESTS_TESTING_ERROR_CONTRACT_H_
#define MODELDIST_TESTS_TESTING_ERROR_CONTRACT_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::testing {

// The source tree this test binary was built from.
std::string SourceDir();

// A gRPC code name (e.g. "NOT_FOUND") and an ErrorInfo reason.
using CodeReason = std::pair<std::string, std::string>;

struct DeclaredRpc {
  std::string path;  // "/modeldist.v1.RegistryService/CreateModel"
  bool unary = false;
  // Its own `Errors:` and those of its service that apply to it.
  std::set<CodeReason> errors;
  // Codes listed without a reason: answers gRPC makes itself (they carry no ErrorInfo).
  std::set<std::string> codes_without_reason;
};

class ErrorContract {
 public:
  // Parses `protos` (file name -> its text); INVALID_ARGUMENT naming the file and line on a
  // parse error.
  static absl::StatusOr<ErrorContract> Parse(const std::map<std::string, std::string>& protos);
  // The contract of the source tree this test binary was built from (parsed once).
  static const ErrorContract& OfSourceTree();
  // The .proto files of the API, in the source tree.
  static std::vector<std::string> SourceProtoFiles();

  // Method path -> what it declares.
  const std::map<std::string, DeclaredRpc>& rpcs() const { return rpcs_; }
  // Every reason some rpc declares.
  std::set<std::string> AllReasons() const;

  // "" when `status`, an answer of `method` (a path as above), is allowed by the contract;
  // otherwise what is wrong. OK statuses, methods outside modeldist.v1, and statuses
  // without details (made by gRPC itself: the services' edge, ToGrpcStatus, always adds
  // details) are allowed; a status with details must carry an ErrorInfo reason that the rpc
  // declares with that code.
  std::string Problem(absl::string_view method, const grpc::Status& status) const;

 private:
  std::map<std::string, DeclaredRpc> rpcs_;
};

// The ErrorInfo reason in the details of a status from the services, or "".
std::string ReasonOf(const grpc::Status& status);

// A client interceptor that fails the running test (ADD_FAILURE) for every answer
// OfSourceTree().Problem finds wrong.
std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
ErrorContractInterceptors();

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_ERROR_CONTRACT_H_
