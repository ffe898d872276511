// Publish reruns against a real in-process server (tests/testing/test_server.h): idempotence
// is about what the server records (tier sequence, audit log, blob store), so these runs go to
// a real ModeldistServer, not to the fake.
#include <unistd.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Idempotence is about what the server records (tier sequence, audit log, blob store), so
// these runs go to a real ModeldistServer, not to the fake.

class RealServerPublishTest : public ::testing::Test {
 protected:
  static constexpr int64_t kFileSize = 2 * (1 << 20) + 321;

  void SetUp() override {
    client_ = std::make_unique<RegistryClient>(server_.channel(), modeldist::testing::kTestToken);
    WriteFile(path_, contents_);
    WriteFile(token_file_, absl::StrCat(modeldist::testing::kTestToken, "\n"));
  }

  PublishSpec Spec() const {
    PublishSpec spec;
    spec.model_id = "llama";
    spec.version_id = "1.0";
    spec.tier = "llama8b";
    spec.artifacts = {{v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF, path_}};
    return spec;
  }

  absl::Status Publish(PublishResult* result, std::ostream* log = nullptr) {
    return ctl::Publish(*client_, Spec(), PublishOptions{.upload = {}, .log = log}, result);
  }

  // modeldistctl publish of Spec(), as a user types it, over TCP to the test server.
  CtlRun PublishCommand() {
    return RunInProcess({"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                         "--token-file", token_file_, "publish", "--model", "llama", "--version",
                         "1.0", "--tier", "llama8b", absl::StrCat("macos/x86_64/gguf=", path_)});
  }

  // Every audit entry, newest first.
  std::vector<v1::AuditEntry> AuditLog() {
    std::vector<v1::AuditEntry> entries;
    v1::ListAuditLogRequest request;
    do {
      absl::StatusOr<v1::ListAuditLogResponse> page = client_->ListAuditLog(request);
      EXPECT_THAT(page, IsOk());
      if (!page.ok()) break;
      entries.insert(entries.end(), page->entries().begin(), page->entries().end());
      request.set_page_token(page->next_page_token());
    } while (!request.page_token().empty());
    return entries;
  }

  v1::Version GetVersion() {
    v1::GetVersionRequest request;
    request.set_name("models/llama/versions/1.0");
    absl::StatusOr<v1::Version> version = client_->GetVersion(request);
    EXPECT_THAT(version, IsOk());
    return version.ok() ? *version : v1::Version();
  }

  // Removes the stored blob and its chunk-chain sidecar, as a lost disk or a careless
  // operator would.
  void LoseBlob() {
    const std::string hex = Sha256::HexOf(contents_);
    const std::string blob =
        absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
    ASSERT_EQ(::unlink(blob.c_str()), 0) << blob;
    ASSERT_EQ(::unlink((blob + ".chain").c_str()), 0) << blob;
  }

  modeldist::testing::TestServer server_;
  std::unique_ptr<RegistryClient> client_;
  ScratchDir dir_;
  const std::string path_ = dir_.Join("model.gguf");
  const std::string token_file_ = dir_.Join("token");
  const std::string contents_ = modeldist::testing::RandomBytes(kFileSize, 11);
  const std::string digest_ = FormatDigest(Sha256::HexOf(contents_));
};

TEST_F(RealServerPublishTest, RerunThatChangesNothingChangesNothing) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  // Sequences come from the server's clock (TierBinding.sequence): compare with the first.
  const int64_t sequence = first.binding.sequence();
  ASSERT_GT(sequence, 0);
  const std::vector<v1::AuditEntry> audit = AuditLog();
  ASSERT_FALSE(audit.empty());

  PublishResult second;
  ASSERT_THAT(Publish(&second), IsOk());
  EXPECT_TRUE(second.was_published);
  EXPECT_TRUE(second.tier_already_bound);
  EXPECT_EQ(second.BytesSent(), 0);
  EXPECT_EQ(second.binding.sequence(), sequence);

  // The server agrees: no new sequence, no new audit entry.
  absl::StatusOr<v1::TierBinding> tier = client_->GetTier("llama8b", "");
  ASSERT_THAT(tier, IsOk());
  EXPECT_EQ(tier->version(), "models/llama/versions/1.0");
  EXPECT_EQ(tier->sequence(), sequence);
  const std::vector<v1::AuditEntry> after = AuditLog();
  ASSERT_EQ(after.size(), audit.size()) << "newest: " << after.front().ShortDebugString();
  EXPECT_EQ(after.front().id(), audit.front().id());

  // And the command says what it did, which was nothing.
  CtlRun again = PublishCommand();
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_EQ(again.out, absl::StrCat("already published models/llama/versions/1.0 digest ", digest_,
                                    " size ", kFileSize,
                                    " (2.10 MB); tier llama8b/stable already bound to it "
                                    "(sequence ",
                                    sequence, ")\n"));
  EXPECT_EQ(AuditLog().size(), audit.size());
}

