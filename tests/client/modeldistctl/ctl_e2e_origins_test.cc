// End-to-end test of `modeldistctl origins list|check` against the real modeldist-server
// started with an origins file whose S3 origins are a real OpenStack Swift with its S3 API on
// loopback (tests/testing/swift_s3_server.h): the check's put, head, ranged get and delete go
// through Swift's SigV4 verification, so a wrong secret is refused by the store itself. Then
// replication (kill -9 and an outage of the store included) and --evict-replicated.
#include <sys/stat.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/child_process.h"
#include "tests/testing/swift_s3_server.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::SwiftS3Server;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBucket[] = "models";
// Distinctive, so that a leak into any output or log is found.
constexpr char kWrongSecret[] = "wrong-secret-6f1d2c";

class CtlE2eOriginsTest : public CtlE2eTest {
 protected:
  void SetUp() override {
    CtlE2eTest::SetUp();
    if (HasFatalFailure()) return;
    if (!SwiftS3Server::Installed()) GTEST_SKIP() << "OpenStack Swift is not installed";
    ASSERT_TRUE(swift_.Start(kBucket));
    WriteSecret("key-id", SwiftS3Server::kAccessKey);
    WriteSecret("secret", SwiftS3Server::kSecret);
    WriteSecret("wrong-secret", kWrongSecret);
    origins_file_ = dir_.Join("origins.textproto");
    WriteFile(origins_file_, absl::StrCat(Origin("swift", "secret", "prod/", true),
                                          Origin("wrong", "wrong-secret", "", false)));
    // The fixture's server again, now with the origins.
    ASSERT_TRUE(server_->Stop());
    server_ = std::make_unique<modeldist::testing::ServerProcess>(
        ServerBinary(), dir_.Join("data"), dir_.Join("token"), dir_.path(),
        std::vector<std::string>{"--origins", origins_file_});
    ASSERT_TRUE(server_->Start());
  }

  void WriteSecret(const std::string& name, const std::string& value) {
    WriteFile(dir_.Join(name), value + "\n");
    ASSERT_EQ(::chmod(dir_.Join(name).c_str(), 0600), 0);
  }

  std::string Origin(const std::string& name, const std::string& secret_file,
                     const std::string& prefix, bool replicate) {
    return absl::StrCat(
        "origins { name: \"", name, "\" s3 { endpoint: \"", swift_.endpoint(), "\" region: \"",
        SwiftS3Server::kRegion, "\" bucket: \"", kBucket, "\" access_key_id { file: \"",
        dir_.Join("key-id"), "\" } secret_access_key { file: \"", dir_.Join(secret_file),
        "\" } } key_prefix: \"", prefix, "\" replicate: ", replicate ? "true" : "false", " }\n");
  }

  // Waits (up to 60 s) until `show` of e2e-model version `version` prints `want`; returns the
  // last output.
  std::string ShowUntil(const std::string& version, const std::string& want) {
    std::string out;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      CtlRun show = Ctl({"show", "models/e2e-model/versions/" + version});
      out = show.out + show.err;
      if (absl::StrContains(out, want)) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return out;
  }

  SwiftS3Server swift_;
  std::string origins_file_;
};

