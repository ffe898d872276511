// Named admin credentials against the real server: scopes per rpc (every rpc of the
// service's descriptor), revocation, tokens kept only as hashes, the audit actor, the limit on
// failed authentications per peer with its /metrics counter, and mTLS client certificates.
#include "services/credentials.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <future>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/error_contract.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using services::AuthFailureLimiter;
using services::RequiredScope;
using services::ScopeWord;
using ::testing::HasSubstr;
using ::testing::Not;

const google::protobuf::ServiceDescriptor& Registry() {
  return *google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      "modeldist.v1.RegistryService");
}

std::unique_ptr<grpc::ClientContext> WithToken(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return context;
}

// One message of empty bytes (every request's default) to `method` of RegistryService, with
// `token`: what any rpc, streaming or not, answers before it reads its request.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                       const std::string& token) {
  grpc::GenericStub stub(channel);
  std::unique_ptr<grpc::ClientContext> context = WithToken(token);
  grpc::ByteBuffer request;
  grpc::Slice slice("");
  request = grpc::ByteBuffer(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), absl::StrCat("/modeldist.v1.RegistryService/", method),
                 grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

TEST(ScopeTableTest, EveryRpcOfTheServiceHasAScopeAndNoOtherIsListed) {
  const google::protobuf::ServiceDescriptor& service = Registry();
  ASSERT_GT(service.method_count(), 30);
  for (int i = 0; i < service.method_count(); ++i) {
    const std::string& method = service.method(i)->name();
    absl::StatusOr<v1::Scope> scope = RequiredScope(method);
    EXPECT_TRUE(scope.ok()) << method << " has no entry in services/credentials.cc's scope table";
    if (scope.ok()) {
      EXPECT_NE(*scope, v1::SCOPE_UNSPECIFIED) << method;
    }
  }
  for (const std::string& method : services::ScopedMethods()) {
    EXPECT_NE(service.FindMethodByName(method), nullptr)
        << method << " is in the scope table but no rpc of RegistryService";
  }
  EXPECT_FALSE(RequiredScope("NoSuchRpc").ok());
}

TEST(ScopeTableTest, TokensArePrefixedBase64UrlOf32RandomBytes) {
  const std::string a = services::NewCredentialToken();
  const std::string b = services::NewCredentialToken();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 4u + 43u) << a;
  EXPECT_TRUE(absl::StartsWith(a, "mdc_"));
  for (char c : a.substr(4)) {
    EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << a;
  }
  EXPECT_EQ(services::TokenSha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PeerAddressTest, DropsThePortAndBrackets) {
  EXPECT_EQ(services::PeerAddress("ipv4:127.0.0.1:5555"), "127.0.0.1");
  EXPECT_EQ(services::PeerAddress("ipv6:[::1]:5555"), "::1");
  EXPECT_EQ(services::PeerAddress("ipv6:%5B::1%5D:5555"), "::1");
  EXPECT_EQ(services::PeerAddress("unix:/tmp/s"), "unix:/tmp/s");
}

TEST(AuthFailureLimiterTest, RefusesAPeerAfterTenFailuresUntilItsWindowEnds) {
  absl::Time now = absl::FromUnixSeconds(1000);
  AuthFailureLimiter::Options options;
  options.now = [&now] { return now; };
  AuthFailureLimiter limiter(options);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(limiter.RefusedFor("10.0.0.1"), absl::ZeroDuration()) << i;
    limiter.Failed("10.0.0.1");
    now += absl::Seconds(1);
  }
  // The window began at the first failure, 10 s ago.
  EXPECT_EQ(limiter.RefusedFor("10.0.0.1"), absl::Seconds(50));
  EXPECT_EQ(limiter.RefusedFor("10.0.0.2"), absl::ZeroDuration()) << "another peer is served";
  now += absl::Seconds(50);
  EXPECT_EQ(limiter.RefusedFor("10.0.0.1"), absl::ZeroDuration());
  limiter.Failed("10.0.0.1");  // starts a new window with one failure
  EXPECT_EQ(limiter.RefusedFor("10.0.0.1"), absl::ZeroDuration());
}

