// FleetService.ReportStatus and RegistryService.GetFleetSummary against a real in-process
// server: the validation reasons of the proto's comment, the per-device rate limit, the
// figures admins read, their persistence across a restart, and that no device id reaches the
// disk.
#include "services/fleet_service.h"

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/limits.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/fleet.grpc.pb.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kVersion1[] = "models/llama/versions/1.0";
constexpr char kVersion2[] = "models/llama/versions/2.0";

v1::StatusReport Report(v1::StatusEvent event, const std::string& version,
                        const std::string& reason = "", v1::Arch arch = v1::ARCH_ARM64) {
  v1::StatusReport r;
  r.set_tier("llama8b");
  r.set_version(version);
  r.set_digest(FormatDigest(std::string(64, 'a')));
  r.set_event(event);
  r.set_reason(reason);
  r.set_platform(v1::PLATFORM_MACOS);
  r.set_arch(arch);
  return r;
}

v1::ReportStatusRequest Batch(const std::string& device, std::vector<v1::StatusReport> reports) {
  v1::ReportStatusRequest request;
  request.set_device_id(device);
  request.set_agent_version("0.9.0");
  request.set_app_version("app 3.1");
  for (auto& r : reports) *request.add_reports() = std::move(r);
  return request;
}

class FleetServiceTest : public ::testing::Test {
 protected:
  static services::ServerConfig Config() {
    services::ServerConfig config;
    config.http_listen = "127.0.0.1:0";
    return config;
  }

  // Only reports about names the catalog knows are counted (docs/fleet.md): the versions these
  // tests report about, and llama8b on stable and beta. The restart loads the names at once
  // (else the server's next flush, within a second, reads them).
  void SetUp() override {
    server_.PublishBlob("llama", "1.0", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, "one");
    server_.PublishBlob("llama", "2.0", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, "two");
    server_.SetTier("llama8b", "stable", kVersion1);
    server_.SetTier("llama8b", "beta", kVersion2);
    server_.Restart();
    Connect();
  }
  void Connect() { fleet_ = v1::FleetService::NewStub(server_.channel()); }

  absl::Status Send(const v1::ReportStatusRequest& request) {
    grpc::ClientContext context;
    v1::ReportStatusResponse response;
    const grpc::Status status = fleet_->ReportStatus(&context, request, &response);
    if (status.ok()) {
      EXPECT_EQ(response.accepted(), request.reports_size());
    }
    return FromGrpcStatus(status);
  }

  v1::FleetSummary Summary(const std::string& tier = "", const std::string& channel = "") {
    v1::GetFleetSummaryRequest request;
    request.set_tier(tier);
    request.set_channel(channel);
    v1::FleetSummary summary;
    const grpc::Status status =
        server_.registry().GetFleetSummary(server_.Admin().get(), request, &summary);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return summary;
  }

  // The healthy fleet of these tests: 3 devices on 1.0 that moved to 2.0 (one of them failed
  // to load it on x86_64 and rolled back), and a sync failure before any manifest.
  void SendFleet() {
    for (const char* device : {"device-a", "device-b"}) {
      MD_ASSERT_OK(Send(Batch(device, {Report(v1::STATUS_EVENT_ACTIVATED, kVersion2),
                                       Report(v1::STATUS_EVENT_LOAD_CONFIRMED, kVersion2)})));
    }
    MD_ASSERT_OK(Send(Batch(
        "device-c",
        {Report(v1::STATUS_EVENT_ACTIVATED, kVersion2, "", v1::ARCH_X86_64),
         Report(v1::STATUS_EVENT_LOAD_FAILED, kVersion2, "MODEL_LOAD_FAILED", v1::ARCH_X86_64),
         Report(v1::STATUS_EVENT_ROLLED_BACK, kVersion2, "LOAD_FAILED", v1::ARCH_X86_64)})));
    MD_ASSERT_OK(
        Send(Batch("device-d", {Report(v1::STATUS_EVENT_SYNC_FAILED, "", "SERVER_UNREACHABLE")})));
  }

