#include "storage/origin/sigv4.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/origin/node_sdk.h"

namespace modeldist::origin {
namespace {

absl::Time At(const char* rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) << error;
  return t;
}

std::string Find(const SigV4Params& headers, absl::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

// AWS's SigV4 test suite, case get-vanilla (a generic service: no x-amz-content-sha256).
TEST(SigV4Test, AwsSuiteGetVanilla) {
  SigV4Request request;
  request.method = "GET";
  request.host = "example.amazonaws.com";
  request.path = "/";
  request.payload_hash = std::string(kEmptySha256);
  request.add_content_sha256_header = false;
  const SigV4Params added =
      SignHeaders(request, {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""},
                  {"us-east-1", "service"}, At("2015-08-30T12:36:00Z"));
  EXPECT_EQ(Find(added, "x-amz-date"), "20150830T123600Z");
  EXPECT_EQ(Find(added, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

// The S3 documentation's header-signed GetObject example with a Range header.
TEST(SigV4Test, AwsS3GetObjectWithRange) {
  SigV4Request request;
  request.host = "examplebucket.s3.amazonaws.com";
  request.path = "/test.txt";
  request.headers = {{"Range", "bytes=0-9"}};
  request.payload_hash = std::string(kEmptySha256);
  const SigV4Params added =
      SignHeaders(request, {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""},
                  {"us-east-1", "s3"}, At("2013-05-24T00:00:00Z"));
  EXPECT_EQ(Find(added, "x-amz-content-sha256"), kEmptySha256);
  EXPECT_EQ(Find(added, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// The S3 documentation's presigned GET example (24 hours).
TEST(SigV4Test, AwsS3PresignedGet) {
  SigV4Request request;
  request.host = "examplebucket.s3.amazonaws.com";
  request.path = "/test.txt";
  const std::string query = PresignQuery(
      request, {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""},
      {"us-east-1", "s3"}, At("2013-05-24T00:00:00Z"), 86400, /*content_sha256_in_query=*/false);
  EXPECT_EQ(query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            "&X-Amz-SignedHeaders=host");
}

TEST(SigV4Test, WrongSecretChangesTheSignature) {
  SigV4Request request;
  request.host = "h";
  request.path = "/b/k";
  const absl::Time now = At("2026-01-02T03:04:05Z");
  EXPECT_NE(Find(SignHeaders(request, {"id", "secret", ""}, {}, now), "Authorization"),
            Find(SignHeaders(request, {"id", "secreT", ""}, {}, now), "Authorization"));
}

TEST(SigV4Test, UriEncodeKeepsOnlyUnreservedBytes) {
  EXPECT_EQ(UriEncode("a/b c+d~e_f-g.h", true), "a/b%20c%2Bd~e_f-g.h");
  EXPECT_EQ(UriEncode("a/b", false), "a%2Fb");
  EXPECT_EQ(UriEncode("\xc3\xa9=&", false), "%C3%A9%3D%26");
}

TEST(SigV4Test, HexToBase64) {
  EXPECT_EQ(HexToBase64(kEmptySha256), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

// The URL the official JS presigner makes for the same inputs.
std::string SdkPresign(const std::string& method, const std::string& region, const std::string& key,
                       int64_t signing_unix, int64_t expires_in) {
  return testing::RunNodeScript(
      "presign_s3.mjs",
      absl::StrCat(R"({"endpoint":"http://127.0.0.1:18095","region":")", region,
                   R"(","bucket":"models","key":")", key, R"(","accessKeyId":"test:tester",)",
                   R"("secretAccessKey":"testing","signingDateUnix":)", signing_unix,
                   R"(,"expiresIn":)", expires_in, R"(,"method":")", method, R"("})"));
}

TEST(SigV4Test, PresignedUrlsEqualTheAwsSdkForJavaScript) {
  if (!testing::NodeSdkInstalled("@aws-sdk/s3-request-presigner")) {
    GTEST_SKIP() << "node or tests/node/node_modules missing (tools/install-deps.sh installs them)";
  }
  struct Case {
    const char* method;
    const char* region;
    const char* key;
    int64_t expires;
  } cases[] = {
      {"GET", "auto", "blobs/sha256/ab/abcdef", 3600},
      {"GET", "us-east-1", "a/b c+d~=&.bin", 604800},
      {"PUT", "auto", "x/\xc3\xa9t\xc3\xa9.gguf", 60},
  };
  const int64_t signing_unix = 1767323045;  // 2026-01-02T03:04:05Z
  for (const Case& c : cases) {
    SigV4Request request;
    request.method = c.method;
    request.host = "127.0.0.1:18095";
    request.path = absl::StrCat("/models/", c.key);
    // The SDK names the operation in the query; it is signed like any parameter.
    request.query = {{"x-id", std::string(c.method) == "PUT" ? "PutObject" : "GetObject"}};
    const std::string ours =
        absl::StrCat("http://127.0.0.1:18095", UriEncode(request.path, true), "?",
                     PresignQuery(request, {"test:tester", "testing", ""}, {c.region, "s3"},
                                  absl::FromUnixSeconds(signing_unix), c.expires, true));
    EXPECT_EQ(ours, SdkPresign(c.method, c.region, c.key, signing_unix, c.expires)) << c.key;
  }
}

}  // namespace
}  // namespace modeldist::origin