TEST(AuthFailureLimiterTest, TracksAtMostMaxPeersEvictingTheOldestUnblocked) {
  absl::Time now = absl::FromUnixSeconds(1000);
  AuthFailureLimiter::Options options;
  options.max_failures = 2;
  options.max_peers = 3;
  options.now = [&now] { return now; };
  AuthFailureLimiter limiter(options);
  limiter.Failed("10.0.0.100");
  limiter.Failed("10.0.0.100");  // blocked, and the oldest
  for (int i = 0; i < 5; ++i) {
    now += absl::Seconds(1);
    limiter.Failed(absl::StrCat("10.0.0.", i));
  }
  EXPECT_EQ(limiter.tracked(), 3u);
  EXPECT_GT(limiter.RefusedFor("10.0.0.100"), absl::ZeroDuration()) << "a blocked peer stays";
  // 10.0.0.0..2 were evicted (their one failure forgotten), 3 and 4 are tracked: one more
  // failure blocks them.
  limiter.Failed("10.0.0.0");
  EXPECT_EQ(limiter.RefusedFor("10.0.0.0"), absl::ZeroDuration()) << "evicted";
  limiter.Failed("10.0.0.4");
  EXPECT_GT(limiter.RefusedFor("10.0.0.4"), absl::ZeroDuration());
}

TEST(AuthFailureLimiterTest, WhenEveryTrackedPeerIsBlockedNoneIsEvictedBeforeItsWindowEnds) {
  absl::Time now = absl::FromUnixSeconds(1000);
  AuthFailureLimiter::Options options;
  options.max_failures = 1;
  options.max_peers = 2;
  options.now = [&now] { return now; };
  AuthFailureLimiter limiter(options);
  limiter.Failed("10.0.0.1");
  limiter.Failed("10.0.0.2");
  for (int i = 0; i < 100; ++i) limiter.Failed(absl::StrCat("192.168.0.", i));
  EXPECT_EQ(limiter.tracked(), 2u);
  EXPECT_GT(limiter.RefusedFor("10.0.0.1"), absl::ZeroDuration());
  EXPECT_GT(limiter.RefusedFor("10.0.0.2"), absl::ZeroDuration());
  EXPECT_EQ(limiter.RefusedFor("192.168.0.99"), absl::ZeroDuration()) << "not tracked";
  // Once their window ended, the table takes new peers again.
  now += options.window;
  limiter.Failed("192.168.0.99");
  EXPECT_GT(limiter.RefusedFor("192.168.0.99"), absl::ZeroDuration());
  EXPECT_EQ(limiter.RefusedFor("10.0.0.1"), absl::ZeroDuration());
}

