// The CDN origin endpoint (services/blob_endpoint.h) and the HTTP routes, with the curl program
// as the client, against a real server: every status (200, 206, 304, 400, 404, 405, 416), the
// headers a cache needs (strong ETag, immutable Cache-Control, Repr-Digest, Content-Length),
// range edge cases (suffix, open, cut at the end, across chain chunks, several ranges,
// If-Range), probes, and a blob damaged on disk: the connection is cut before the damaged chunk
// is complete, and the blob is quarantined.
#include "services/blob_endpoint.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "tests/testing/curl_client.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kChunk = storage::kChunkDigestBytes;

services::ServerConfig WithHttp() {
  services::ServerConfig config;
  config.http_listen = "127.0.0.1:0";
  return config;
}

class BlobEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(server_.server().http_port(), 0);
    digest_ =
        server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes_);
    hex_ = digest_.substr(kSha256Prefix.size());
  }

  std::string Url(const std::string& path) { return server_.HttpUrl(path); }
  std::string BlobUrl() { return Url(absl::StrCat("/v1/blobs/", digest_)); }
  std::string ETag() const { return absl::StrCat("\"", digest_, "\""); }
  CurlResult Ranged(const std::string& range, std::vector<std::string> more = {}) {
    more.insert(more.begin(), {"-H", absl::StrCat("Range: ", range)});
    return Curl(BlobUrl(), more);
  }
  std::string BlobPath() const {
    return absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex_.substr(0, 2), "/", hex_);
  }

  TestServer server_{WithHttp()};
  // Three chain chunks, the last one short.
  const std::string bytes_ = RandomBytes(2 * kChunk + 12345, 7);
  std::string digest_;
  std::string hex_;
};