  // Checks what SendFleet reported, as GetFleetSummary answers it.
  void ExpectFleet(const v1::FleetSummary& summary) {
    int64_t running = 0, rolled_back = 0;
    for (const v1::FieldVersion& v : summary.versions()) {
      EXPECT_EQ(v.version(), kVersion2);
      EXPECT_EQ(v.channel(), "stable");
      (v.rolled_back() ? rolled_back : running) += v.devices();
      if (v.rolled_back()) {
        EXPECT_EQ(v.arch(), v1::ARCH_X86_64);
      }
    }
    EXPECT_EQ(running, 2);
    EXPECT_EQ(rolled_back, 1);
    int64_t activated = 0, sync_failed = 0;
    for (const v1::EventCount& e : summary.events()) {
      if (e.event() == v1::STATUS_EVENT_ACTIVATED) activated += e.count();
      if (e.event() == v1::STATUS_EVENT_SYNC_FAILED) {
        sync_failed += e.count();
        EXPECT_EQ(e.version(), "");
      }
    }
    EXPECT_EQ(activated, 3);
    EXPECT_EQ(sync_failed, 1);
    ASSERT_EQ(summary.reasons_size(), 3);
    ASSERT_EQ(summary.recent_failures_size(), 3);
    // Newest first.
    EXPECT_EQ(summary.recent_failures(0).reason(), "SERVER_UNREACHABLE");
    EXPECT_EQ(summary.recent_failures(1).reason(), "LOAD_FAILED");
    EXPECT_EQ(summary.recent_failures(1).app_version(), "app 3.1");
  }

  TestServer server_{Config()};
  std::unique_ptr<v1::FleetService::Stub> fleet_;
};

TEST_F(FleetServiceTest, RefusesABadBatchWithTheReasonAndIndexOfTheProto) {
  struct Case {
    std::string what;
    v1::ReportStatusRequest request;
    std::string reason;
    std::string field;
  };
  auto with = [](auto change) {
    v1::StatusReport good = Report(v1::STATUS_EVENT_ACTIVATED, kVersion1);
    v1::StatusReport bad = good;
    change(bad);
    return Batch("device-1", {good, bad});
  };
  v1::ReportStatusRequest no_id = Batch("", {Report(v1::STATUS_EVENT_ACTIVATED, kVersion1)});
  v1::ReportStatusRequest long_id = no_id;
  long_id.set_device_id(std::string(kMaxDeviceIdBytes + 1, 'd'));
  v1::ReportStatusRequest long_app = Batch("d", {Report(v1::STATUS_EVENT_ACTIVATED, kVersion1)});
  long_app.set_app_version(std::string(kMaxAppVersionBytes + 1, 'v'));
  v1::ReportStatusRequest none = Batch("d", {});
  v1::ReportStatusRequest too_many = Batch("d", {});
  for (int i = 0; i <= kMaxStatusReportsPerCall; ++i) {
    *too_many.add_reports() = Report(v1::STATUS_EVENT_VERIFIED, kVersion1);
  }
  const std::vector<Case> cases = {
      {"no device id", no_id, "EMPTY_DEVICE_ID", "device_id"},
      {"long device id", long_id, "TEXT_TOO_LONG", "device_id"},
      {"long app version", long_app, "TEXT_TOO_LONG", "app_version"},
      {"no reports", none, "INVALID_REPORT_COUNT", "reports"},
      {"101 reports", too_many, "INVALID_REPORT_COUNT", "reports"},
      {"no tier", with([](auto& r) { r.set_tier(""); }), "EMPTY_ID", "reports[1].tier"},
      {"bad channel", with([](auto& r) { r.set_channel("a..b"); }), "INVALID_ID",
       "reports[1].channel"},
      {"bad version", with([](auto& r) { r.set_version("llama/1.0"); }), "INVALID_NAME",
       "reports[1].version"},
      {"bad digest", with([](auto& r) { r.set_digest("sha256:00"); }), "INVALID_DIGEST",
       "reports[1].digest"},
      {"no event", with([](auto& r) { r.set_event(v1::STATUS_EVENT_UNSPECIFIED); }),
       "INVALID_EVENT", "reports[1].event"},
      {"unknown event", with([](auto& r) { r.set_event(static_cast<v1::StatusEvent>(99)); }),
       "INVALID_EVENT", "reports[1].event"},
      {"lower-case reason", with([](auto& r) { r.set_reason("load failed"); }), "INVALID_REASON",
       "reports[1].reason"},
      {"long reason", with([](auto& r) { r.set_reason(std::string(65, 'X')); }), "INVALID_REASON",
       "reports[1].reason"},
      {"no platform", with([](auto& r) { r.set_platform(v1::PLATFORM_UNSPECIFIED); }),
       "MISSING_PLATFORM", "reports[1].platform"},
      {"arch any", with([](auto& r) { r.set_arch(v1::ARCH_ANY); }), "INVALID_ARCH",
       "reports[1].arch"},
  };
  for (const Case& c : cases) {
    const absl::Status status = Send(c.request);
    EXPECT_THAT(status, HasReason(absl::StatusCode::kInvalidArgument, c.reason)) << c.what;
    EXPECT_EQ(ErrorMetadataValue(status, "field"), c.field) << c.what << ": " << status;
  }
  // Nothing of a refused batch is counted (the first report of each was good).
  EXPECT_EQ(Summary().events_size(), 0);
  // The limits themselves pass.
  v1::StatusReport longest = Report(v1::STATUS_EVENT_LOAD_FAILED, kVersion1, std::string(64, 'X'));
  longest.set_channel("beta");
  longest.set_digest("");
  MD_EXPECT_OK(Send(Batch(std::string(kMaxDeviceIdBytes, 'd'), {longest})));
}

