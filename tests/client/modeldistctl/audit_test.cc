// Tests of `modeldistctl audit` against FakeRegistry.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

TEST_F(FakeServerTest, AuditShowsTheNewestEntriesWithTheirActors) {
  PublishFakeVersion("1.0");
  PublishFakeVersion("2.0");
  for (const char* actor : {"alice@a", "bob@b", "carol@c"}) {
    ASSERT_EQ(RunInProcess(CtlAs(actor, {"rollout", "start", "--tier", "llama8b", "--version",
                                         "models/llama/versions/2.0", "--percent", "1"}))
                  .code,
              kExitOk);
    ASSERT_EQ(RunInProcess(CtlAs(actor, {"rollout", "abort", "--tier", "llama8b"})).code, kExitOk);
  }
  CtlRun run = RunInProcess(Ctl({"audit", "--limit", "3"}));
  ASSERT_EQ(run.code, kExitOk) << run.err;
  std::vector<std::string> lines = absl::StrSplit(run.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << run.out;
  EXPECT_THAT(lines[0], HasSubstr("TIME                  ACTOR    ACTION"));
  EXPECT_THAT(lines[0], HasSubstr("RESOURCE                       DETAILS"));
  EXPECT_THAT(lines[1], HasSubstr("carol@c  ABORTED       tiers/llama8b/channels/stable"));
  EXPECT_THAT(lines[2], HasSubstr("carol@c  StartRollout  tiers/llama8b/channels/stable  100 bp"));
  EXPECT_THAT(lines[3], HasSubstr("bob@b"));
  EXPECT_EQ(fake_.audit_page_sizes(), (std::vector<int>{3}));

  CtlRun all = RunInProcess(Ctl({"--json", "audit", "--limit", "0"}));
  ASSERT_EQ(all.code, kExitOk) << all.err;
  EXPECT_THAT(all.out, HasSubstr("\"actor\":\"alice@a\""));
}

}  // namespace
}  // namespace modeldist::ctl
