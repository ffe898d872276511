// The server serves TLS when given a certificate and key, and refuses half a TLS config.
#include <grpcpp/grpcpp.h>

#include <cstdlib>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "services/server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

// A self-signed P-256 certificate for "localhost" and 127.0.0.1, made with the openssl CLI.
void MakeCertificate(const ScratchDir& dir) {
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
      "-keyout " +
      dir.Join("key.pem") + " -out " + dir.Join("cert.pem") + " 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

TEST(TlsTest, ServesTlsAndRefusesPlaintextClients) {
  ScratchDir dir;
  MakeCertificate(dir);
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.Join("data");
  config.admin_token = "tls-test-token-0123456789";
  config.tls_cert_file = dir.Join("cert.pem");
  config.tls_key_file = dir.Join("key.pem");
  auto server = services::ModeldistServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = "127.0.0.1:" + std::to_string((*server)->port());

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = *ReadFileToString(dir.Join("cert.pem"));
  auto secure =
      v1::ManifestService::NewStub(grpc::CreateChannel(target, grpc::SslCredentials(tls)));
  v1::GetSigningKeysResponse keys;
  grpc::ClientContext c1;
  c1.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status s = secure->GetSigningKeys(&c1, {}, &keys);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(keys.keys_size(), 1);

  auto plain =
      v1::ManifestService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext c2;
  c2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_FALSE(plain->GetSigningKeys(&c2, {}, &keys).ok());
}

TEST(TlsTest, CertWithoutKeyIsRefused) {
  ScratchDir dir;
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.Join("data");
  config.admin_token = "tls-test-token-0123456789";
  config.tls_cert_file = dir.Join("cert.pem");
  auto server = services::ModeldistServer::Start(config);
  EXPECT_THAT(server, StatusIs(absl::StatusCode::kInvalidArgument,
                               ::testing::HasSubstr("--tls-cert and --tls-key")));
}

TEST(ServerStartTest, SecondServerOnTheSameDataDirIsRefused) {
  ScratchDir dir;
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.Join("data");
  config.admin_token = "test-token-0123456789";
  auto first = services::ModeldistServer::Start(config);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = services::ModeldistServer::Start(config);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition,
                               ::testing::HasSubstr("in use by another modeldist-server")));
}

}  // namespace
}  // namespace modeldist::testing