TEST(RateLimitKeyTest, IPv6PeersShareTheirSlash64AndIPv4PeersAreSingleAddresses) {
  EXPECT_EQ(services::RateLimitKey("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(services::RateLimitKey("::ffff:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(services::RateLimitKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(services::RateLimitKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(services::RateLimitKey("fe80::1%eth0"), "fe80::/64");
  EXPECT_EQ(services::RateLimitKey("::1"), "::/64");
  EXPECT_EQ(services::RateLimitKey("unix:/tmp/s"), "unix:/tmp/s");
}

TEST(AuthFailureLimiterTest, AnIPv6AttackerCannotEscapeByChangingAddressesInItsSlash64) {
  absl::Time now = absl::FromUnixSeconds(1000);
  AuthFailureLimiter::Options options;
  options.now = [&now] { return now; };
  AuthFailureLimiter limiter(options);
  for (int i = 0; i < options.max_failures; ++i) {
    limiter.Failed(absl::StrCat("2001:db8:1:2::", absl::Hex(i + 1)));
  }
  EXPECT_GT(limiter.RefusedFor("2001:db8:1:2:ffff:ffff:ffff:ffff"), absl::ZeroDuration());
  EXPECT_EQ(limiter.RefusedFor("2001:db8:1:3::1"), absl::ZeroDuration()) << "another /64";
  EXPECT_EQ(limiter.tracked(), 1u);
  // IPv4 peers are single addresses.
  for (int i = 0; i < options.max_failures; ++i) limiter.Failed(absl::StrCat("10.0.0.", i));
  EXPECT_EQ(limiter.RefusedFor("10.0.0.0"), absl::ZeroDuration());
}

TEST(AuthFailureLimiterTest, ZeroMaxFailuresTurnsTheLimitOff) {
  AuthFailureLimiter::Options options;
  options.max_failures = 0;
  AuthFailureLimiter limiter(options);
  for (int i = 0; i < 100; ++i) limiter.Failed("p");
  EXPECT_EQ(limiter.RefusedFor("p"), absl::ZeroDuration());
}

class CredentialsTest : public ::testing::Test {
 protected:
  // A credential with `scopes`; returns its token.
  std::string Create(const std::string& name, std::vector<v1::Scope> scopes) {
    v1::CreateCredentialRequest request;
    request.set_name(name);
    for (v1::Scope s : scopes) request.add_scopes(s);
    v1::CreateCredentialResponse response;
    grpc::Status status =
        server_.registry().CreateCredential(server_.Admin().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.credential().name(), name);
    EXPECT_EQ(response.credential().created_by(), "admin");
    return response.token();
  }

  TestServer server_;
};

TEST_F(CredentialsTest, EveryRpcRefusesEveryOtherScopeAndAdmitsItsOwn) {
  const std::map<v1::Scope, std::string> tokens = {
      {v1::SCOPE_READ, Create("reader", {v1::SCOPE_READ})},
      {v1::SCOPE_PUBLISH, Create("publisher", {v1::SCOPE_PUBLISH})},
      {v1::SCOPE_ROLLOUT, Create("roller", {v1::SCOPE_ROLLOUT})},
      {v1::SCOPE_KEYS, Create("keyholder", {v1::SCOPE_KEYS})},
      {v1::SCOPE_ADMIN, Create("operator", {v1::SCOPE_ADMIN})},
  };
  const google::protobuf::ServiceDescriptor& service = Registry();
  for (int i = 0; i < service.method_count(); ++i) {
    const std::string& method = service.method(i)->name();
    const v1::Scope needed = *RequiredScope(method);
    for (const auto& [scope, token] : tokens) {
      const grpc::Status status = CallEmpty(server_.channel(), method, token);
      if (scope == needed || scope == v1::SCOPE_ADMIN) {
        // Admitted: whatever the empty request gets, it is not about who asked.
        EXPECT_NE(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
            << method << ": " << status.error_message();
        EXPECT_NE(ReasonOf(status), "SCOPE_MISSING") << method << " with " << ScopeWord(scope);
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << method << " with " << ScopeWord(scope) << ": " << status.error_message();
        EXPECT_EQ(ReasonOf(status), "SCOPE_MISSING") << method;
        EXPECT_THAT(status.error_message(),
                    HasSubstr(absl::StrCat("needs scope ", ScopeWord(needed))))
            << method;
      }
    }
  }
}

TEST_F(CredentialsTest, ACredentialWorksWithItsScopesUntilRevoked) {
  const std::string token = Create("ci", {v1::SCOPE_PUBLISH, v1::SCOPE_READ});
  v1::CreateModelRequest create;
  create.set_model_id("llama");
  v1::Model model;
  ASSERT_TRUE(server_.registry().CreateModel(WithToken(token).get(), create, &model).ok());
  v1::ListModelsResponse models;
  ASSERT_TRUE(server_.registry().ListModels(WithToken(token).get(), {}, &models).ok());
  EXPECT_EQ(models.models_size(), 1);
  v1::SetTierRequest set;
  v1::TierBinding binding;
  grpc::Status denied = server_.registry().SetTier(WithToken(token).get(), set, &binding);
  EXPECT_EQ(ReasonOf(denied), "SCOPE_MISSING");
  EXPECT_THAT(denied.error_message(), HasSubstr("needs scope rollout"));

  v1::RevokeCredentialRequest revoke;
  revoke.set_name("ci");
  v1::Credential revoked;
  ASSERT_TRUE(server_.registry().RevokeCredential(server_.Admin().get(), revoke, &revoked).ok());
  EXPECT_TRUE(revoked.has_revoke_time());
  grpc::Status after = server_.registry().ListModels(WithToken(token).get(), {}, &models);
  EXPECT_EQ(after.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(after), "WRONG_TOKEN");
  EXPECT_EQ(ReasonOf(server_.registry().RevokeCredential(server_.Admin().get(), revoke, &revoked)),
            "CREDENTIAL_REVOKED");
  // The name stays taken, so the audit log's actors stay unambiguous.
  v1::CreateCredentialRequest again;
  again.set_name("ci");
  again.add_scopes(v1::SCOPE_READ);
  v1::CreateCredentialResponse created;
  EXPECT_EQ(ReasonOf(server_.registry().CreateCredential(server_.Admin().get(), again, &created)),
            "CREDENTIAL_EXISTS");
}

TEST_F(CredentialsTest, RequestsAreChecked) {
  v1::CreateCredentialResponse created;
  v1::CreateCredentialRequest request;
  request.set_name("admin");
  request.add_scopes(v1::SCOPE_READ);
  EXPECT_EQ(ReasonOf(server_.registry().CreateCredential(server_.Admin().get(), request, &created)),
            "INVALID_ID");
  request.set_name("no scopes");
  EXPECT_EQ(ReasonOf(server_.registry().CreateCredential(server_.Admin().get(), request, &created)),
            "INVALID_ID");
  request.set_name("bot");
  request.clear_scopes();
  EXPECT_EQ(ReasonOf(server_.registry().CreateCredential(server_.Admin().get(), request, &created)),
            "INVALID_SCOPE");
  request.add_scopes(static_cast<v1::Scope>(42));
  EXPECT_EQ(ReasonOf(server_.registry().CreateCredential(server_.Admin().get(), request, &created)),
            "INVALID_SCOPE");
  v1::RevokeCredentialRequest revoke;
  revoke.set_name("nobody");
  v1::Credential revoked;
  EXPECT_EQ(ReasonOf(server_.registry().RevokeCredential(server_.Admin().get(), revoke, &revoked)),
            "CREDENTIAL_NOT_FOUND");
}

TEST_F(CredentialsTest, TokensAreNeverListedNorStoredOnlyTheirHashes) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 3; ++i) tokens.push_back(Create(absl::StrCat("bot-", i), {v1::SCOPE_READ}));
  v1::ListCredentialsRequest request;
  request.set_page_size(2);
  std::vector<std::string> names;
  std::string listed;
  do {
    v1::ListCredentialsResponse page;
    ASSERT_TRUE(server_.registry().ListCredentials(server_.Admin().get(), request, &page).ok());
    for (const v1::Credential& c : page.credentials()) {
      names.push_back(c.name());
      EXPECT_EQ(c.scopes_size(), 1);
      EXPECT_FALSE(c.has_revoke_time());
    }
    listed += page.SerializeAsString();
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_THAT(names, ::testing::ElementsAre("bot-0", "bot-1", "bot-2"));

  // The catalog's files, with its write-ahead log (where fresh rows are until a checkpoint).
  std::string stored;
  for (const char* file : {"/catalog.db", "/catalog.db-wal"}) {
    absl::StatusOr<std::string> bytes = ReadFileToString(server_.data_dir() + "/data" + file);
    if (bytes.ok()) stored += *bytes;
  }
  for (const std::string& token : tokens) {
    EXPECT_THAT(listed, Not(HasSubstr(token.substr(4))));
    EXPECT_THAT(stored, Not(HasSubstr(token.substr(4)))) << "the catalog holds a token";
    EXPECT_THAT(stored, HasSubstr(services::TokenSha256Hex(token))) << "read the wrong files?";
  }
  v1::ListAuditLogResponse log;
  ASSERT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), {}, &log).ok());
  for (const std::string& token : tokens) {
    EXPECT_THAT(log.SerializeAsString(), Not(HasSubstr(token.substr(4))));
  }
}

TEST_F(CredentialsTest, TheAuditActorIsTheCredentialNameWhateverTheClientClaims) {
  const std::string token = Create("release-bot", {v1::SCOPE_PUBLISH});
  auto context = WithToken(token);
  context->AddMetadata("x-modeldist-actor", "somebody-else");
  v1::CreateModelRequest create;
  create.set_model_id("llama");
  v1::Model model;
  ASSERT_TRUE(server_.registry().CreateModel(context.get(), create, &model).ok());
  v1::ListAuditLogResponse log;
  ASSERT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), {}, &log).ok());
  ASSERT_GE(log.entries_size(), 2);
  EXPECT_EQ(log.entries(0).actor(), "release-bot");
  EXPECT_EQ(log.entries(0).action(), "CreateModel");
  EXPECT_EQ(log.entries(1).actor(), "admin");
  EXPECT_EQ(log.entries(1).action(), "CreateCredential");
  EXPECT_EQ(log.entries(1).resource(), "credentials/release-bot");
  EXPECT_THAT(log.entries(1).details(), HasSubstr("SCOPE_PUBLISH"));
}

