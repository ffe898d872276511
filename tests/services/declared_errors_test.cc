// The proto comments against the code (tests/testing/error_contract.h reads the comments):
//   - every rpc of the services has an `Errors:` list, and every list names a real rpc;
//   - every reason an rpc declares is made somewhere in the server's sources, and every reason
//     the server's sources make is declared by an rpc, or is below with why no rpc answers it;
//   - no error the server makes lacks a reason (no bare absl::...Error constructors);
//   - every field of the protos has a comment;
//   - every rpc, sent a bad request, answers with one of its declared errors, and the check
//     that TestServer's stubs run on every answer of every services test catches an answer
//     its rpc does not declare.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/limits.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"
#include "tests/testing/error_contract.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::IsEmpty;

constexpr absl::string_view kServices[] = {
    "modeldist.v1.RegistryService", "modeldist.v1.ManifestService", "modeldist.v1.ArtifactService",
    "modeldist.v1.FleetService"};

// The folders whose code the server runs.
constexpr absl::string_view kServerFolders[] = {"common", "storage", "services"};

// Reasons the server's code makes that no rpc answers with, and why.
const std::map<std::string, std::string>& NotRpcAnswers() {
  static const auto* reasons = new std::map<std::string, std::string>{
      // Start-up: modeldist-server prints them and exits.
      {"DATA_DIR_IN_USE", "start-up"},
      {"INVALID_ADMIN_TOKEN", "start-up"},
      {"INVALID_CONFIG_FILE", "start-up (the --config file)"},
      {"INVALID_SECRET_FILE", "start-up"},
      {"INVALID_FLAG", "start-up"},
      {"INVALID_KEYS_DIR", "start-up"},
      {"INVALID_MIGRATIONS", "start-up"},
      {"INVALID_ORIGINS_CONFIG", "start-up (the --origins file, an origin's options)"},
      {"SECRET_UNAVAILABLE", "start-up (an origin's credentials)"},
      {"KEY_FILE_NAME_MISMATCH", "start-up"},
      {"KEY_FILE_TOO_OPEN", "start-up"},
      {"LISTEN_FAILED", "start-up"},
      {"MIGRATION_FAILED", "start-up"},
      {"SCHEMA_TOO_NEW", "start-up"},
      {"INVALID_KEY", "start-up (a key file that is not an Ed25519 key), and devices"},
      // Devices: common/trust.h, the agent's checks of what it is sent. The server uses them
      // only as the `cause` of TRUST_ROOT_CHAIN_BROKEN, and a pull-through cache in the message
      // of UPSTREAM_UNTRUSTED. (The root checks are UploadTrustRoot's answers too.)
      {"CHAIN_DIGEST_MISMATCH", "devices"},
      {"CHUNK_COUNT_MISMATCH", "devices"},
      {"INVALID_CHUNK_DIGEST", "devices"},
      {"MALFORMED_MANIFEST", "devices"},
      {"MANIFEST_EXPIRED", "devices"},
      {"SEQUENCE_ROLLBACK", "devices"},
      {"SIGNATURE_THRESHOLD_NOT_MET", "devices"},
      {"UNSPECIFIED_ARCH", "devices"},
      {"UNSPECIFIED_PLATFORM", "devices"},
      {"WRONG_TARGET", "devices"},
      // Chunk chains built wrong: a bug of the caller, checked by the agent and the server's
      // own reads, never caused by a request.
      {"INVALID_CHAINING_VALUE", "caller bug"},
      {"INVALID_CHUNK_SIZE", "caller bug"},
      // An rpc missing from services/credentials.cc's scope table: CredentialsTest rules it out.
      {"SCOPE_UNKNOWN_RPC", "server bug"},
      // Model bundles (common/tar.h, common/bundle_format.h): files that modeldistctl writes
      // and the agent reads, never an rpc's answer.
      {"BUNDLE_MALFORMED", "bundles"},
      {"TAR_BAD_ENTRY", "bundles"},
      {"TAR_BAD_HEADER", "bundles"},
      {"TAR_ENTRY_TOO_LARGE", "bundles"},
      {"TAR_TRUNCATED", "bundles"},
      // Key files are created with fresh random names (overwrite=false): never an existing one.
      {"FILE_EXISTS", "new key files only"},
      // A blob or upload file that vanished is BLOB_NOT_FOUND (or a restart of the upload)
      // where a request can meet it; FILE_NOT_FOUND is for the server's own files (start-up).
      {"FILE_NOT_FOUND", "start-up"},
      // Origins (common/http, storage/origin): replication to object stores and CDNs, which
      // reports them in its own status, never as an rpc's answer.
      {"BAD_CONTENT_RANGE", "origins"},
      {"CLOUDFRONT_KEY_INVALID", "start-up (an origin's CloudFront key)"},
      {"CLOUDFRONT_POLICY_INVALID", "origins (device URLs)"},
      {"CLOUDFRONT_SIGNING_FAILED", "origins (device URLs)"},
      {"HTTP_BAD_URL", "origins"},
      {"HTTP_BODY_REWOUND", "origins"},
      {"HTTP_BODY_SHORT", "origins"},
      {"HTTP_BODY_TOO_LARGE", "origins"},
      {"HTTP_CANCELLED", "origins"},
      {"HTTP_FORBIDDEN", "origins"},
      {"HTTP_NOT_FOUND", "origins"},
      {"HTTP_RANGE_NOT_SATISFIABLE", "origins"},
      {"HTTP_TIMEOUT", "origins"},
      {"HTTP_TRANSPORT_FAILED", "origins"},
      {"HTTP_UNAVAILABLE", "origins"},
      {"HTTP_UNEXPECTED_STATUS", "origins"},
      {"ORIGIN_BAD_ANSWER", "origins"},
      {"ORIGIN_SOURCE_SHORT", "origins"},
      {"TLS_PEER_UNTRUSTED", "origins"},
      {"URL_EXPIRY_OUT_OF_RANGE", "origins"},
      // A failed step of RegistryService.CheckOrigin is reported in its response, not as its
      // status; an origin kind this version cannot build stops the start.
      {"ORIGIN_PROBE_MISMATCH", "origins (a CheckOrigin step's finding)"},
      {"ORIGIN_KIND_UNSUPPORTED", "start-up (the --origins file)"},
      {"ORIGIN_READ_ONLY", "origins (http and modeldist origins cannot be written)"},
      {"ORIGIN_KEY_NOT_A_BLOB", "origins (a modeldist origin's key names no blob)"},
      {"ORIGIN_NO_DEVICE_URL", "origins (a modeldist origin has no device URLs)"},
      {"ORIGIN_READ_CANCELLED", "origins (a read-through that stops)"},
      {"RANGE_IGNORED", "origins"},
      {"RANGE_TAKEN", "origins (internal: stops a transfer that has enough bytes)"},
      {"ORIGIN_OBJECT_SHORT", "origins"},
      // Replication (services/replicator.h) keeps its errors in the replica rows.
      {"REPLICA_MISMATCH", "replication (a row's last_error)"},
      {"REPLICA_NOT_FOUND", "replication (internal: a row is updated only after its sweep)"},
      // Read-through (services/read_through.h): folded into ORIGINS_UNAVAILABLE's message, or
      // told apart from a blob the lookup does not know (BLOB_NOT_FOUND).
      {"ORIGIN_STALLED", "read-through (in ORIGINS_UNAVAILABLE's message)"},
      {"CHAIN_NOT_RECORDED", "read-through (internal: answered as BLOB_NOT_FOUND)"},
      {"INVALID_CHAIN", "caller bug (a recorded chain of the wrong length)"},
      {"INVALID_CHUNK_INDEX", "caller bug (a rewind past the chunks held)"},
      {"NO_CONFIRMED_REPLICA", "repair from origins (logged; the blob stays damaged)"},
      // The HTTP listener (services/http_server, http_routes.h): answers over HTTP as JSON,
      // never an rpc's.
      {"BODY_TOO_LARGE", "http"},
      {"INVALID_FIELD_TYPE", "http (the edge endpoint's JSON body)"},
      {"INVALID_JSON", "http (the edge endpoint's JSON body)"},
      {"METHOD_NOT_ALLOWED", "http"},
      {"NO_SUCH_PATH", "http"},
      {"ORIGIN_SECRET_MISMATCH", "http (the blob endpoint behind a CDN)"},
      {"RANGE_NOT_SATISFIABLE", "http (the blob endpoint)"},
      {"NO_SIGNING_KEYS", "http (/readyz)"},
      {"SHUTTING_DOWN", "http (/readyz)"},
      {"TLS_UNSUPPORTED", "start-up (--http-listen with --tls-cert)"},
  };
  return *reasons;
}

