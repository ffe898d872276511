// The seed's edge function served by modeldist (services/edge_manifest_endpoint.h), called with
// curl exactly as the seed's step 6 does, its answer read as the seed's app reads it (URL,
// SHA-256 and size per artifact; the bytes at the URL match them), the signed manifest in it
// verified with the openssl recipe (tools/verify-manifest.sh), the same selection as
// GetManifest, CORS, and bad requests answered with JSON errors.
#include "services/edge_manifest_endpoint.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

services::ServerConfig WithHttp(const std::string& public_url = "") {
  services::ServerConfig config;
  config.http_listen = "127.0.0.1:0";
  config.http_public_url = public_url;
  return config;
}

class EdgeManifestTest : public ::testing::Test {
 protected:
  void SetUp() override { Publish(); }

  // Version 2026.11.0 of llama-3.1-8b: a CoreML zip for Apple Silicon and a GGUF for Intel
  // Macs, bound to tier llama8b.
  void Publish() {
    v1::CreateModelRequest model;
    model.set_model_id("llama-3.1-8b");
    v1::Model created;
    ASSERT_TRUE(server_.registry().CreateModel(server_.Admin().get(), model, &created).ok());
    v1::CreateVersionRequest version;
    version.set_parent("models/llama-3.1-8b");
    version.set_version_id("2026.11.0");
    *version.add_artifacts() =
        MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_);
    *version.add_artifacts() =
        MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF, gguf_);
    v1::Version made;
    ASSERT_TRUE(server_.registry().CreateVersion(server_.Admin().get(), version, &made).ok());
    for (const std::string* bytes : {&zip_, &gguf_}) {
      ASSERT_TRUE(server_.Upload(Sha256Digest(*bytes), *bytes).ok());
    }
    v1::PublishVersionRequest publish;
    publish.set_name("models/llama-3.1-8b/versions/2026.11.0");
    ASSERT_TRUE(server_.registry().PublishVersion(server_.Admin().get(), publish, &made).ok());
    server_.SetTier("llama8b", "stable", "models/llama-3.1-8b/versions/2026.11.0");
  }

  std::string Url(const std::string& path = "/functions/v1/local-llm-manifest") {
    return server_.HttpUrl(path);
  }

  // The seed's step 6, verbatim but for the host.
  CurlResult Post(const std::string& body) {
    return Curl(Url(), {"-X", "POST", "-H", "Content-Type: application/json", "-d", body});
  }

  static google::protobuf::Struct Parse(const std::string& json) {
    google::protobuf::Struct parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
    return parsed;
  }

  static std::string Sha256Digest(const std::string& bytes) {
    return absl::StrCat(kSha256Prefix, Sha256::HexOf(bytes));
  }

  TestServer server_{WithHttp()};
  const std::string zip_ = RandomBytes(300000, 3);
  const std::string gguf_ = RandomBytes(200000, 4);
};

TEST_F(EdgeManifestTest, TheSeedsRequestGetsUrlSha256AndSizePerArtifact) {
  CurlResult got = Post(R"({"platform": "macos", "tier": "llama8b"})");
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.Header("content-type"), "application/json");
  EXPECT_EQ(got.Header("access-control-allow-origin"), "*");
  const google::protobuf::Struct answer = Parse(got.body);
  const auto& fields = answer.fields();
  EXPECT_EQ(fields.at("tier").string_value(), "llama8b");
  EXPECT_EQ(fields.at("channel").string_value(), "stable");
  // The seed's LOCAL_LLM_MACOS_COREML_ZIP_* and LOCAL_LLM_MACOS_INTEL_GGUF_*, read as an app does:
  // fetch the URL, check the size and the SHA-256.
  for (const auto& [name, bytes] :
       {std::pair<std::string, const std::string*>{"coreml_zip", &zip_}, {"intel_gguf", &gguf_}}) {
    ASSERT_TRUE(fields.contains(name)) << got.body;
    const auto& artifact = fields.at(name).struct_value().fields();
    EXPECT_EQ(artifact.at("sha256").string_value(), Sha256::HexOf(*bytes)) << name;
    EXPECT_EQ(artifact.at("size_bytes").number_value(), static_cast<double>(bytes->size())) << name;
    const std::string url = artifact.at("url").string_value();
    EXPECT_EQ(url, Url(absl::StrCat("/v1/blobs/", Sha256Digest(*bytes)))) << name;
    CurlResult download = Curl(url);
    ASSERT_EQ(download.status, 200) << name;
    EXPECT_EQ(download.body.size(), bytes->size()) << name;
    EXPECT_EQ(Sha256::HexOf(download.body), artifact.at("sha256").string_value()) << name;
  }
  ASSERT_EQ(fields.at("artifacts").list_value().values_size(), 2);
  const auto& first = fields.at("artifacts").list_value().values(0).struct_value().fields();
  EXPECT_EQ(first.at("arch").string_value(), "arm64");
  EXPECT_EQ(first.at("format").string_value(), "coreml_zip");
  EXPECT_EQ(first.at("model").string_value(), "llama-3.1-8b");
  EXPECT_EQ(first.at("version").string_value(), "2026.11.0");
}