TEST_F(BlobEndpointTest, GetServesTheWholeBlobWithCacheHeaders) {
  CurlResult got = Curl(BlobUrl());
  ASSERT_EQ(got.status, 200) << got.stderr_text;
  EXPECT_TRUE(got.body == bytes_);
  EXPECT_EQ(got.Header("content-length"), absl::StrCat(bytes_.size()));
  EXPECT_EQ(got.Header("etag"), ETag());
  EXPECT_EQ(got.Header("cache-control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(got.Header("accept-ranges"), "bytes");
  EXPECT_EQ(got.Header("content-type"), "application/octet-stream");
  // RFC 9530: the digest of the whole blob, base64 between colons.
  EXPECT_EQ(got.Header("repr-digest"),
            absl::StrCat("sha-256=:", absl::Base64Escape(absl::HexStringToBytes(hex_)), ":"));
  // Again, now that every chunk matched in this process and is in the page cache: the bytes go
  // with sendfile (storage::TrustedSendFd), whole and ranged, and are the same.
  CurlResult again = Curl(BlobUrl());
  ASSERT_EQ(again.status, 200);
  EXPECT_TRUE(again.body == bytes_);
  CurlResult part = Ranged(absl::StrCat("bytes=", kChunk + 3, "-", 2 * kChunk + 100));
  ASSERT_EQ(part.status, 206);
  EXPECT_TRUE(part.body == bytes_.substr(kChunk + 3, kChunk + 98));
}

TEST_F(BlobEndpointTest, HeadHasTheHeadersOfGetAndNoBody) {
  CurlResult got = Curl(BlobUrl(), {"-I"});
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.Header("content-length"), absl::StrCat(bytes_.size()));
  EXPECT_EQ(got.Header("etag"), ETag());
  EXPECT_EQ(got.body, got.headers);  // with -I curl writes the headers as its output, only them
  // HEAD ignores Range (only GET has ranges).
  EXPECT_EQ(Ranged("bytes=0-9", {"-I"}).status, 200);
}

TEST_F(BlobEndpointTest, SingleRanges) {
  const int64_t size = static_cast<int64_t>(bytes_.size());
  struct Case {
    std::string range;
    int64_t first, last;
  };
  for (const Case& c : std::vector<Case>{
           {"bytes=0-9", 0, 9},
           {"bytes=100-199", 100, 199},
           {absl::StrCat("bytes=", kChunk - 10, "-", kChunk + 9), kChunk - 10, kChunk + 9},
           {"bytes=-100", size - 100, size - 1},
           {absl::StrCat("bytes=", size - 10, "-"), size - 10, size - 1},
           {"bytes=5-999999999999", 5, size - 1},
           {"bytes=-999999999999", 0, size - 1},
           {absl::StrCat("bytes=", kChunk + 1, "-", 2 * kChunk + 7), kChunk + 1, 2 * kChunk + 7},
       }) {
    CurlResult got = Ranged(c.range);
    EXPECT_EQ(got.status, 206) << c.range;
    EXPECT_EQ(got.Header("content-range"), absl::StrCat("bytes ", c.first, "-", c.last, "/", size))
        << c.range;
    EXPECT_EQ(got.Header("content-length"), absl::StrCat(c.last - c.first + 1)) << c.range;
    EXPECT_TRUE(got.body == bytes_.substr(c.first, c.last - c.first + 1)) << c.range;
    EXPECT_EQ(got.Header("etag"), ETag()) << c.range;
  }
}

TEST_F(BlobEndpointTest, UnsatisfiableRangesAre416WithTheSize) {
  for (const std::string& range :
       {absl::StrCat("bytes=", bytes_.size(), "-"), std::string("bytes=-0"),
        absl::StrCat("bytes=", bytes_.size() + 5, "-", bytes_.size() + 9)}) {
    CurlResult got = Ranged(range);
    EXPECT_EQ(got.status, 416) << range;
    EXPECT_EQ(got.Header("content-range"), absl::StrCat("bytes */", bytes_.size())) << range;
    EXPECT_THAT(got.body, HasSubstr("\"reason\":\"RANGE_NOT_SATISFIABLE\"")) << range;
  }
}

TEST_F(BlobEndpointTest, RangesThatAreNotOneValidRangeGetTheWholeBlob) {
  for (const char* range : {"bytes=0-1,5-6", "bytes=9-0", "bytes=x-1", "lines=1-2"}) {
    CurlResult got = Ranged(range);
    EXPECT_EQ(got.status, 200) << range;
    EXPECT_TRUE(got.body == bytes_) << range;
  }
}

TEST_F(BlobEndpointTest, ConditionalRequests) {
  CurlResult same = Curl(BlobUrl(), {"-H", absl::StrCat("If-None-Match: ", ETag())});
  EXPECT_EQ(same.status, 304);
  EXPECT_EQ(same.body, "");
  EXPECT_EQ(same.Header("etag"), ETag());
  EXPECT_EQ(same.Header("cache-control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(Curl(BlobUrl(), {"-H", absl::StrCat("If-None-Match: \"x\", W/", ETag())}).status, 304);
  EXPECT_EQ(Curl(BlobUrl(), {"-H", "If-None-Match: *"}).status, 304);
  CurlResult other = Curl(BlobUrl(), {"-H", "If-None-Match: \"sha256:other\""});
  EXPECT_EQ(other.status, 200);
  EXPECT_TRUE(other.body == bytes_);
  // If-Range: the range only while the validator is this ETag, compared strongly.
  EXPECT_EQ(Ranged("bytes=0-9", {"-H", absl::StrCat("If-Range: ", ETag())}).status, 206);
  for (const std::string& validator : {std::string("\"sha256:other\""), absl::StrCat("W/", ETag()),
                                       std::string("Sat, 01 Jan 2000 00:00:00 GMT")}) {
    CurlResult got = Ranged("bytes=0-9", {"-H", absl::StrCat("If-Range: ", validator)});
    EXPECT_EQ(got.status, 200) << validator;
    EXPECT_TRUE(got.body == bytes_) << validator;
  }
}