// String literals of the server's code that look like reasons but are not.
const std::set<std::string>& NotReasons() {
  static const auto* literals = new std::set<std::string>{
      "MODELDIST_ADMIN_TOKEN",
      "NOT_FOUND",  // a status code in services/http_server/http_error.h's example body
  };
  return *literals;
}

// Errors made without a reason, per file, that are known and left (exact counts, so the list
// only shrinks). Each is a bug of the caller, not an answer to a request.
const std::map<std::string, int>& KnownReasonlessErrors() {
  static const auto* known = new std::map<std::string, int>{
      // Command-line parsing: printed as usage, never an rpc's answer.
      {"common/flags.cc", 5},
      // Broken invariants inside the server (a message crossing a chain chunk, a moved-from
      // reader, a stopped check): INTERNAL or CANCELLED, never a client's mistake to act on.
      {"storage/served_bytes_check.cc", 2},
      {"storage/blob_store.cc", 1},
      {"storage/blob_store_integrity.cc", 1},
  };
  return *known;
}

// Every .cc/.h file of the server's folders, relative to the source tree, with its text.
std::map<std::string, std::string> ServerSources() {
  std::map<std::string, std::string> files;
  for (absl::string_view folder : kServerFolders) {
    const std::filesystem::path dir = std::filesystem::path(SourceDir()) / std::string(folder);
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".cc" && ext != ".h") continue;
      absl::StatusOr<std::string> text = ReadFileToString(entry.path().string());
      EXPECT_TRUE(text.ok()) << text.status();
      files[std::filesystem::relative(entry.path(), SourceDir()).string()] = text.value_or("");
    }
  }
  EXPECT_GT(files.size(), 20u) << "no sources under " << SourceDir();
  return files;
}