TEST_F(CredentialsTest, KeyChangesAreAuditedUnderTheCredentialName) {
  const std::string keys = Create("key-officer", {v1::SCOPE_KEYS});
  const std::string admin = Create("root-admin", {v1::SCOPE_ADMIN});
  v1::AddSigningKeyRequest add;
  v1::SignedTrustRoot added;
  ASSERT_TRUE(server_.registry().AddSigningKey(WithToken(keys).get(), add, &added).ok());
  v1::TrustRoot root;
  ASSERT_TRUE(root.ParseFromString(added.root()));
  v1::RevokeSigningKeyRequest revoke;
  revoke.set_key_id(root.keys(0).key_id());
  v1::SignedTrustRoot revoked;
  ASSERT_TRUE(server_.registry().RevokeSigningKey(WithToken(admin).get(), revoke, &revoked).ok());
  v1::RotateSigningKeysRequest rotate;
  v1::SignedTrustRoot rotated;
  ASSERT_TRUE(server_.registry().RotateSigningKeys(WithToken(keys).get(), rotate, &rotated).ok());
  // An uploaded root: the next version with the same online keys, which the server signs.
  ASSERT_TRUE(root.ParseFromString(rotated.root()));
  root.set_version(root.version() + 1);
  v1::UploadTrustRootRequest upload;
  upload.mutable_root()->set_root(root.SerializeAsString());
  v1::SignedTrustRoot uploaded;
  grpc::Status s = server_.registry().UploadTrustRoot(WithToken(admin).get(), upload, &uploaded);
  ASSERT_TRUE(s.ok()) << s.error_message();

  v1::ListAuditLogResponse log;
  ASSERT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), {}, &log).ok());
  std::vector<std::string> roots;
  for (const v1::AuditEntry& e : log.entries()) {
    if (e.action() != "AppendTrustRoot") continue;
    roots.push_back(absl::StrCat(e.actor(), " ", e.resource()));
  }
  EXPECT_THAT(roots,
              ::testing::ElementsAre(absl::StrCat("root-admin trustRoots/", root.version()),
                                     absl::StrCat("key-officer trustRoots/", root.version() - 1),
                                     absl::StrCat("root-admin trustRoots/", root.version() - 2),
                                     absl::StrCat("key-officer trustRoots/", root.version() - 3),
                                     "modeldist-server trustRoots/1"));
}

