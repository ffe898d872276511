// The agent against a hostile ManifestService: a proxy in front of a real server that replays
// an old signed answer, tampers with the signature or the signed bytes, answers with the
// (validly signed) manifest of another arch, or with another content under a sequence the
// device already accepted. None may activate anything or download a byte; each fails with its
// own reason and exit code, and the model installed before stays active.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/agent.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/client/agent/hostile_manifest_proxy.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class HostileManifestTest : public AgentFixture {
 protected:
  void SetUp() override {
    server_.SetTier("llama8b", "", Publish("1", v1_bytes_));
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
    // The device installs version 1 from the real server.
    auto first = agent::Sync(Options());
    ASSERT_TRUE(first.ok()) << first.status();
    installed_ = first->installed.path;
    ASSERT_TRUE(std::filesystem::exists(installed_));
  }

  std::string ProxyAddress() { return "127.0.0.1:" + std::to_string(proxy_.port()); }

  // A hostile sync through the proxy: refused with `reason` and `exit_code` (and a message
  // containing each of `message_has`), and the device still runs the version installed before
  // with nothing downloaded.
  void ExpectRefused(const std::string& reason, int exit_code,
                     const std::vector<std::string>& message_has = {}) {
    auto synced = agent::Sync(Options(ProxyAddress()));
    ASSERT_FALSE(synced.ok());
    EXPECT_EQ(ErrorReason(synced.status()), reason) << synced.status();
    EXPECT_EQ(agent::ExitCodeFor(synced.status()), exit_code);
    for (const std::string& part : message_has) {
      EXPECT_THAT(std::string(synced.status().message()), HasSubstr(part));
    }
    EXPECT_GE(proxy_.forwarded(), 1);
    auto store = agent::ModelStore::Open(Options(ProxyAddress()).dir);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE(store->Current().has_value());
    EXPECT_EQ(store->Current()->path, installed_);
    EXPECT_TRUE(std::filesystem::is_empty(store->StagingDir())) << "bytes were downloaded";
  }

  // Publishes version 2 and pins kOtherDevice to it: the tier's sequence grows, and under that
  // one sequence the server validly signs version 1 for this device (no device id) and
  // version 2 for the other device: the two answers of a server that issued a sequence twice.
  // Returns the new sequence.
  int64_t PinOtherDeviceToVersion2() {
    v1::PinDevicesRequest request;
    request.set_tier("llama8b");
    request.add_device_ids(kOtherDevice);
    request.set_version(Publish("2", RandomBytes(4000, 16)));
    v1::PinDevicesResponse response;
    grpc::Status s = server_.registry().PinDevices(server_.Admin().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.sequence();
  }

  // The proxy answers this device with the other device's (validly signed) manifest.
  void AnswerWithOtherDevicesManifest() {
    proxy_.set_rewrite([this](const v1::GetManifestRequest& request, v1::SignedManifest* answer) {
      v1::GetManifestRequest other = request;
      other.set_device_id(kOtherDevice);
      grpc::ClientContext context;
      return upstream_->GetManifest(&context, other, answer);
    });
  }

  static constexpr char kOtherDevice[] = "other-device";
  HostileManifestProxy proxy_{server_.channel()};
  std::unique_ptr<v1::ManifestService::Stub> upstream_ =
      v1::ManifestService::NewStub(server_.channel());
  const std::string v1_bytes_ = RandomBytes((5 << 20) + 3, 11);
  const std::string arm_bytes_ = RandomBytes(1000, 12);
  std::string installed_;
};

TEST_F(HostileManifestTest, TamperedSignatureIsRefused) {
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(4000, 13)));
  proxy_.set_rewrite([](const v1::GetManifestRequest&, v1::SignedManifest* answer) {
    std::string* signature = answer->mutable_signatures(0)->mutable_signature();
    (*signature)[7] = static_cast<char>((*signature)[7] ^ 0x01);
    return grpc::Status::OK;
  });
  ExpectRefused("SIGNATURE_THRESHOLD_NOT_MET", 10);
}

TEST_F(HostileManifestTest, TamperedManifestBytesAreRefused) {
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(4000, 14)));
  proxy_.set_rewrite([](const v1::GetManifestRequest&, v1::SignedManifest* answer) {
    std::string* bytes = answer->mutable_manifest();
    (*bytes)[bytes->size() / 2] = static_cast<char>((*bytes)[bytes->size() / 2] ^ 0x20);
    return grpc::Status::OK;
  });
  ExpectRefused("SIGNATURE_THRESHOLD_NOT_MET", 10);
}