TEST_F(BlobEndpointTest, BadRequestsGetJsonErrors) {
  CurlResult invalid = Curl(Url("/v1/blobs/sha256:nothex"));
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(invalid.Header("content-type"), "application/json");
  EXPECT_THAT(invalid.body, HasSubstr("\"code\":\"INVALID_ARGUMENT\""));
  CurlResult unknown = Curl(Url(absl::StrCat("/v1/blobs/sha256:", std::string(64, 'a'))));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("\"reason\":\"BLOB_NOT_FOUND\""));
  CurlResult post = Curl(BlobUrl(), {"-X", "POST", "--data", "x"});
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.Header("allow"), "GET, HEAD");
  CurlResult nowhere = Curl(Url("/no/such/path"));
  EXPECT_EQ(nowhere.status, 404);
  EXPECT_THAT(nowhere.body, HasSubstr("\"reason\":\"NO_SUCH_PATH\""));
  // Still serving.
  EXPECT_EQ(Curl(BlobUrl(), {"-I"}).status, 200);
}

TEST_F(BlobEndpointTest, ProbesSayLiveAndReady) {
  CurlResult live = Curl(Url("/healthz"));
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "{\"status\":\"ok\"}\n");
  CurlResult ready = Curl(Url("/readyz"));
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "{\"status\":\"ready\"}\n");
  EXPECT_EQ(Curl(Url("/readyz"), {"-X", "DELETE"}).status, 405);
}

TEST_F(BlobEndpointTest, ADamagedChunkIsNeverCompleteOnTheWire) {
  // Read once so every chunk is marked verified in this process: the damage changes the file,
  // so nothing verified before may be trusted.
  ASSERT_EQ(Curl(BlobUrl()).status, 200);
  DamageFile(BlobPath(), FileDamage::kFlip, kChunk + 5);
  CurlResult got = Curl(BlobUrl());
  EXPECT_NE(got.exit_code, 0);  // cut short
  // Chunk 0 went out whole; chunk 1, the damaged one, never completely (so no cache keeps it:
  // the body is short of its Content-Length).
  EXPECT_GE(got.body.size(), static_cast<size_t>(kChunk));
  EXPECT_LT(got.body.size(), static_cast<size_t>(2 * kChunk));
  EXPECT_TRUE(got.body.substr(0, kChunk) == bytes_.substr(0, kChunk));
  // Quarantined: later requests find no blob.
  CurlResult after = Curl(BlobUrl());
  EXPECT_EQ(after.status, 404) << after.body;
  EXPECT_THAT(after.body, HasSubstr("\"reason\":\"BLOB_QUARANTINED\""));
}

TEST(BlobEndpointSecretTest, WithAnOriginSecretOnlyTheCdnGetsBlobs) {
  services::ServerConfig config = WithHttp();
  config.http_origin_secret = "cdn-only-0123456789abcdef";
  TestServer server(config);
  const std::string bytes = RandomBytes(1000, 8);
  const std::string digest =
      server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
  const std::string url = server.HttpUrl(absl::StrCat("/v1/blobs/", digest));
  for (const std::vector<std::string>& headers :
       {std::vector<std::string>{},
        {"-H", "X-Modeldist-Origin-Secret: wrong"},
        {"-H", "X-Modeldist-Origin-Secret: cdn-only-0123456789abcdeF"}}) {
    CurlResult refused = Curl(url, headers);
    EXPECT_EQ(refused.status, 403);
    EXPECT_THAT(refused.body, HasSubstr("\"reason\":\"ORIGIN_SECRET_MISMATCH\""));
    EXPECT_THAT(refused.body, ::testing::Not(HasSubstr("cdn-only")));  // never echoed
  }
  CurlResult cdn = Curl(url, {"-H", "X-Modeldist-Origin-Secret: cdn-only-0123456789abcdef"});
  EXPECT_EQ(cdn.status, 200);
  EXPECT_TRUE(cdn.body == bytes);
  // Probes stay open to the load balancer.
  EXPECT_EQ(Curl(server.HttpUrl("/healthz")).status, 200);
}

}  // namespace
}  // namespace modeldist::testing
