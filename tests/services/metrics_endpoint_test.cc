// /metrics after known traffic, read by real Prometheus parsers (tests/node/check_prometheus.mjs:
// promtool and parse-prometheus-text-format), with the counts checked against that traffic;
// and the request log's lines for the same requests.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class MetricsEndpointTest : public ::testing::Test {
 protected:
  static services::ServerConfig Config(const std::string& log_file) {
    services::ServerConfig config;
    config.http_listen = "127.0.0.1:0";
    config.log_file = log_file;
    return config;
  }

  std::string Url(const std::string& path) { return server_.HttpUrl(path); }

  // The families as the parsers understood them: name -> the family's JSON object.
  std::map<std::string, google::protobuf::Struct> Parse(const std::string& text) {
    MD_EXPECT_OK(WriteFileAtomically(dir_.Join("metrics.txt"), text, 0644));
    const std::string command = absl::StrCat(
        "node ", MODELDIST_SOURCE_DIR, "/tests/node/check_prometheus.mjs < ",
        dir_.Join("metrics.txt"), " > ", dir_.Join("parsed.json"), " 2> ", dir_.Join("err"));
    const int status = std::system(command.c_str());
    EXPECT_EQ(status, 0) << ReadFileToString(dir_.Join("err")).value_or("") << "\n" << text;
    google::protobuf::ListValue families;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(
                    ReadFileToString(dir_.Join("parsed.json")).value_or(""), &families)
                    .ok());
    std::map<std::string, google::protobuf::Struct> by_name;
    for (const google::protobuf::Value& family : families.values()) {
      by_name[family.struct_value().fields().at("name").string_value()] = family.struct_value();
    }
    return by_name;
  }

  // The value of the sample of `family` whose labels include all of `labels`.
  static double Sample(const google::protobuf::Struct& family,
                       const std::map<std::string, std::string>& labels) {
    for (const google::protobuf::Value& metric :
         family.fields().at("metrics").list_value().values()) {
      const auto& fields = metric.struct_value().fields();
      bool all = true;
      for (const auto& [name, value] : labels) {
        const auto it = fields.find("labels");
        all = all && it != fields.end() && it->second.struct_value().fields().contains(name) &&
              it->second.struct_value().fields().at(name).string_value() == value;
      }
      if (all) return std::stod(fields.at("value").string_value());
    }
    return -1;
  }

  ScratchDir dir_;
  TestServer server_{Config(dir_.Join("requests.log"))};
};

TEST_F(MetricsEndpointTest, CountsKnownTrafficInAFormatPrometheusParses) {
  const std::string bytes = RandomBytes(123456, 5);
  const std::string digest =
      server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, bytes);
  server_.SetTier("t", "stable", "models/m/versions/1");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Curl(Url(absl::StrCat("/v1/blobs/", digest))).status, 200);
  ASSERT_EQ(Curl(Url("/nowhere")).status, 404);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(server_.GetManifest("t", v1::PLATFORM_LINUX, v1::ARCH_X86_64).ok());
  }
  ASSERT_EQ(server_.GetManifest("nosuchtier", v1::PLATFORM_LINUX, v1::ARCH_X86_64).error_code(),
            grpc::StatusCode::NOT_FOUND);

  CurlResult got = Curl(Url("/metrics"));
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  std::map<std::string, google::protobuf::Struct> families = Parse(got.body);
  ASSERT_TRUE(families.contains("modeldist_http_requests_total")) << got.body;
  EXPECT_EQ(Sample(families["modeldist_http_requests_total"], {{"route", "blob"}, {"code", "200"}}),
            3);
  EXPECT_EQ(
      Sample(families["modeldist_http_requests_total"], {{"route", "other"}, {"code", "404"}}), 1);
  const std::string get_manifest = "/modeldist.v1.ManifestService/GetManifest";
  EXPECT_EQ(
      Sample(families["modeldist_grpc_requests_total"], {{"method", get_manifest}, {"code", "OK"}}),
      2);
  EXPECT_EQ(Sample(families["modeldist_grpc_requests_total"],
                   {{"method", get_manifest}, {"code", "NOT_FOUND"}}),
            1);
  EXPECT_EQ(
      Sample(families["modeldist_served_bytes_total"], {{"protocol", "http"}, {"source", "local"}}),
      3.0 * bytes.size());
  EXPECT_EQ(Sample(families["modeldist_blob_store_bytes"], {}), static_cast<double>(bytes.size()));
  EXPECT_EQ(Sample(families["modeldist_blob_store_blobs"], {}), 1);
  EXPECT_GT(Sample(families["modeldist_catalog_sequence"], {{"tier", "t"}, {"channel", "stable"}}),
            0);
  EXPECT_GE(Sample(families["modeldist_manifest_rebuilds_total"], {}), 1);
  EXPECT_EQ(Sample(families["modeldist_http_active_requests"], {}), 1);  // this very request
  for (const char* histogram :
       {"modeldist_grpc_request_duration_seconds", "modeldist_http_request_duration_seconds"}) {
    ASSERT_TRUE(families.contains(histogram)) << histogram;
    EXPECT_EQ(families[histogram].fields().at("type").string_value(), "HISTOGRAM") << histogram;
  }
  // Counts that the text shows per series (the parser merges a labelled histogram's series).
  EXPECT_THAT(got.body,
              HasSubstr("modeldist_http_request_duration_seconds_count{route=\"blob\"} 3\n"));
}

