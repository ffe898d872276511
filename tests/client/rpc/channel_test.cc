// MakeChannel against the real server: plaintext, TLS with the server's CA, and the errors a
// client must see instead of a silently different channel.
#include "client/rpc/channel.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "services/server.h"
#include "tests/testing/test_util.h"

namespace modeldist::rpc {
namespace {

using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// GetSigningKeys needs no token, so it shows whether the channel reaches the server.
grpc::Status Ping(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::ManifestService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetSigningKeysResponse keys;
  return stub->GetSigningKeys(&context, {}, &keys);
}

class ChannelTest : public ::testing::Test {
 protected:
  void StartServer(bool tls) {
    services::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.data_dir = dir_.Join("data");
    config.admin_token = "channel-test-token-0123456789";
    if (tls) {
      // A self-signed P-256 certificate for 127.0.0.1, made with the openssl CLI.
      const std::string command =
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
          "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
          dir_.Join("key.pem") + " -out " + dir_.Join("cert.pem") + " 2>/dev/null";
      ASSERT_EQ(std::system(command.c_str()), 0) << command;
      config.tls_cert_file = dir_.Join("cert.pem");
      config.tls_key_file = dir_.Join("key.pem");
    }
    auto server = services::ModeldistServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    target_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  ScratchDir dir_;
  std::unique_ptr<services::ModeldistServer> server_;
  std::string target_;
};

TEST_F(ChannelTest, PlaintextReachesThePlaintextServer) {
  StartServer(/*tls=*/false);
  auto channel = MakeChannel({.target = target_,
                              .keepalive_time = absl::Minutes(6),
                              .fixed_stream_window_bytes = 4 << 20});
  ASSERT_TRUE(channel.ok()) << channel.status();
  grpc::Status s = Ping(*channel);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(ChannelTest, TlsWithTheServersCaReachesTheTlsServer) {
  StartServer(/*tls=*/true);
  auto channel = MakeChannel({.target = target_, .tls_ca_file = dir_.Join("cert.pem")});
  ASSERT_TRUE(channel.ok()) << channel.status();
  grpc::Status s = Ping(*channel);
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto plain = MakeChannel({.target = target_});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(Ping(*plain).ok());
}

TEST_F(ChannelTest, AnUnreadableCaFileIsAnErrorNamingIt) {
  const std::string missing = dir_.Join("no-such-ca.pem");
  auto channel = MakeChannel({.target = "127.0.0.1:1", .tls_ca_file = missing});
  EXPECT_THAT(channel, StatusIs(absl::StatusCode::kFailedPrecondition,
                                AllOf(HasSubstr("TLS CA file"), HasSubstr(missing))));
  EXPECT_EQ(ErrorReason(channel.status()), "TLS_CA_UNREADABLE");
}

TEST_F(ChannelTest, AnEmptyTargetIsRefused) {
  EXPECT_THAT(MakeChannel({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

}  // namespace
}  // namespace modeldist::rpc