TEST_F(HostileManifestTest, AnotherPlatformsManifestIsRefused) {
  // Validly signed by the same keys, but the answer for a Mac (macOS arm64, on its own tier):
  // a Linux x86_64 device asking for llama8b must not take it.
  server_.SetTier("llama8b-mac", "",
                  Publish("mac1", arm_bytes_, v1::ARCH_ARM64, v1::PLATFORM_MACOS));
  auto upstream = v1::ManifestService::NewStub(server_.channel());
  proxy_.set_rewrite(
      [&upstream](const v1::GetManifestRequest& request, v1::SignedManifest* answer) {
        v1::GetManifestRequest other = request;
        other.set_tier("llama8b-mac");
        other.set_platform(v1::PLATFORM_MACOS);
        other.set_arch(v1::ARCH_ARM64);
        grpc::ClientContext context;
        return upstream->GetManifest(&context, other, answer);
      });
  ExpectRefused("WRONG_TARGET", 14);
}

TEST_F(HostileManifestTest, ReplayedOldManifestIsRefused) {
  // Record today's signed answer (version 1), then the device moves on to version 2.
  v1::SignedManifest old_answer;
  {
    auto upstream = v1::ManifestService::NewStub(server_.channel());
    v1::GetManifestRequest request;
    request.set_tier("llama8b");
    request.set_platform(v1::PLATFORM_LINUX);
    request.set_arch(v1::ARCH_X86_64);
    grpc::ClientContext context;
    ASSERT_TRUE(upstream->GetManifest(&context, request, &old_answer).ok());
  }
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(4000, 15)));
  auto second = agent::Sync(Options());
  ASSERT_TRUE(second.ok()) << second.status();
  installed_ = second->installed.path;
  // Now the proxy serves the old, validly signed, unexpired answer.
  proxy_.set_rewrite([&old_answer](const v1::GetManifestRequest&, v1::SignedManifest* answer) {
    *answer = old_answer;
    return grpc::Status::OK;
  });
  ExpectRefused("SEQUENCE_ROLLBACK", 13);
}

TEST_F(HostileManifestTest, EqualSequenceIsAcceptedOnlyForTheSameContent) {
  const int64_t sequence = PinOtherDeviceToVersion2();
  auto first = agent::Sync(Options());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->action, agent::SyncResult::Action::kUpToDate);
  ASSERT_EQ(first->manifest.sequence(), sequence);

  // The server re-signs an unchanged binding for freshness (publishing any version re-signs
  // every answer): same sequence, new issued_at, same content. Accepted.
  Publish("unrelated", RandomBytes(100, 17));
  auto resigned = agent::Sync(Options());
  ASSERT_TRUE(resigned.ok()) << resigned.status();
  EXPECT_EQ(resigned->action, agent::SyncResult::Action::kUpToDate);
  EXPECT_EQ(resigned->manifest.sequence(), sequence);
  EXPECT_NE(resigned->manifest.issued_at().SerializeAsString(),
            first->manifest.issued_at().SerializeAsString())
      << "not a re-sign";

  // Version 2 under that same sequence, validly signed: refused.
  AnswerWithOtherDevicesManifest();
  ExpectRefused("SEQUENCE_ROLLBACK", 13,
                {absl::StrCat("sequence ", sequence,
                              " was already accepted for a different version "
                              "models/llama/versions/1"),
                 "refusing models/llama/versions/2"});
}

TEST_F(HostileManifestTest, SequenceFileOfAnOlderAgentLoadsAndLearnsTheContent) {
  const int64_t sequence = PinOtherDeviceToVersion2();
  // An agent before this rule recorded the number alone.
  ASSERT_TRUE(WriteFileAtomically(Options().dir + "/trust/sequence",
                                  absl::StrCat("llama8b stable ", sequence, "\n"), 0600)
                  .ok());
  // That equal sequence, without a recorded content, is accepted once and recorded ...
  auto synced = agent::Sync(Options());
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kUpToDate);
  EXPECT_EQ(synced->manifest.sequence(), sequence);
  // ... so another content under it is refused from then on.
  AnswerWithOtherDevicesManifest();
  ExpectRefused("SEQUENCE_ROLLBACK", 13);
}

}  // namespace
}  // namespace modeldist::testing