// Every UPPER_SNAKE string literal of the server's code: the reasons it can make.
std::set<std::string> SourceReasons() {
  static const std::regex kLiteral(R"re("([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)")re");
  std::set<std::string> reasons;
  for (const auto& [path, text] : ServerSources()) {
    for (std::sregex_iterator it(text.begin(), text.end(), kLiteral), end; it != end; ++it) {
      if (NotReasons().count((*it)[1].str()) == 0) reasons.insert((*it)[1].str());
    }
  }
  return reasons;
}

std::string Join(const std::set<std::string>& set) { return absl::StrJoin(set, ", "); }

TEST(DeclaredErrorsTest, EveryRpcHasAnErrorsListAndEveryListAnRpc) {
  const ErrorContract& contract = ErrorContract::OfSourceTree();
  std::set<std::string> served;
  for (absl::string_view name : kServices) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(name));
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      const std::string path = absl::StrCat("/", name, "/", method->name());
      served.insert(path);
      auto rpc = contract.rpcs().find(path);
      ASSERT_NE(rpc, contract.rpcs().end()) << path << " is missing from the parsed protos";
      EXPECT_EQ(rpc->second.unary, !method->client_streaming() && !method->server_streaming())
          << path;
      EXPECT_FALSE(rpc->second.errors.empty()) << path << " declares no error with a reason";
    }
  }
  std::set<std::string> parsed;
  for (const auto& [path, rpc] : contract.rpcs()) parsed.insert(path);
  EXPECT_EQ(parsed, served);
}

TEST(DeclaredErrorsTest, OnlyGrpcsOwnAnswersAreDeclaredWithoutAReason) {
  // gRPC refuses a message over the server's limit by itself; every other error has a reason.
  for (const auto& [path, rpc] : ErrorContract::OfSourceTree().rpcs()) {
    for (const std::string& code : rpc.codes_without_reason) {
      EXPECT_EQ(code, "RESOURCE_EXHAUSTED") << path << " declares " << code << " without a reason";
    }
  }
}

TEST(DeclaredErrorsTest, EveryDeclaredReasonIsMadeByTheCode) {
  const std::set<std::string> made = SourceReasons();
  std::set<std::string> stale;
  for (const std::string& reason : ErrorContract::OfSourceTree().AllReasons()) {
    if (made.count(reason) == 0) stale.insert(reason);
  }
  EXPECT_THAT(stale, IsEmpty()) << "declared in the protos but made nowhere in common/, "
                                   "storage/ or services/: "
                                << Join(stale);
}