TEST_F(MetricsEndpointTest, EachRequestIsOneJsonLineInTheLog) {
  const std::string bytes = RandomBytes(1000, 6);
  const std::string digest =
      server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, bytes);
  server_.SetTier("t", "stable", "models/m/versions/1");
  ASSERT_EQ(Curl(Url(absl::StrCat("/v1/blobs/", digest))).status, 200);
  ASSERT_EQ(Curl(Url("/functions/v1/local-llm-manifest"),
                 {"-X", "POST", "-d", R"({"platform":"linux","tier":"t","device_id":"dev-7"})"})
                .status,
            200);
  ASSERT_TRUE(server_.GetManifest("t", v1::PLATFORM_LINUX, v1::ARCH_X86_64).ok());
  const std::string log = ReadFileToString(dir_.Join("requests.log")).value_or("");
  std::vector<google::protobuf::Struct> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    google::protobuf::Struct parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &parsed).ok())
        << line;
    lines.push_back(parsed);
  }
  auto find = [&](const std::string& key,
                  const std::string& value) -> const google::protobuf::Struct* {
    for (const auto& line : lines) {
      auto it = line.fields().find(key);
      if (it != line.fields().end() && it->second.string_value() == value) return &line;
    }
    return nullptr;
  };
  const google::protobuf::Struct* blob = find("path", absl::StrCat("/v1/blobs/", digest));
  ASSERT_NE(blob, nullptr) << log;
  EXPECT_EQ(blob->fields().at("protocol").string_value(), "http");
  EXPECT_EQ(blob->fields().at("method").string_value(), "GET");
  EXPECT_EQ(blob->fields().at("code").string_value(), "200");
  EXPECT_EQ(blob->fields().at("bytes").number_value(), 1000);
  EXPECT_EQ(blob->fields().at("level").string_value(), "info");
  EXPECT_THAT(blob->fields().at("peer").string_value(), HasSubstr("127.0.0.1:"));
  EXPECT_TRUE(blob->fields().contains("duration_ms"));
  EXPECT_TRUE(blob->fields().contains("time"));
  const google::protobuf::Struct* edge = find("path", "/functions/v1/local-llm-manifest");
  ASSERT_NE(edge, nullptr) << log;
  EXPECT_EQ(edge->fields().at("device_id").string_value(), "dev-7");
  const google::protobuf::Struct* rpc = find("method", "/modeldist.v1.ManifestService/GetManifest");
  ASSERT_NE(rpc, nullptr) << log;
  EXPECT_EQ(rpc->fields().at("protocol").string_value(), "grpc");
  EXPECT_EQ(rpc->fields().at("code").string_value(), "OK");
  EXPECT_GT(rpc->fields().at("bytes").number_value(), 0);
  // The admin token never reaches the log.
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kTestToken)));
}

}  // namespace
}  // namespace modeldist::testing
