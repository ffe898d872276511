// End-to-end test of `modeldistctl status` against the real modeldist-server: two published
// versions, a rollout in flight between them, and a replicating S3 origin that cannot be
// reached (nothing listens on its port), so its replicas never confirm. The JSON's stable
// fields and the human output's key lines must say exactly that.
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/model_files.h"

namespace modeldist::ctl {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class CtlE2eStatusTest : public CtlE2eTest {
 protected:
  void SetUp() override {
    CtlE2eTest::SetUp();
    if (HasFatalFailure()) return;
    for (const char* secret : {"key-id", "secret"}) {
      WriteFile(dir_.Join(secret), "not-used\n");
      ASSERT_EQ(::chmod(dir_.Join(secret).c_str(), 0600), 0);
    }
    // Port 1 on loopback: nothing listens, so every copy fails and is retried later.
    const std::string origins = dir_.Join("origins.textproto");
    WriteFile(origins, absl::StrCat("origins { name: \"dead\" s3 { endpoint: "
                                    "\"http://127.0.0.1:1\" region: \"us-east-1\" bucket: "
                                    "\"models\" access_key_id { file: \"",
                                    dir_.Join("key-id"), "\" } secret_access_key { file: \"",
                                    dir_.Join("secret"), "\" } } replicate: true }\n"));
    ASSERT_TRUE(server_->Stop());
    server_ = std::make_unique<modeldist::testing::ServerProcess>(
        ServerBinary(), dir_.Join("data"), dir_.Join("token"), dir_.path(),
        std::vector<std::string>{"--origins", origins});
    ASSERT_TRUE(server_->Start());
  }

  // `status` with `flags` until its output has `want` (at most 60 s); returns the last run.
  CtlRun StatusWhen(std::vector<std::string> flags, const std::string& want) {
    flags.insert(flags.begin(), "status");
    CtlRun run;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    do {
      run = Ctl(flags);
      if (run.code != 0 || absl::StrContains(run.out, want)) break;
      absl::SleepFor(absl::Milliseconds(100));
    } while (absl::Now() < deadline);
    EXPECT_EQ(run.code, 0) << run.err;
    return run;
  }
};

TEST_F(CtlE2eStatusTest, ShowsTiersRolloutsReplicationKeysAndTheBlobStore) {
  const std::string gguf = modeldist::testing::MakeGguf(modeldist::testing::GgufSpec());
  const std::string zip = modeldist::testing::MakeCoreMlZip(modeldist::testing::CoreMlZipSpec());
  WriteFile(dir_.Join("m.gguf"), gguf);
  WriteFile(dir_.Join("m.zip"), zip);
  CtlRun v1 = Ctl({"publish", "--model", "m", "--version", "1", "--tier", "llama8b",
                   "macos/x86_64/gguf=" + dir_.Join("m.gguf")});
  ASSERT_EQ(v1.code, 0) << v1.err;
  CtlRun v2 = Ctl({"publish", "--model", "m", "--version", "2", "--tier", "staging",
                   "macos/arm64/coreml-zip=" + dir_.Join("m.zip")});
  ASSERT_EQ(v2.code, 0) << v2.err;
  CtlRun rollout = Ctl({"rollout", "start", "--tier", "llama8b", "--version", "models/m/versions/2",
                        "--percent", "10"});
  ASSERT_EQ(rollout.code, 0) << rollout.err;

  // Replication runs in the background: wait until both blobs' copies have failed (they are
  // retried later, so each output is polled for that moment on its own).
  const CtlRun json = StatusWhen({"--json"},
                                 "\"blobs\":2,\"confirmed\":0,\"pending\":0,"
                                 "\"copying\":0,\"failing\":2");
  EXPECT_THAT(json.out,
              ContainsRegex("\\{\"tier\":\"llama8b\",\"channel\":\"stable\",\"version\":\"models/"
                            "m/versions/1\",\"sequence\":[0-9]+,\"updateTime\":\"[^\"]+\","
                            "\"rollouts\":\\[\\{\"id\":\"[^\"]+\",\"fromVersion\":\"models/m/"
                            "versions/1\",\"toVersion\":\"models/m/versions/2\","
                            "\"basisPoints\":1000,\"state\":\"ACTIVE\"\\}\\]\\}"));
  EXPECT_THAT(json.out, ContainsRegex("\\{\"tier\":\"staging\",\"channel\":\"stable\","
                                      "\"version\":\"models/m/versions/2\",[^]]*\"rollouts\":"
                                      "\\[\\]\\}"));
  // Both published blobs have a copy queued for the origin, and every copy fails, saying why.
  EXPECT_THAT(json.out,
              ContainsRegex("\"replication\":\\[\\{\"origin\":\"dead\",\"kind\":\"s3\","
                            "\"blobs\":2,\"confirmed\":0,\"pending\":0,\"copying\":0,"
                            "\"failing\":2,\"failures\":\\[\\{\"digest\":\"sha256:[0-9a-f]{64}\","
                            "\"attempts\":[1-9][0-9]*,\"lastError\":\"[^\"]+\"\\},"));
  EXPECT_THAT(json.out, ContainsRegex("\"trustRoot\":\\{\"version\":1,\"threshold\":1,"
                                      "\"keyIds\":\\[\"[^\"]+\"\\]\\}"));
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"blobStore\":{\"blobCount\":2,\"totalBytes\":",
                                               gguf.size() + zip.size(), ",\"damagedCount\":0}")));

  const CtlRun human = StatusWhen({}, "2 failing");
  EXPECT_THAT(human.out, ContainsRegex("llama8b/stable +models/m/versions/1 +sequence [0-9]+"));
  EXPECT_THAT(human.out, ContainsRegex("rollout [^ ]+ +ACTIVE 10% on models/m/versions/2 +from "
                                       "models/m/versions/1"));
  EXPECT_THAT(human.out, HasSubstr("dead (s3): 2 blobs, 0 confirmed, 0 pending, 0 copying, "
                                   "2 failing"));
  EXPECT_THAT(human.out,
              ContainsRegex("    failing sha256:[0-9a-f]{64} \\([1-9][0-9]* attempts?\\): "));
  EXPECT_THAT(human.out, HasSubstr("trust root: version 1, threshold 1, signing keys "));
  EXPECT_THAT(human.out, HasSubstr(absl::StrCat("blob store: 2 blobs, ")));
  EXPECT_THAT(human.out, HasSubstr(absl::StrCat(gguf.size() + zip.size(), " bytes), 0 damaged")));
}

TEST_F(CtlE2eStatusTest, AnEmptyServerSaysSo) {
  CtlRun human = Ctl({"status"});
  ASSERT_EQ(human.code, 0) << human.err;
  EXPECT_THAT(human.out, HasSubstr("(none bound yet)"));
  EXPECT_THAT(human.out, HasSubstr("dead (s3): 0 blobs"));
  EXPECT_THAT(human.out, HasSubstr("blob store: 0 blobs, 0 B (0 bytes), 0 damaged"));
  CtlRun no_token = Ctl({"status"}, {}, /*with_token_file=*/false);
  EXPECT_NE(no_token.code, 0) << no_token.err;  // status reads admin rpcs only
}

}  // namespace
}  // namespace modeldist::ctl