TEST(DeclaredErrorsTest, EveryReasonTheServerMakesIsDeclaredOrExplained) {
  const std::set<std::string> declared = ErrorContract::OfSourceTree().AllReasons();
  const std::set<std::string> made = SourceReasons();
  std::set<std::string> undeclared, explained_but_declared, explained_but_gone;
  for (const std::string& reason : made) {
    if (declared.count(reason) == 0 && NotRpcAnswers().count(reason) == 0) {
      undeclared.insert(reason);
    }
  }
  for (const auto& [reason, why] : NotRpcAnswers()) {
    if (declared.count(reason) != 0) explained_but_declared.insert(reason);
    if (made.count(reason) == 0) explained_but_gone.insert(reason);
  }
  EXPECT_THAT(undeclared, IsEmpty())
      << "made by the server but in no rpc's Errors list: " << Join(undeclared);
  EXPECT_THAT(explained_but_declared, IsEmpty())
      << "listed as no rpc's answer, but an rpc declares them: " << Join(explained_but_declared);
  EXPECT_THAT(explained_but_gone, IsEmpty())
      << "listed as no rpc's answer, but the code no longer makes them: "
      << Join(explained_but_gone);
}

TEST(DeclaredErrorsTest, EveryErrorTheServerMakesCarriesAReason) {
  // absl's constructors make a status without ErrorInfo; MakeError, InvalidArgument and
  // ErrnoStatus (common/status.h, common/file_util.h) attach one. `<absl::Status(` is a
  // function type (std::function<absl::Status(...)>), not a status being made.
  static const std::regex kBare(R"(absl::[A-Za-z]+Error\(|[^<]absl::Status\()");
  std::map<std::string, int> bare;
  for (const auto& [path, text] : ServerSources()) {
    const auto count = std::distance(std::sregex_iterator(text.begin(), text.end(), kBare),
                                     std::sregex_iterator());
    if (count > 0) bare[path] = static_cast<int>(count);
  }
  EXPECT_EQ(bare, KnownReasonlessErrors());
}

TEST(DeclaredErrorsTest, EveryFieldOfTheProtosHasAComment) {
  // A field line: [repeated] <type> <name> = <number> ...; enum values have no type.
  static const std::regex kField(
      R"(^\s*(repeated\s+)?[A-Za-z_][\w.]*(<[^>]*>)?\s+\w+\s*=\s*\d+\s*(\[[^\]]*\])?;)");
  const std::vector<std::string> files = ErrorContract::SourceProtoFiles();
  ASSERT_GE(files.size(), 4u);
  for (const std::string& path : files) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    ASSERT_TRUE(text.ok()) << text.status();
    std::vector<std::string> lines = absl::StrSplit(*text, '\n');
    for (size_t i = 1; i < lines.size(); ++i) {
      if (!std::regex_search(lines[i], kField) || absl::StrContains(lines[i], "//")) continue;
      EXPECT_TRUE(absl::StartsWith(absl::StripLeadingAsciiWhitespace(lines[i - 1]), "//"))
          << path << ":" << i + 1 << ": field without a comment: " << lines[i];
    }
  }
}

// A status as the services' edge makes it: details holding one ErrorInfo with `reason`.
grpc::Status Answer(grpc::StatusCode code, const std::string& reason) {
  v1::RpcStatus details;
  details.set_code(code);
  if (!reason.empty()) {
    v1::ErrorInfo info;
    info.set_reason(reason);
    auto* any = details.add_details();
    any->set_type_url(std::string(kErrorInfoPayload));
    any->set_value(info.SerializeAsString());
  }
  return grpc::Status(code, "message", details.SerializeAsString());
}