TEST_F(FleetServiceTest, LimitsOneDeviceWhileAnotherIsServed) {
  std::vector<v1::StatusReport> hundred(kMaxStatusReportsPerCall,
                                        Report(v1::STATUS_EVENT_VERIFIED, kVersion1));
  // The default burst (services/fleet_service.h) is 1000 reports.
  for (int i = 0; i < 10; ++i) MD_ASSERT_OK(Send(Batch("noisy", hundred)));
  const absl::Status limited = Send(Batch("noisy", hundred));
  EXPECT_THAT(limited, HasReason(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED"));
  ASSERT_TRUE(RetryDelay(limited).has_value()) << limited;
  // 100 reports at 1 a second, less what refilled since.
  EXPECT_GT(*RetryDelay(limited), absl::Seconds(90));
  EXPECT_LE(*RetryDelay(limited), absl::Seconds(100));
  MD_EXPECT_OK(Send(Batch("quiet", hundred)));
  int64_t verified = 0;
  const v1::FleetSummary summary = Summary();
  for (const v1::EventCount& e : summary.events()) verified += e.count();
  EXPECT_EQ(verified, 11 * kMaxStatusReportsPerCall);
}

TEST_F(FleetServiceTest, SummaryShowsTheFleetAndFilters) {
  SendFleet();
  ExpectFleet(Summary());
  ExpectFleet(Summary("llama8b", "stable"));
  const v1::FleetSummary other = Summary("other-tier");
  EXPECT_EQ(other.versions_size(), 0);
  EXPECT_EQ(other.events_size(), 0);
  EXPECT_EQ(other.recent_failures_size(), 0);
  const v1::FleetSummary beta = Summary("llama8b", "beta");
  EXPECT_EQ(beta.events_size(), 0);
}

TEST_F(FleetServiceTest, SummaryRefusesBadFilters) {
  v1::GetFleetSummaryRequest request;
  v1::FleetSummary summary;
  request.set_channel("beta");
  EXPECT_THAT(
      FromGrpcStatus(server_.registry().GetFleetSummary(server_.Admin().get(), request, &summary)),
      HasReason(absl::StatusCode::kInvalidArgument, "CHANNEL_WITHOUT_TIER"));
  request.Clear();
  request.mutable_window()->set_seconds(31 * 24 * 3600);
  EXPECT_THAT(
      FromGrpcStatus(server_.registry().GetFleetSummary(server_.Admin().get(), request, &summary)),
      HasReason(absl::StatusCode::kInvalidArgument, "INVALID_WINDOW"));
  request.mutable_window()->set_seconds(-1);
  EXPECT_THAT(
      FromGrpcStatus(server_.registry().GetFleetSummary(server_.Admin().get(), request, &summary)),
      HasReason(absl::StatusCode::kInvalidArgument, "INVALID_WINDOW"));
  request.Clear();
  request.set_tier("a/b");
  EXPECT_THAT(
      FromGrpcStatus(server_.registry().GetFleetSummary(server_.Admin().get(), request, &summary)),
      HasReason(absl::StatusCode::kInvalidArgument, "INVALID_ID"));
  // Admin-only: without a token.
  grpc::ClientContext anonymous;
  EXPECT_EQ(server_.registry()
                .GetFleetSummary(&anonymous, v1::GetFleetSummaryRequest(), &summary)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(FleetServiceTest, FiguresSurviveARestartAndNoDeviceIdIsStored) {
  const std::string secret_id = "device-id-that-must-not-reach-the-disk-4f1c";
  MD_ASSERT_OK(Send(Batch(secret_id, {Report(v1::STATUS_EVENT_ACTIVATED, kVersion1)})));
  SendFleet();
  server_.Restart();
  Connect();
  v1::FleetSummary summary = Summary();
  // device-a..c on 2.0 as before, and the secret one on 1.0.
  int64_t on_1 = 0;
  for (const v1::FieldVersion& v : summary.versions()) {
    if (v.version() == kVersion1) on_1 += v.devices();
  }
  EXPECT_EQ(on_1, 1);
  // The catalog and its WAL hold the device's hash, never its id.
  std::string bytes;
  for (const auto& entry : std::filesystem::directory_iterator(server_.config().data_dir)) {
    if (!absl::StartsWith(entry.path().filename().string(), "catalog.db")) continue;
    bytes += ReadFileToString(entry.path().string()).value_or("");
  }
  ASSERT_FALSE(bytes.empty());
  EXPECT_FALSE(absl::StrContains(bytes, secret_id));
  EXPECT_FALSE(absl::StrContains(bytes, "device-a"));
  Sha256 hash;
  hash.Update(secret_id);
  EXPECT_TRUE(absl::StrContains(bytes, hash.FinishRaw()));
  // The counts go on from where they were.
  MD_ASSERT_OK(Send(Batch("device-e", {Report(v1::STATUS_EVENT_VERIFIED, kVersion2)})));
  int64_t events = 0;
  summary = Summary();
  for (const v1::EventCount& e : summary.events()) events += e.count();
  EXPECT_EQ(events, 1 + 4 + 3 + 1 + 1);
}

TEST_F(FleetServiceTest, MetricsCountReportsAndDevicesPerVersion) {
  SendFleet();
  const CurlResult got = Curl(server_.HttpUrl("/metrics"));
  ASSERT_EQ(got.status, 200) << got.stderr_text;
  EXPECT_THAT(got.body, HasSubstr("modeldist_fleet_reports_total{event=\"activated\"} 3\n"));
  EXPECT_THAT(got.body, HasSubstr("modeldist_fleet_reports_total{event=\"sync_failed\"} 1\n"));
  EXPECT_THAT(got.body,
              HasSubstr(absl::StrCat("modeldist_fleet_devices{version=\"", kVersion2, "\"} 3\n")));
}

TEST_F(FleetServiceTest, AcceptsButDoesNotCountReportsAboutUnknownNames) {
  v1::StatusReport junk_version = Report(v1::STATUS_EVENT_ACTIVATED, "models/junk/versions/1");
  v1::StatusReport junk_tier = Report(v1::STATUS_EVENT_ACTIVATED, kVersion1);
  junk_tier.set_tier("made-up");
  // Accepted: a device cannot tell.
  MD_ASSERT_OK(Send(Batch("liar", {junk_version, junk_version, junk_tier})));
  // Held until the server's next flush reads the catalog's names again, then dropped.
  const std::string want_version =
      "modeldist_fleet_reports_dropped_total{why=\"unknown_version\"} 2\n";
  const std::string want_tier = "modeldist_fleet_reports_dropped_total{why=\"unknown_tier\"} 1\n";
  std::string body;
  for (int i = 0; i < 100; ++i) {
    body = Curl(server_.HttpUrl("/metrics")).body;
    if (absl::StrContains(body, want_version)) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(body, HasSubstr(want_version));
  EXPECT_THAT(body, HasSubstr(want_tier));
  const v1::FleetSummary summary = Summary();
  EXPECT_EQ(summary.events_size(), 0);
  EXPECT_EQ(summary.versions_size(), 0);
}

TEST(DeviceRateLimiterTest, RefillsAtItsRateAndStaysBounded) {
  services::DeviceRateLimiter limiter(/*burst=*/5, /*per_second=*/2, /*max_devices=*/4);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Take("a", 5, t0), std::nullopt);
  EXPECT_EQ(limiter.Take("a", 3, t0), absl::Milliseconds(1500));
  EXPECT_EQ(limiter.Take("b", 5, t0), std::nullopt);  // another device has its own bucket
  EXPECT_EQ(limiter.Take("a", 3, t0 + absl::Milliseconds(1500)), std::nullopt);
  // A flood of new ids never grows the table past its bound.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(limiter.Take(absl::StrCat("new-", i), 1, t0 + absl::Seconds(2)), std::nullopt);
    EXPECT_LE(limiter.tracked(), 4);
  }
}

}  // namespace
}  // namespace modeldist::testing
