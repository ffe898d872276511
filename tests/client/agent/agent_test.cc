// The agent end to end against a real server on loopback: publish, sync, activate, publish a
// new version, sync (previous kept), gc; and each manifest check refusing with its own code
// before any byte is downloaded.
#include "client/agent/agent.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/agent/trial.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class AgentTest : public AgentFixture {
 protected:
  void SetUp() override {
    server_.SetTier("llama8b", "", Publish("1", v1_));
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
  }

  static std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // 9 MiB + 5: three 4 MiB chunks.
  const std::string v1_ = RandomBytes((9 << 20) + 5, 1);
  const std::string v2_ = RandomBytes((5 << 20) + 7, 2);
};

TEST_F(AgentTest, SyncActivatesThenUpdatesKeepingPreviousThenGc) {
  auto first = agent::Sync(Options());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(first->download.chunks_total, 3);
  EXPECT_EQ(first->download.chunks_fetched, 3);
  EXPECT_EQ(ReadAll(first->installed.path), v1_);

  auto again = agent::Sync(Options());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->action, agent::SyncResult::Action::kUpToDate);
  EXPECT_EQ(again->download.bytes_received, 0);
  // The app loaded it: only a confirmed version becomes `previous` (trial.h).
  ASSERT_TRUE(agent::ConfirmLoaded({.dir = Options().dir}).ok());

  server_.SetTier("llama8b", "", Publish("2", v2_));
  auto second = agent::Sync(Options());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(ReadAll(second->installed.path), v2_);

  auto store = agent::ModelStore::Open(Options().dir);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->Previous().has_value());
  EXPECT_EQ(store->Previous()->version, "models/llama/versions/1");
  EXPECT_EQ(store->Current()->version, "models/llama/versions/2");

  ASSERT_TRUE(agent::ConfirmLoaded({.dir = Options().dir}).ok());
  server_.SetTier("llama8b", "", Publish("3", RandomBytes(1000, 3)));
  ASSERT_TRUE(agent::Sync(Options()).ok());
  EXPECT_EQ(store->List().size(), 3u);
  auto freed = store->CollectGarbage();
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_GT(*freed, 0);
  EXPECT_EQ(store->List().size(), 2u);  // current (3) and previous (2)
  EXPECT_EQ(store->Previous()->version, "models/llama/versions/2");
}

TEST_F(AgentTest, FollowsKeyRotationFromThePinnedRoot) {
  v1::RotateSigningKeysRequest rotate;
  rotate.set_count(2);
  rotate.set_threshold(2);
  v1::SignedTrustRoot root;
  ASSERT_TRUE(server_.registry().RotateSigningKeys(server_.Admin().get(), rotate, &root).ok());
  auto synced = agent::Sync(Options());
  ASSERT_TRUE(synced.ok()) << synced.status();
  // The agent persisted root 2 and no longer needs the pinned file.
  agent::SyncOptions o = Options();
  o.trust_root_file = "";
  EXPECT_TRUE(agent::Sync(o).ok());
}

TEST_F(AgentTest, ExpiredManifestIsRefusedBeforeDownloading) {
  agent::SyncOptions o = Options();
  o.now = [] { return absl::Now() + absl::Hours(48); };  // TTL is 24 h
  auto synced = agent::Sync(o);
  EXPECT_EQ(ErrorReason(synced.status()), "MANIFEST_EXPIRED");
  EXPECT_EQ(agent::ExitCodeFor(synced.status()), 12);
  EXPECT_FALSE(std::filesystem::exists(o.dir + "/current"));
  // Within the skew allowance it is accepted.
  o.now = [] { return absl::Now() + absl::Hours(24) + absl::Minutes(1); };
  EXPECT_TRUE(agent::Sync(o).ok());
}

TEST_F(AgentTest, SequenceRollbackIsRefused) {
  auto first = agent::Sync(Options());
  ASSERT_TRUE(first.ok()) << first.status();
  // The device once saw a newer answer than the server now gives (a replayed old manifest).
  // Server sequences follow its clock in microseconds, so "newer" is relative to this one.
  ASSERT_TRUE(WriteFileAtomically(
                  Options().dir + "/trust/sequence",
                  absl::StrCat("llama8b stable ", first->manifest.sequence() + 1, "\n"), 0600)
                  .ok());
  auto synced = agent::Sync(Options());
  EXPECT_EQ(ErrorReason(synced.status()), "SEQUENCE_ROLLBACK");
  EXPECT_EQ(agent::ExitCodeFor(synced.status()), 13);
}