TEST(ErrorContractTest, FindsAnswersTheirRpcDoesNotDeclare) {
  const ErrorContract& contract = ErrorContract::OfSourceTree();
  const std::string get_model = "/modeldist.v1.RegistryService/GetModel";
  EXPECT_EQ(contract.Problem(get_model, Answer(grpc::NOT_FOUND, "MODEL_NOT_FOUND")), "");
  // Declared for the whole service.
  EXPECT_EQ(contract.Problem(get_model, Answer(grpc::UNAUTHENTICATED, "WRONG_TOKEN")), "");
  EXPECT_EQ(contract.Problem(get_model, Answer(grpc::INVALID_ARGUMENT, "MALFORMED_REQUEST")), "");
  // gRPC's own answers have no details.
  EXPECT_EQ(contract.Problem(get_model, grpc::Status(grpc::DEADLINE_EXCEEDED, "late")), "");
  EXPECT_EQ(contract.Problem(get_model, grpc::Status::OK), "");

  // Another rpc's reason, a declared reason with another code, no reason at all.
  EXPECT_THAT(contract.Problem(get_model, Answer(grpc::NOT_FOUND, "VERSION_NOT_FOUND")),
              ::testing::HasSubstr("does not declare"));
  EXPECT_THAT(contract.Problem(get_model, Answer(grpc::INTERNAL, "MODEL_NOT_FOUND")),
              ::testing::HasSubstr("does not declare"));
  EXPECT_THAT(contract.Problem(get_model, Answer(grpc::INTERNAL, "")),
              ::testing::HasSubstr("without an ErrorInfo reason"));
  // MALFORMED_REQUEST is declared for unary rpcs only: gRPC parses a stream's messages
  // before the server's interceptor could answer for them (services/malformed_request.h).
  EXPECT_THAT(contract.Problem("/modeldist.v1.RegistryService/ScrubBlobs",
                               Answer(grpc::INVALID_ARGUMENT, "MALFORMED_REQUEST")),
              ::testing::HasSubstr("does not declare"));
  EXPECT_THAT(contract.Problem("/modeldist.v1.RegistryService/NoSuchRpc",
                               Answer(grpc::NOT_FOUND, "MODEL_NOT_FOUND")),
              ::testing::HasSubstr("not an rpc"));
}

absl::StatusOr<ErrorContract> ParseOne(const std::string& text) {
  return ErrorContract::Parse({{"x.proto", text}});
}

TEST(ErrorContractTest, RefusesCommentsItCannotRead) {
  EXPECT_THAT(ParseOne("package p.v1;\n"
                       "service S {\n"
                       "  // Does things.\n"
                       "  rpc Do(R) returns (R);\n"
                       "}\n")
                  .status()
                  .message(),
              ::testing::HasSubstr("no \"Errors:\""));
  EXPECT_THAT(ParseOne("package p.v1;\n"
                       "service S {\n"
                       "  // Errors:\n"
                       "  // * NOT_FOND: a typo (THING_NOT_FOUND).\n"
                       "  rpc Do(R) returns (R);\n"
                       "}\n")
                  .status()
                  .message(),
              ::testing::HasSubstr("x.proto:4: an error bullet must start with a gRPC code"));
}

TEST(ErrorContractTest, ReadsBulletsAndServiceWideErrors) {
  absl::StatusOr<ErrorContract> parsed = ParseOne(
      "package p.v1;\n"
      "// Errors of every rpc:\n"
      "// * UNAVAILABLE: busy (BUSY_NOW).\n"
      "// Errors of every unary rpc:\n"
      "// * INVALID_ARGUMENT: garbled (GARBLED_BYTES).\n"
      "service S {\n"
      "  // Errors:\n"
      "  // * NOT_FOUND: none (THING_NOT_FOUND), or\n"
      "  //   gone (THING_GONE, THING_LOST).\n"
      "  // Not a bullet (NOT_A_REASON).\n"
      "  rpc Do(stream R) returns (R);\n"
      "\n"
      "  // Errors: only those of every rpc.\n"
      "  rpc Get(R) returns (R);\n"
      "}\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const DeclaredRpc& stream = parsed->rpcs().at("/p.v1.S/Do");
  EXPECT_FALSE(stream.unary);
  EXPECT_EQ(stream.errors, (std::set<CodeReason>{{"NOT_FOUND", "THING_NOT_FOUND"},
                                                 {"NOT_FOUND", "THING_GONE"},
                                                 {"NOT_FOUND", "THING_LOST"},
                                                 {"UNAVAILABLE", "BUSY_NOW"}}));
  const DeclaredRpc& unary = parsed->rpcs().at("/p.v1.S/Get");
  EXPECT_TRUE(unary.unary);
  EXPECT_EQ(unary.errors, (std::set<CodeReason>{{"UNAVAILABLE", "BUSY_NOW"},
                                                {"INVALID_ARGUMENT", "GARBLED_BYTES"}}));
}

// --- every rpc, one bad request ---------------------------------------------------------------

// `text` (text format) as the serialized request message of `method` ("Service/Method").
std::string Request(const std::string& method, const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(method, '/');
  const google::protobuf::MethodDescriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          absl::StrCat("modeldist.v1.", parts[0], ".", parts[1]));
  if (descriptor == nullptr) {
    ADD_FAILURE() << "no method " << method;
    return "";
  }
  std::unique_ptr<google::protobuf::Message> request(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(descriptor->input_type())
          ->New());
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, request.get())) << text;
  return request->SerializeAsString();
}

