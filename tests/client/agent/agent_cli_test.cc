// The real modeldist-agent binary against a server that says no: the reason the server put on
// its error (google.rpc.ErrorInfo) must reach the user — in the JSON report and in the exit
// code that switches on it — whether GetManifest or a gRPC source's Read failed.
#include "tests/client/agent/agent_cli.h"

#include <string>

#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class AgentCliTest : public AgentFixture {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot()); }

  AgentRun Sync() {
    return RunAgent(
        {"sync", "--server", ServerAddress(), "--tier", "llama8b", "--dir", dir_.Join("models"),
         "--trust-root", root_file_, "--platform", "linux", "--arch", "x86_64", "--json"},
        dir_.path());
  }
};

TEST_F(AgentCliTest, ASourceReadFailureReachesTheUserWithItsReasonAndExitCode) {
  const std::string bytes = RandomBytes(3 << 20, 7);
  server_.SetTier("llama8b", "", Publish("v1", bytes));
  // The manifest still lists the artifact; the server has lost its bytes, so the gRPC source's
  // Read answers NOT_FOUND with the store's reason.
  const std::string hex = Sha256::HexOf(bytes);
  DamageFile(server_.data_dir() + "/data/blobs/sha256/" + hex.substr(0, 2) + "/" + hex,
             FileDamage::kDelete);

  AgentRun run = Sync();
  EXPECT_EQ(run.exit_code, 3) << run.out << run.err;  // 3: not found
  EXPECT_EQ(JsonField(run.out, "code"), "NOT_FOUND") << run.out;
  EXPECT_EQ(JsonField(run.out, "reason"), "BLOB_NOT_FOUND") << run.out;
  EXPECT_THAT(run.err, HasSubstr("grpc://127.0.0.1:"));  // which source said it
}

TEST_F(AgentCliTest, AGetManifestFailureReachesTheUserWithItsReasonAndExitCode) {
  // Nothing is bound to the tier.
  AgentRun run = Sync();
  EXPECT_EQ(run.exit_code, 3) << run.out << run.err;
  EXPECT_EQ(JsonField(run.out, "reason"), "TIER_NOT_BOUND") << run.out;
  EXPECT_THAT(run.err, HasSubstr("GetManifest"));
}

TEST_F(AgentCliTest, AnUnreadableCaFileIsAnErrorNotAPlaintextFallback) {
  AgentRun run = RunAgent(
      {"sync", "--server", ServerAddress(), "--tier", "llama8b", "--dir", dir_.Join("models"),
       "--trust-root", root_file_, "--tls-ca", dir_.Join("missing-ca.pem"), "--json"},
      dir_.path());
  EXPECT_NE(run.exit_code, 0) << run.out;
  EXPECT_EQ(JsonField(run.out, "reason"), "TLS_CA_UNREADABLE") << run.out;
  EXPECT_THAT(run.err, HasSubstr("missing-ca.pem"));
}

}  // namespace
}  // namespace modeldist::testing