TEST_F(AgentTest, PinnedRootIsKeptSoLaterSyncsNeedNoTrustRoot) {
  auto first = agent::Sync(Options());
  ASSERT_TRUE(first.ok()) << first.status();
  // No rotation happened: what is kept is the pinned root itself, private to the agent.
  const std::string stored = Options().dir + "/trust/root.bin";
  struct stat st;
  ASSERT_EQ(::stat(stored.c_str(), &st), 0) << "the pinned root was not kept";
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  v1::SignedTrustRoot kept, pinned;
  ASSERT_TRUE(kept.ParseFromString(ReadAll(stored)));
  ASSERT_TRUE(pinned.ParseFromString(ReadAll(root_file_)));
  EXPECT_EQ(kept.root(), pinned.root());

  // The app no longer passes the pinned file (or it is gone).
  ASSERT_EQ(::unlink(root_file_.c_str()), 0);
  agent::SyncOptions o = Options();
  o.trust_root_file = "";
  auto again = agent::Sync(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->action, agent::SyncResult::Action::kUpToDate);
  server_.SetTier("llama8b", "", Publish("2", v2_));
  auto second = agent::Sync(o);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(ReadAll(second->installed.path), v2_);
}

TEST_F(AgentTest, StoredRootWinsOverThePinnedFile) {
  ASSERT_TRUE(agent::Sync(Options()).ok());
  // Once DIR has a root, --trust-root is not read: not even a root of another server there
  // changes whom the device trusts.
  TestServer other;
  v1::GetTrustRootRequest request;
  v1::SignedTrustRoot foreign;
  grpc::ClientContext context;
  ASSERT_TRUE(other.manifests().GetTrustRoot(&context, request, &foreign).ok());
  ASSERT_TRUE(WriteFileAtomically(root_file_, foreign.SerializeAsString(), 0644).ok());
  auto synced = agent::Sync(Options());
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kUpToDate);
}

TEST_F(AgentTest, ForeignRootIsRefusedAndNotKept) {
  // A root from another server (other keys) cannot vouch for this server's manifests.
  TestServer other;
  v1::GetTrustRootRequest request;
  v1::SignedTrustRoot foreign;
  grpc::ClientContext context;
  ASSERT_TRUE(other.manifests().GetTrustRoot(&context, request, &foreign).ok());
  const std::string shipped = ReadAll(root_file_);
  ASSERT_TRUE(WriteFileAtomically(root_file_, foreign.SerializeAsString(), 0644).ok());
  auto synced = agent::Sync(Options());
  EXPECT_EQ(ErrorReason(synced.status()), "SIGNATURE_THRESHOLD_NOT_MET");
  EXPECT_EQ(agent::ExitCodeFor(synced.status()), 10);
  EXPECT_FALSE(std::filesystem::exists(Options().dir + "/current"));
  // It vouched for nothing, so it is not kept: the right file still works, and is then kept.
  EXPECT_FALSE(std::filesystem::exists(Options().dir + "/trust/root.bin"));
  ASSERT_TRUE(WriteFileAtomically(root_file_, shipped, 0644).ok());
  ASSERT_TRUE(agent::Sync(Options()).ok());
  agent::SyncOptions o = Options();
  o.trust_root_file = "";
  auto again = agent::Sync(o);
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(AgentTest, MissingTrustRootSaysWhatToDo) {
  agent::SyncOptions o = Options();
  o.trust_root_file = "";
  auto synced = agent::Sync(o);
  EXPECT_EQ(ErrorReason(synced.status()), "NO_TRUST_ROOT");
  EXPECT_THAT(std::string(synced.status().message()), HasSubstr("--trust-root"));
}

TEST_F(AgentTest, CApiSyncs) {
  md_agent_config config = CApiConfig();
  md_agent* agent = md_agent_new(&config);
  ASSERT_NE(agent, nullptr);
  int64_t last_progress = 0;
  md_sync_result result = {};
  int code = md_agent_sync(
      agent, [](void* user, int64_t done, int64_t total) { *static_cast<int64_t*>(user) = done; },
      &last_progress, &result);
  ASSERT_EQ(code, MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(result.activated, 1);
  EXPECT_EQ(std::string(result.version), "models/llama/versions/1");
  EXPECT_EQ(ReadAll(result.model_path), v1_);
  EXPECT_EQ(last_progress, static_cast<int64_t>(v1_.size()));
  md_agent_free(agent);

  config.platform = "beos";
  agent = md_agent_new(&config);
  EXPECT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_INVALID_ARGUMENT);
  EXPECT_THAT(std::string(md_agent_last_error(agent)), HasSubstr("beos"));
  md_agent_free(agent);
}

}  // namespace
}  // namespace modeldist::testing