TEST(EveryRpcTest, AnswersABadRequestWithADeclaredError) {
  const std::string digest = FormatDigest(std::string(64, 'a'));
  const std::string too_long(kMaxTextBytes + 1, 'x');
  struct Case {
    std::string method;   // Service/Method
    std::string request;  // text format (unused for GetSigningKeys: see below)
    grpc::StatusCode code;
    std::string reason;
  };
  const auto kInvalid = grpc::INVALID_ARGUMENT;
  const auto kNotFound = grpc::NOT_FOUND;
  const std::vector<Case> cases = {
      {"RegistryService/CreateModel", "model_id: ''", kInvalid, "EMPTY_ID"},
      {"RegistryService/GetModel", "name: 'm'", kInvalid, "INVALID_NAME"},
      {"RegistryService/ListModels", "page_size: -1", kInvalid, "INVALID_PAGE_SIZE"},
      {"RegistryService/CreateVersion", "parent: 'models/m' version_id: 'v'", kInvalid,
       "NO_ARTIFACTS"},
      {"RegistryService/GetVersion", "name: 'models/m/versions/v'", kNotFound, "MODEL_NOT_FOUND"},
      {"RegistryService/ListVersions", "parent: 'models/m'", kNotFound, "MODEL_NOT_FOUND"},
      // One message of a client stream; the digest is declared by no version.
      {"RegistryService/WriteArtifact", absl::StrCat("digest: '", digest, "'"), kNotFound,
       "DIGEST_NOT_DECLARED"},
      {"RegistryService/QueryUpload",
       absl::StrCat("digest: '", digest, "' upload_id: 'abcdefghijklmnop'"), kInvalid,
       "TWO_TARGETS"},
      {"RegistryService/PublishVersion", "name: 'models/m/versions/v'", kNotFound,
       "MODEL_NOT_FOUND"},
      {"RegistryService/YankVersion",
       absl::StrCat("name: 'models/m/versions/v' reason: '", too_long, "'"), kInvalid,
       "TEXT_TOO_LONG"},
      {"RegistryService/SetTier", "tier: '' version: 'models/m/versions/v'", kInvalid, "EMPTY_ID"},
      {"RegistryService/ListTiers", "page_token: 'not-a-token'", kInvalid, "INVALID_PAGE_TOKEN"},
      {"RegistryService/StartRollout",
       "tier: 't' to_version: 'models/m/versions/v' basis_points: 10001", kInvalid,
       "INVALID_BASIS_POINTS"},
      {"RegistryService/AdvanceRollout", "tier: 't' basis_points: 5", kNotFound,
       "ROLLOUT_NOT_FOUND"},
      {"RegistryService/PauseRollout", "tier: 't'", kNotFound, "ROLLOUT_NOT_FOUND"},
      {"RegistryService/ResumeRollout", "tier: 't' channel: 'beta'", kNotFound,
       "ROLLOUT_NOT_FOUND"},
      {"RegistryService/CompleteRollout", "tier: 'a..b'", kInvalid, "INVALID_ID"},
      {"RegistryService/AbortRollout", "tier: 't' channel: '.x'", kInvalid, "INVALID_ID"},
      {"RegistryService/ListRollouts", "channel: 'beta'", kInvalid, "CHANNEL_WITHOUT_TIER"},
      {"RegistryService/GetRolloutStatus", "tier: 't'", kNotFound, "ROLLOUT_NOT_FOUND"},
      {"RegistryService/PinDevices", "tier: 't' version: 'models/m/versions/v'", kInvalid,
       "INVALID_DEVICE_IDS"},
      {"RegistryService/UnpinDevices", "tier: 't' device_ids: 'd'", kNotFound, "TIER_NOT_FOUND"},
      {"RegistryService/ListPins", "page_size: -1", kInvalid, "INVALID_PAGE_SIZE"},
      {"RegistryService/ListAuditLog", "page_token: 'not-a-token'", kInvalid, "INVALID_PAGE_TOKEN"},
      {"RegistryService/AddSigningKey", "threshold: 99", kInvalid, "THRESHOLD_OUT_OF_RANGE"},
      {"RegistryService/RevokeSigningKey", "key_id: 'x'", kInvalid, "MALFORMED_KEY_ID"},
      {"RegistryService/RotateSigningKeys", "count: 17", kInvalid, "KEY_COUNT_OUT_OF_RANGE"},
      {"RegistryService/ScrubBlobs", "bytes_per_second: -1", kInvalid, "INVALID_RATE"},
      // No field to get wrong: bytes that are not the request (0xff starts an endless varint).
      {"RegistryService/ListOrigins", "", kInvalid, "MALFORMED_REQUEST"},
      {"RegistryService/CheckOrigin", "name: 'R2'", kInvalid, "INVALID_ORIGIN_NAME"},
      {"RegistryService/AttachRelease", "name: 'm'", kInvalid, "INVALID_NAME"},
      {"RegistryService/UploadTrustRoot", "", kInvalid, "MALFORMED_ROOT"},
      {"RegistryService/CreateCredential", "name: ''", kInvalid, "EMPTY_ID"},
      {"RegistryService/ListCredentials", "page_size: -1", kInvalid, "INVALID_PAGE_SIZE"},
      {"RegistryService/RevokeCredential", "name: 'nobody'", kNotFound, "CREDENTIAL_NOT_FOUND"},
      {"RegistryService/ImportArtifact", "digest: 'sha256:00' url: 'https://x.example/m'", kInvalid,
       "INVALID_DIGEST"},
      {"RegistryService/GetFleetSummary", "window { seconds: -1 }", kInvalid, "INVALID_WINDOW"},
      {"FleetService/ReportStatus",
       "device_id: 'd' reports { tier: 't' event: STATUS_EVENT_ACTIVATED platform: PLATFORM_MACOS "
       "arch: ARCH_ANY }",
       kInvalid, "INVALID_ARCH"},
      {"ManifestService/GetManifest",
       "tier: 't' platform: PLATFORM_MACOS arch: ARCH_ARM64 device { os_version: '14..0' }",
       kInvalid, "INVALID_OS_VERSION"},
      // No field to get wrong: bytes that are not the request (0xff starts an endless varint).
      {"ManifestService/GetSigningKeys", "", kInvalid, "MALFORMED_REQUEST"},
      {"ManifestService/GetTrustRoot", "version: -1", kInvalid, "INVALID_VERSION"},
      {"ArtifactService/Read", absl::StrCat("digest: '", digest, "' offset: -1"), kInvalid,
       "INVALID_OFFSET"},
      {"ArtifactService/Stat", absl::StrCat("digest: '", digest, "'"), kNotFound, "BLOB_NOT_FOUND"},
  };
  TestServer server;
  std::set<std::string> walked;
  for (const Case& c : cases) {
    const std::string path = absl::StrCat("/modeldist.v1.", c.method);
    walked.insert(path);
    const bool no_fields =
        c.method == "ManifestService/GetSigningKeys" || c.method == "RegistryService/ListOrigins";
    const std::string bytes =
        no_fields ? std::string("\xff\xff\xff") : Request(c.method, c.request);
    // Through TestServer's stubs' channel: its check of every answer runs here too.
    const grpc::Status status = server.CallRaw(path, bytes, /*admin=*/true);
    EXPECT_EQ(status.error_code(), c.code) << path << ": " << status.error_message();
    EXPECT_EQ(ReasonOf(status), c.reason) << path << ": " << status.error_message();
  }
  // One case per rpc, so an rpc added later needs one here.
  std::set<std::string> declared;
  for (const auto& [path, rpc] : ErrorContract::OfSourceTree().rpcs()) declared.insert(path);
  EXPECT_EQ(walked, declared);
}

TEST(EveryRpcTest, AnAdminRpcWithoutTheTokenIsRefusedAsDeclared) {
  TestServer server;
  const std::string method = "RegistryService/GetModel";
  const grpc::Status status =
      server.CallRaw(absl::StrCat("/modeldist.v1.", method), Request(method, "name: 'models/m'"));
  EXPECT_EQ(status.error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(status), "MISSING_TOKEN");
}

}  // namespace
}  // namespace modeldist::testing
