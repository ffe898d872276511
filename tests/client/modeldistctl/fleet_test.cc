// `modeldistctl fleet` against a real in-process server (tests/testing/test_server.h) that
// devices reported to: the JSON is GetFleetSummary's answer, the table names what admins look
// for, and bad flags fail before any call.
#include <google/protobuf/util/json_util.h>

#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/fleet.grpc.pb.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_server.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

class FleetCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Only names the catalog knows are counted (docs/fleet.md); the restart loads them.
    server_.PublishBlob("llama", "2.0", v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                        "weights");
    server_.SetTier("llama8b", "stable", "models/llama/versions/2.0");
    server_.Restart();
    auto fleet = v1::FleetService::NewStub(server_.channel());
    for (const auto& [device, event, reason] :
         {std::tuple{"a", v1::STATUS_EVENT_ACTIVATED, ""},
          std::tuple{"b", v1::STATUS_EVENT_LOAD_FAILED, "MODEL_LOAD_FAILED"},
          std::tuple{"b", v1::STATUS_EVENT_ROLLED_BACK, "LOAD_FAILED"}}) {
      v1::ReportStatusRequest request;
      request.set_device_id(device);
      v1::StatusReport* r = request.add_reports();
      r->set_tier("llama8b");
      r->set_version("models/llama/versions/2.0");
      r->set_event(event);
      r->set_reason(reason);
      r->set_platform(v1::PLATFORM_MACOS);
      r->set_arch(v1::ARCH_X86_64);
      grpc::ClientContext context;
      v1::ReportStatusResponse response;
      ASSERT_TRUE(fleet->ReportStatus(&context, request, &response).ok());
    }
  }

  CtlRun Fleet(std::vector<std::string> args) {
    std::vector<std::string> all = {"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                                    "fleet"};
    all.insert(all.end(), args.begin(), args.end());
    return RunInProcess(all, {{"MODELDIST_ADMIN_TOKEN", modeldist::testing::kTestToken}});
  }

  modeldist::testing::TestServer server_;
};

TEST_F(FleetCommandTest, JsonIsTheSummary) {
  const CtlRun run = Fleet({"--tier", "llama8b", "--window", "7d", "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  v1::FleetSummary summary;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(run.out, &summary).ok()) << run.out;
  ASSERT_EQ(summary.versions_size(), 2);
  EXPECT_EQ(summary.versions(0).devices(), 1);
  EXPECT_EQ(summary.events_size(), 3);
  ASSERT_EQ(summary.reasons_size(), 2);
  EXPECT_EQ(summary.recent_failures_size(), 2);
  EXPECT_EQ(summary.recent_failures(0).reason(), "LOAD_FAILED");
}

TEST_F(FleetCommandTest, TableShowsVersionsReasonsAndFailures) {
  const CtlRun run = Fleet({});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("Versions in the field:"));
  EXPECT_THAT(run.out, HasSubstr("macos/x86_64"));
  EXPECT_THAT(run.out, HasSubstr("rolled back"));
  EXPECT_THAT(run.out, HasSubstr("MODEL_LOAD_FAILED"));
  EXPECT_THAT(run.out, HasSubstr("load_failed"));
  EXPECT_THAT(run.out, HasSubstr("Recent failures, newest first:"));
}

TEST_F(FleetCommandTest, BadFlagsAreUsageErrors) {
  EXPECT_EQ(Fleet({"--channel", "beta"}).code, 1);
  EXPECT_EQ(Fleet({"--window", "soon"}).code, 1);
  EXPECT_EQ(Fleet({"--tier", "a/b"}).code, 1);
  // The server's bound: more than the retention.
  const CtlRun run = Fleet({"--window", "45d"});
  EXPECT_NE(run.code, 0);
  EXPECT_THAT(run.err, HasSubstr("INVALID_WINDOW"));
}

}  // namespace
}  // namespace modeldist::ctl