TEST_F(RealServerPublishTest, RerunAfterALostBlobRestoresItsBytes) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  const size_t audit_entries = AuditLog().size();
  LoseBlob();
  ASSERT_EQ(GetVersion().artifacts_size(), 1);
  ASSERT_FALSE(GetVersion().artifacts(0).uploaded());

  std::ostringstream log;
  PublishResult second;
  ASSERT_THAT(Publish(&second, &log), IsOk());
  EXPECT_TRUE(second.was_published);
  ASSERT_EQ(second.artifacts.size(), 1u);
  EXPECT_TRUE(second.artifacts[0].restored);
  EXPECT_EQ(second.artifacts[0].upload.bytes_sent, kFileSize);
  EXPECT_EQ(second.artifacts[0].upload.bytes_read, kFileSize);  // Read once, hashed as sent.
  EXPECT_THAT(log.str(), HasSubstr(absl::StrCat("restored bytes of ", digest_)));
  EXPECT_TRUE(second.version.artifacts(0).uploaded());
  // The tier was bound to it all along.
  EXPECT_TRUE(second.tier_already_bound);
  EXPECT_EQ(second.binding.sequence(), first.binding.sequence());
  EXPECT_EQ(AuditLog().size(), audit_entries);

  // The server holds the bytes again, verified, and serves them.
  v1::Version version = GetVersion();
  ASSERT_EQ(version.artifacts_size(), 1);
  EXPECT_TRUE(version.artifacts(0).uploaded());
  std::string read;
  ASSERT_TRUE(server_.ReadBlob(digest_, &read).ok());
  EXPECT_EQ(read, contents_);

  // The command line says so too.
  LoseBlob();
  CtlRun restore = PublishCommand();
  ASSERT_EQ(restore.code, kExitOk) << restore.err;
  EXPECT_EQ(restore.out,
            absl::StrCat("already published models/llama/versions/1.0 digest ", digest_, " size ",
                         kFileSize, " (2.10 MB), restored bytes of ", digest_,
                         "; tier llama8b/stable already bound to it (sequence ",
                         first.binding.sequence(), ")\n"));
  EXPECT_TRUE(GetVersion().artifacts(0).uploaded());
}

TEST_F(RealServerPublishTest, RerunAfterDetectedDamageHealsIt) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  // One byte flipped on disk: the next read fails, and the server quarantines the blob.
  const std::string hex = Sha256::HexOf(contents_);
  const std::string blob =
      absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
  modeldist::testing::DamageFile(blob, modeldist::testing::FileDamage::kFlip, 1000);
  std::string read;
  ASSERT_EQ(server_.ReadBlob(digest_, &read).error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(AuditLog().front().action(), "BlobDamaged");
  EXPECT_FALSE(GetVersion().artifacts(0).uploaded());

  CtlRun heal = PublishCommand();
  ASSERT_EQ(heal.code, kExitOk) << heal.err;
  EXPECT_THAT(heal.out, HasSubstr(absl::StrCat("restored bytes of ", digest_)));
  EXPECT_EQ(AuditLog().front().action(), "BlobRestored");
  read.clear();
  ASSERT_TRUE(server_.ReadBlob(digest_, &read).ok());
  EXPECT_EQ(read, contents_);
  EXPECT_TRUE(server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_X86_64).ok());
}

TEST_F(RealServerPublishTest, LostBlobIsNotRestoredFromAnotherFile) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  LoseBlob();
  // Same size, other bytes: it cannot be the file the version declares.
  const std::string other = modeldist::testing::RandomBytes(kFileSize, 12);
  WriteFile(path_, other);

  PublishResult second;
  EXPECT_THAT(Publish(&second),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("models/llama/versions/1.0 already exists (PUBLISHED)"),
                             HasSubstr(absl::StrCat("macos/x86_64/gguf is ", digest_, " (",
                                                    kFileSize, " bytes) there but ",
                                                    FormatDigest(Sha256::HexOf(other)))),
                             HasSubstr("new --version"))));
  EXPECT_FALSE(second.artifacts[0].restored);
  EXPECT_FALSE(GetVersion().artifacts(0).uploaded());
  // finish_write was withheld, so the other bytes were not stored as a blob either.
  const std::string other_hex = Sha256::HexOf(other);
  EXPECT_NE(::access(absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", other_hex.substr(0, 2),
                                  "/", other_hex)
                         .c_str(),
                     F_OK),
            0);
}

}  // namespace
}  // namespace modeldist::ctl