TEST(AuthRateLimitTest, ElevenBadTokensFromOnePeerLockItOutAndAreCounted) {
  services::ServerConfig config;
  config.http_listen = "127.0.0.1:0";
  TestServer server(config);
  // Over TCP, so the peer is 127.0.0.1 (the in-process channel has no address).
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.server().port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::RegistryService::NewStub(channel);
  v1::ListModelsResponse models;
  for (int i = 0; i < 10; ++i) {
    grpc::Status status = stub->ListModels(WithToken("wrong-token-0123456789").get(), {}, &models);
    ASSERT_EQ(ReasonOf(status), "WRONG_TOKEN") << i;
  }
  grpc::Status eleventh = stub->ListModels(WithToken("wrong-token-0123456789").get(), {}, &models);
  EXPECT_EQ(eleventh.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ReasonOf(eleventh), "AUTH_RATE_LIMITED");
  // The whole peer waits, a caller with the right token too: the limit cannot tell a guesser
  // from an admin behind the same address.
  grpc::Status good = stub->ListModels(WithToken(kTestToken).get(), {}, &models);
  EXPECT_EQ(ReasonOf(good), "AUTH_RATE_LIMITED");
  // Devices are not admin callers: ManifestService stays open to them.
  auto manifests = v1::ManifestService::NewStub(channel);
  grpc::ClientContext device;
  v1::GetSigningKeysResponse keys;
  EXPECT_TRUE(manifests->GetSigningKeys(&device, {}, &keys).ok());

  CurlResult metrics = Curl(server.HttpUrl("/metrics"));
  ASSERT_EQ(metrics.status, 200) << metrics.stderr_text;
  EXPECT_THAT(metrics.body, HasSubstr("modeldist_auth_failures_total{reason=\"WRONG_TOKEN\"} 10"));
  EXPECT_THAT(metrics.body,
              HasSubstr("modeldist_auth_failures_total{reason=\"AUTH_RATE_LIMITED\"} 2"));
}

// --- mTLS ------------------------------------------------------------------------------------