TEST_F(CtlE2eOriginsTest, ListShowsTheOriginsWithoutCredentials) {
  CtlRun list = Ctl({"origins", "list"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("NAME"));
  EXPECT_THAT(list.out, HasSubstr("swift"));
  EXPECT_THAT(list.out, ContainsRegex(absl::StrCat("swift +s3 +", swift_.endpoint(), "/models")))
      << list.out;
  EXPECT_THAT(list.out, HasSubstr("prod/"));
  EXPECT_THAT(list.out, HasSubstr("replicate, devices"));
  EXPECT_THAT(list.out, HasSubstr("wrong"));
  // Not even where the server reads its credentials from.
  EXPECT_THAT(list.out, Not(HasSubstr(dir_.Join("secret"))));

  CtlRun json = Ctl({"--json", "origins", "list"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"name\":\"swift\",\"kind\":\"s3\""));
}

TEST_F(CtlE2eOriginsTest, CheckPassesAgainstTheRealStoreAndLeavesNothingThere) {
  CtlRun check = Ctl({"origins", "check", "swift"});
  ASSERT_EQ(check.code, 0) << check.out << check.err << swift_.Logs();
  for (const char* step : {"put", "head", "get", "delete"}) {
    EXPECT_THAT(check.out, ContainsRegex(absl::StrCat("(^|\n)", step, " +ok +[0-9.]+ ms")))
        << check.out;
  }
  EXPECT_THAT(check.out, HasSubstr("prod/modeldist-check/"));
  EXPECT_THAT(check.out, Not(HasSubstr("FAILED")));
  EXPECT_THAT(check.out, HasSubstr("origin swift: ok"));

  CtlRun json = Ctl({"--json", "origins", "check", "swift"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"ok\":true"));
  EXPECT_THAT(json.out, HasSubstr("\"step\":\"delete\""));
}

TEST_F(CtlE2eOriginsTest, AWrongSecretIsRefusedByTheStoreAndExitsFour) {
  CtlRun check = Ctl({"origins", "check", "wrong"});
  EXPECT_EQ(check.code, 4) << check.out << check.err;
  EXPECT_THAT(check.out, ContainsRegex("put +FAILED"));
  EXPECT_THAT(check.out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(check.out, Not(HasSubstr("head")));  // nothing was stored, nothing else ran
  EXPECT_THAT(check.err, HasSubstr("origin wrong failed its check"));
  EXPECT_THAT(check.out + check.err, Not(HasSubstr(kWrongSecret)));
  EXPECT_THAT(server_->LogTail(1 << 20), Not(HasSubstr(kWrongSecret)));

  CtlRun unknown = Ctl({"origins", "check", "nope"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("ORIGIN_NOT_FOUND"));
}

TEST_F(CtlE2eOriginsTest, AnUnreadableSecretStopsTheServerNamingTheField) {
  ASSERT_TRUE(server_->Stop());
  ASSERT_EQ(::chmod(dir_.Join("secret").c_str(), 0644), 0);
  modeldist::testing::ServerProcess server(ServerBinary(), dir_.Join("data"), dir_.Join("token"),
                                           dir_.path(),
                                           std::vector<std::string>{"--origins", origins_file_});
  EXPECT_FALSE(server.Start(20));
  EXPECT_THAT(server.LogTail(), HasSubstr("origins[0] (swift)"));
  EXPECT_THAT(server.LogTail(), HasSubstr("chmod 600"));
}

TEST_F(CtlE2eOriginsTest, APublishedVersionIsCopiedToTheStoreAndShowSaysSo) {
  CtlRun publish = Ctl(PublishArgs("1"));
  ASSERT_EQ(publish.code, 0) << publish.err;
  const std::string shown = ShowUntil("1", "swift: CONFIRMED");
  EXPECT_THAT(shown, HasSubstr("replicas:\n      swift: CONFIRMED")) << shown;
  // "wrong" does not replicate: no row.
  EXPECT_THAT(shown, Not(HasSubstr("wrong:")));

  // The bytes in the store are the file's, under the configured prefix.
  EXPECT_TRUE(swift_.GetObject(kBucket, "prod/sha256/" + digest_.substr(7)) == contents_);
  CtlRun json = Ctl({"--json", "show", "models/e2e-model/versions/1"});
  EXPECT_THAT(json.out, HasSubstr("\"origin\":\"swift\",\"state\":\"CONFIRMED\""));
}

// --replicate-to picks the version's origins; the server refuses a name that does not
// replicate, naming the field, and nothing is created.
TEST_F(CtlE2eOriginsTest, ReplicateToChoosesTheOriginsAndANonReplicatingOneIsRefused) {
  std::vector<std::string> args = PublishArgs("1");
  args.insert(args.begin() + 1, {"--replicate-to", "wrong"});
  CtlRun refused = Ctl(args);
  EXPECT_EQ(refused.code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("replicate_to[0]"));
  EXPECT_THAT(refused.err, HasSubstr("INVALID_REPLICATE_TO"));
  EXPECT_NE(Ctl({"show", "models/e2e-model/versions/1"}).code, 0);  // no version

  args = PublishArgs("1");
  args.insert(args.begin() + 1, {"--replicate-to", "swift"});
  CtlRun publish = Ctl(args);
  ASSERT_EQ(publish.code, 0) << publish.err;
  const std::string shown = ShowUntil("1", "swift: CONFIRMED");
  EXPECT_THAT(shown, HasSubstr("replicate:  swift\n")) << shown;
  EXPECT_THAT(shown, HasSubstr("swift: CONFIRMED")) << shown;
}

TEST_F(CtlE2eOriginsTest, TheQueueSurvivesKillNineAndAnOutageOfTheStore) {
  // The store is down when the version is published: the copy fails and waits.
  swift_.StopProxy();
  CtlRun publish = Ctl(PublishArgs("1"));
  ASSERT_EQ(publish.code, 0) << publish.err;
  std::string shown = ShowUntil("1", "swift: FAILING (1 attempt");
  EXPECT_THAT(shown, HasSubstr("UNAVAILABLE")) << shown;
  EXPECT_THAT(shown, Not(HasSubstr(SwiftS3Server::kSecret)));

  // kill -9, the store comes back, the server starts again: the row is worked on again
  // (the first backoff is 5 s) and the copy made.
  server_->Kill();
  ASSERT_TRUE(swift_.StartProxy());
  ASSERT_TRUE(server_->Start());
  shown = ShowUntil("1", "swift: CONFIRMED");
  EXPECT_THAT(shown, HasSubstr("swift: CONFIRMED")) << shown;
  EXPECT_TRUE(swift_.GetObject(kBucket, "prod/sha256/" + digest_.substr(7)) == contents_);
}

// --evict-replicated with the real binaries and store: once Swift holds the confirmed copy,
// the server's disk does not, and a device still gets a verified manifest and the bytes (read
// through from Swift, checked chunk by chunk), also after a kill -9 and a restart.
TEST_F(CtlE2eOriginsTest, EvictReplicatedLeavesTheBytesToSwiftAndDevicesStillGetThem) {
  ASSERT_TRUE(server_->Stop());
  server_ = std::make_unique<modeldist::testing::ServerProcess>(
      ServerBinary(), dir_.Join("data"), dir_.Join("token"), dir_.path(),
      std::vector<std::string>{"--origins", origins_file_, "--evict-replicated"});
  ASSERT_TRUE(server_->Start());
  CtlRun publish = Ctl(PublishArgs("1"));
  ASSERT_EQ(publish.code, 0) << publish.err;
  const std::string shown = ShowUntil("1", "swift: CONFIRMED");
  ASSERT_THAT(shown, HasSubstr("swift: CONFIRMED")) << shown;

  const std::string hex = digest_.substr(7);
  const std::string blob =
      dir_.Join(absl::StrCat("data/blobs/sha256/", hex.substr(0, 2), "/", hex));
  struct stat st;
  bool gone = false;
  for (absl::Time until = absl::Now() + absl::Seconds(30); !gone && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(50))) {
    gone = ::stat(blob.c_str(), &st) != 0;
  }
  ASSERT_TRUE(gone) << server_->LogTail();
  EXPECT_THAT(server_->LogTail(), HasSubstr("evicted the local copy of " + digest_));
  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, digest_, contents_);
  EXPECT_THAT(server_->LogTail(), HasSubstr("from origin swift"));

  // The read-through stored it again; the start's sweep evicts it again after kill -9, and the
  // device still gets it.
  server_->Kill();
  ASSERT_TRUE(server_->Start());
  EXPECT_NE(::stat(blob.c_str(), &st), 0);
  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, digest_, contents_);
}

}  // namespace
}  // namespace modeldist::ctl