TEST_F(EdgeManifestTest, TheSignedManifestInsideVerifiesWithTheOpensslRecipe) {
  CurlResult got = Post(R"({"platform":"macos","tier":"llama8b","arch":"arm64"})");
  ASSERT_EQ(got.status, 200) << got.body;
  const google::protobuf::Struct answer = Parse(got.body);
  ASSERT_EQ(answer.fields().at("artifacts").list_value().values_size(), 1);
  std::string signed_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(answer.fields()
                                                              .at("artifacts")
                                                              .list_value()
                                                              .values(0)
                                                              .struct_value()
                                                              .fields()
                                                              .at("signed_manifest"),
                                                          &signed_json)
                  .ok());
  v1::GetSigningKeysResponse keys;
  grpc::ClientContext context;
  ASSERT_TRUE(server_.manifests().GetSigningKeys(&context, {}, &keys).ok());
  std::string keys_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(keys, &keys_json).ok());
  ScratchDir dir;
  MD_ASSERT_OK(WriteFileAtomically(dir.Join("signed.json"), signed_json, 0644));
  MD_ASSERT_OK(WriteFileAtomically(dir.Join("keys.json"), keys_json, 0644));
  const std::string script = absl::StrCat(MODELDIST_SOURCE_DIR, "/tools/verify-manifest.sh");
  const std::string command =
      absl::StrCat("sh ", script, " --offline ", dir.Join("signed.json"), " ",
                   dir.Join("keys.json"), " > ", dir.Join("out"), " 2>&1");
  EXPECT_EQ(std::system(command.c_str()), 0) << ReadFileToString(dir.Join("out")).value_or("");
  EXPECT_THAT(ReadFileToString(dir.Join("out")).value_or(""),
              HasSubstr("Signature Verified Successfully"));
  // And it is GetManifest's very answer for that device.
  v1::SignedManifest direct;
  ASSERT_TRUE(server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, &direct).ok());
  v1::SignedManifest from_http;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(signed_json, &from_http).ok());
  EXPECT_TRUE(from_http.SerializeAsString() == direct.SerializeAsString());  // all of it
}

TEST_F(EdgeManifestTest, BlobUrlsUseThePublicUrlWhenConfigured) {
  server_.config().http_public_url = "https://models.example.com/";
  server_.Restart();
  CurlResult got = Post(R"({"platform":"macos","tier":"llama8b","arch":"x86_64"})");
  ASSERT_EQ(got.status, 200) << got.body;
  const google::protobuf::Struct answer = Parse(got.body);
  EXPECT_EQ(answer.fields().at("intel_gguf").struct_value().fields().at("url").string_value(),
            absl::StrCat("https://models.example.com/v1/blobs/", Sha256Digest(gguf_)));
  EXPECT_FALSE(answer.fields().contains("coreml_zip"));
}

TEST_F(EdgeManifestTest, PreflightAndWrongMethods) {
  CurlResult preflight = Curl(Url(), {"-X", "OPTIONS", "-H", "Origin: https://app.example.com",
                                      "-H", "Access-Control-Request-Method: POST"});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.Header("access-control-allow-origin"), "*");
  EXPECT_THAT(preflight.Header("access-control-allow-methods"), HasSubstr("POST"));
  EXPECT_THAT(preflight.Header("access-control-allow-headers"), HasSubstr("content-type"));
  CurlResult get = Curl(Url());
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.Header("allow"), "POST, OPTIONS");
  EXPECT_EQ(get.Header("access-control-allow-origin"), "*");
}

TEST_F(EdgeManifestTest, BadRequestsGetJsonErrorsNamingTheField) {
  struct Case {
    std::string body;
    int status;
    std::string reason;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"", 400, "INVALID_JSON", "empty"},
           {"{not json", 400, "INVALID_JSON", "JSON object"},
           {"[1,2]", 400, "INVALID_JSON", "JSON object"},
           {R"({"platform":"macos"})", 400, "", "tier"},
           {R"({"tier":"llama8b"})", 400, "MISSING_PLATFORM", "platform"},
           {R"({"platform":"beos","tier":"llama8b"})", 400, "MISSING_PLATFORM", "beos"},
           {R"({"platform":"macos","tier":7})", 400, "INVALID_FIELD_TYPE", "tier must be a string"},
           {R"({"platform":"macos","tier":"llama8b","arch":"any"})", 400, "INVALID_ARCH", "arch"},
           {R"({"platform":"macos","tier":"../etc"})", 400, "", "tier"},
           {R"({"platform":"macos","tier":"nosuchtier"})", 404, "", "nosuchtier"},
           {R"({"platform":"linux","tier":"llama8b"})", 404, "", ""},
       }) {
    CurlResult got = Post(c.body);
    EXPECT_EQ(got.status, c.status) << c.body << " -> " << got.body;
    EXPECT_EQ(got.Header("content-type"), "application/json") << c.body;
    EXPECT_EQ(got.Header("access-control-allow-origin"), "*") << c.body;
    const google::protobuf::Struct error = Parse(got.body);
    ASSERT_TRUE(error.fields().contains("error")) << got.body;
    const auto& e = error.fields().at("error").struct_value().fields();
    if (!c.reason.empty()) {
      EXPECT_EQ(e.at("reason").string_value(), c.reason) << c.body;
    }
    EXPECT_THAT(e.at("message").string_value(), HasSubstr(c.says)) << c.body;
  }
  CurlResult huge =
      Post(absl::StrCat(R"({"platform":"macos","tier":")", std::string(100000, 'x'), "\"}"));
  EXPECT_EQ(huge.status, 413);
  EXPECT_EQ(Post(R"({"platform":"macos","tier":"llama8b"})").status, 200);  // still serving
}

}  // namespace
}  // namespace modeldist::testing
