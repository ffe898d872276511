// The request log's lines and levels: the level follows the outcome (server failures error,
// refused requests warn, the rest info), lines below the configured level are not written, and
// each line is one JSON object with escaped text.
#include "services/request_log.h"

#include "absl/time/time.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::services {
namespace {

using ::testing::HasSubstr;

RequestRecord Record(bool http, const std::string& code) {
  RequestRecord record;
  record.start = absl::FromUnixMillis(1796660400123);
  record.http = http;
  record.method = http ? "GET" : "/modeldist.v1.ManifestService/GetManifest";
  record.path = http ? "/v1/blobs/x" : "";
  record.code = code;
  record.bytes = 42;
  record.duration = absl::Microseconds(1500);
  record.peer = "127.0.0.1:5000";
  return record;
}

TEST(RequestLogTest, TheLevelFollowsTheOutcome) {
  EXPECT_EQ(Record(true, "200").Level(), LogLevel::kInfo);
  EXPECT_EQ(Record(true, "304").Level(), LogLevel::kInfo);
  EXPECT_EQ(Record(true, "404").Level(), LogLevel::kWarn);
  EXPECT_EQ(Record(true, "503").Level(), LogLevel::kError);
  EXPECT_EQ(Record(false, "OK").Level(), LogLevel::kInfo);
  EXPECT_EQ(Record(false, "NOT_FOUND").Level(), LogLevel::kWarn);
  EXPECT_EQ(Record(false, "DATA_LOSS").Level(), LogLevel::kError);
  EXPECT_EQ(Record(false, "UNAVAILABLE").Level(), LogLevel::kError);
}

TEST(RequestLogTest, OneJsonObjectPerLine) {
  RequestRecord record = Record(true, "200");
  record.device_id = "mac \"7\"";
  EXPECT_EQ(RequestLog::Format(record),
            "{\"time\":\"2026-12-07T16:20:00.123Z\",\"level\":\"info\",\"protocol\":\"http\","
            "\"method\":\"GET\",\"path\":\"/v1/blobs/x\",\"code\":\"200\",\"bytes\":42,"
            "\"duration_ms\":1.500,\"peer\":\"127.0.0.1:5000\",\"device_id\":\"mac \\\"7\\\"\"}\n");
  EXPECT_THAT(RequestLog::Format(Record(false, "OK")),
              HasSubstr("\"protocol\":\"grpc\",\"method\":\"/modeldist.v1.ManifestService/"
                        "GetManifest\",\"code\":\"OK\""));
}

TEST(RequestLogTest, LinesBelowTheLevelAreNotWritten) {
  testing::ScratchDir dir;
  const std::string path = dir.Join("log");
  absl::StatusOr<std::unique_ptr<RequestLog>> log = RequestLog::Open(path, LogLevel::kWarn);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Write(Record(true, "200"));
  (*log)->Write(Record(true, "404"));
  (*log)->Write(Record(false, "INTERNAL"));
  const std::string text = ReadFileToString(path).value_or("");
  EXPECT_THAT(text, ::testing::Not(HasSubstr("\"code\":\"200\"")));
  EXPECT_THAT(text, HasSubstr("\"level\":\"warn\""));
  EXPECT_THAT(text, HasSubstr("\"level\":\"error\""));
}

TEST(RequestLogTest, ParsesLevelsAndRefusesOthersNamingTheFlag) {
  EXPECT_EQ(*ParseLogLevel("info"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("off"), LogLevel::kOff);
  const absl::StatusOr<LogLevel> bad = ParseLogLevel("verbose");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("--log-level"));
  EXPECT_FALSE(RequestLog::Open("/nonexistent/dir/log", LogLevel::kInfo).ok());
}

}  // namespace
}  // namespace modeldist::services