// Runs `command` (openssl) and fails the test when it fails.
void Run(const std::string& command) {
  ASSERT_EQ(std::system((command + " 2>/dev/null").c_str()), 0) << command;
}

// In `dir`: a server certificate (cert.pem, key.pem) for 127.0.0.1, a client CA (ca.pem) and
// client certificates it signed: <cn>.pem / <cn>.key for each of `names`.
void MakeCertificates(const ScratchDir& dir, const std::vector<std::string>& names) {
  Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      dir.Join("key.pem") + " -out " + dir.Join("cert.pem"));
  Run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=admin-ca -keyout " +
      dir.Join("ca.key") + " -out " + dir.Join("ca.pem"));
  for (const std::string& cn : names) {
    const std::string base = dir.Join(cn);
    Run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + cn +
        " -keyout " + base + ".key -out " + base + ".csr");
    Run("openssl x509 -req -days 1 -in " + base + ".csr -CA " + dir.Join("ca.pem") + " -CAkey " +
        dir.Join("ca.key") + " -CAcreateserial -out " + base + ".pem");
  }
}

TEST(ClientCertificateTest, ACertificateNamingACredentialAuthenticatesWithItsScopes) {
  ScratchDir certs;
  MakeCertificates(certs, {"ci-bot", "stranger"});
  if (::testing::Test::HasFatalFailure()) return;
  services::ServerConfig config;
  config.tls_cert_file = certs.Join("cert.pem");
  config.tls_key_file = certs.Join("key.pem");
  config.admin_client_ca_file = certs.Join("ca.pem");
  TestServer server(config);
  const std::string target = absl::StrCat("127.0.0.1:", server.server().port());
  auto stub_as = [&](const std::string& cn) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = *ReadFileToString(certs.Join("cert.pem"));
    if (!cn.empty()) {
      tls.pem_private_key = *ReadFileToString(certs.Join(cn + ".key"));
      tls.pem_cert_chain = *ReadFileToString(certs.Join(cn + ".pem"));
    }
    return v1::RegistryService::NewStub(grpc::CreateChannel(target, grpc::SslCredentials(tls)));
  };
  auto anonymous = stub_as("");
  v1::CreateCredentialRequest create;
  create.set_name("ci-bot");
  create.add_scopes(v1::SCOPE_READ);
  v1::CreateCredentialResponse created;
  ASSERT_TRUE(anonymous->CreateCredential(WithToken(kTestToken).get(), create, &created).ok());

  auto bot = stub_as("ci-bot");
  auto context = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  };
  v1::ListModelsResponse models;
  grpc::Status listed = bot->ListModels(context().get(), {}, &models);
  EXPECT_TRUE(listed.ok()) << listed.error_message();
  v1::CreateModelRequest model;
  model.set_model_id("llama");
  v1::Model made;
  EXPECT_EQ(ReasonOf(bot->CreateModel(context().get(), model, &made)), "SCOPE_MISSING");

  grpc::Status stranger = stub_as("stranger")->ListModels(context().get(), {}, &models);
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReasonOf(stranger), "UNKNOWN_CERTIFICATE");
  EXPECT_THAT(stranger.error_message(), HasSubstr("stranger"));

  grpc::Status nothing = anonymous->ListModels(context().get(), {}, &models);
  EXPECT_EQ(ReasonOf(nothing), "MISSING_TOKEN");

  // A token still wins over a certificate, and revoking the credential stops the certificate.
  EXPECT_TRUE(bot->CreateModel(WithToken(kTestToken).get(), model, &made).ok());
  v1::RevokeCredentialRequest revoke;
  revoke.set_name("ci-bot");
  v1::Credential revoked;
  ASSERT_TRUE(anonymous->RevokeCredential(WithToken(kTestToken).get(), revoke, &revoked).ok());
  EXPECT_EQ(ReasonOf(bot->ListModels(context().get(), {}, &models)), "UNKNOWN_CERTIFICATE");
}

TEST(ClientCertificateTest, TheClientCaNeedsTls) {
  ScratchDir dir;
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.Join("data");
  config.admin_token = kTestToken;
  config.admin_client_ca_file = dir.Join("ca.pem");
  EXPECT_THAT(
      services::ModeldistServer::Start(config),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--admin-client-ca needs TLS")));
}

}  // namespace
}  // namespace modeldist::testing
