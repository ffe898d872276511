// HttpOrigin against a real nginx on loopback (tests/testing/nginx_server.h): head, ranged and
// whole reads, a server that ignores Range, objects shorter than asked, HTTPS with and without
// the CA, a dead server, and the refusal to write. Then MakeOrigin's CDN wrapping: device URLs
// under the CDN, CloudFront-signed with the key read from its 0600 file, and the start-up
// errors of a bad key file.
#include "storage/origin/http_origin.h"

#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/origin/origin_factory.h"
#include "storage/origin/origin_set.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::origin {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kKey[] = "prod/sha256/0123456789abcdef";

RetryPolicy FastRetry() {
  RetryPolicy retry;
  retry.max_attempts = 2;
  retry.initial_backoff = absl::Milliseconds(10);
  return retry;
}

class HttpOriginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nginx_ = std::make_unique<testing::NginxServer>(dir_.Join("nginx"), /*tls=*/true);
    ASSERT_NE(nginx_->port(), 0) << "nginx did not start:\n" << nginx_->ErrorLog();
    bytes_ = testing::RandomBytes(300000, 7);
    ASSERT_TRUE(MakeDirs(nginx_->www() + "/prod/sha256").ok());
    ASSERT_TRUE(WriteFileAtomically(nginx_->www() + "/" + kKey, bytes_, 0644).ok());
    origin_ = std::make_unique<HttpOrigin>(
        HttpOriginOptions{.name = "web", .base_url = nginx_->Url(""), .retry = FastRetry()});
  }

  // An http origin on the test's nginx, with CloudFront in front signing with `key_file`.
  v1::Origin WebBehindCloudFront(const std::string& key_file) const {
    v1::Origin config;
    config.set_name("web");
    config.mutable_http()->set_base_url(nginx_->Url(""));
    config.mutable_cdn()->set_base_url("https://d111111abcdef8.cloudfront.net");
    config.mutable_cdn()->mutable_cloudfront()->set_key_pair_id("K2JCJMDEHXQW5F");
    config.mutable_cdn()->mutable_cloudfront()->mutable_private_key()->set_file(key_file);
    return config;
  }

  absl::StatusOr<std::string> Read(Origin& origin, const std::string& key, int64_t offset,
                                   int64_t length) {
    std::string got;
    MD_RETURN_IF_ERROR(origin.Get(
        key, offset, length,
        [&](absl::string_view piece) {
          got.append(piece.data(), piece.size());
          return absl::OkStatus();
        },
        nullptr));
    return got;
  }

  testing::ScratchDir dir_;
  std::unique_ptr<testing::NginxServer> nginx_;
  std::string bytes_;
  std::unique_ptr<HttpOrigin> origin_;
};

TEST_F(HttpOriginTest, HeadGivesTheSizeAndNotFoundForAMissingKey) {
  absl::StatusOr<ObjectInfo> info = origin_->Head(kKey);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 300000);
  EXPECT_FALSE(info->etag.empty());
  EXPECT_FALSE(absl::StrContains(info->etag, "\""));

  absl::StatusOr<ObjectInfo> missing = origin_->Head("prod/sha256/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(HttpOriginTest, ReadsRangesAndTheRest) {
  absl::StatusOr<std::string> middle = Read(*origin_, kKey, 1000, 5000);
  ASSERT_TRUE(middle.ok()) << middle.status();
  EXPECT_EQ(*middle, bytes_.substr(1000, 5000));
  absl::StatusOr<std::string> rest = Read(*origin_, kKey, 299000, -1);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, bytes_.substr(299000));

  // Asked past the end: the bytes that exist, and an error saying the object is shorter.
  absl::StatusOr<std::string> past = Read(*origin_, kKey, 299000, 5000);
  EXPECT_EQ(ErrorReason(past.status()), "ORIGIN_OBJECT_SHORT") << past.status();
  EXPECT_EQ(Read(*origin_, "prod/sha256/nope", 0, 10).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(HttpOriginTest, AServerIgnoringRangeIsUsableFromByteZeroOnly) {
  HttpOrigin norange(HttpOriginOptions{
      .name = "mirror", .base_url = nginx_->Url("/norange"), .retry = FastRetry()});
  absl::StatusOr<std::string> head = Read(norange, kKey, 0, 4096);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(*head, bytes_.substr(0, 4096));  // the whole answer, cut where asked
  absl::StatusOr<std::string> later = Read(norange, kKey, 10, 100);
  EXPECT_EQ(ErrorReason(later.status()), "RANGE_IGNORED") << later.status();
}

TEST_F(HttpOriginTest, HttpsNeedsTheCaAndADeadServerIsUnavailable) {
  const std::string https = absl::StrCat("https://127.0.0.1:", nginx_->tls_port());
  HttpOrigin trusted(HttpOriginOptions{
      .name = "tls", .base_url = https, .ca_file = nginx_->ca_file(), .retry = FastRetry()});
  absl::StatusOr<std::string> got = Read(trusted, kKey, 5, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes_.substr(5, 10));

  HttpOrigin untrusted(HttpOriginOptions{.name = "tls", .base_url = https, .retry = FastRetry()});
  EXPECT_EQ(untrusted.Head(kKey).status().code(), absl::StatusCode::kUnauthenticated);

  HttpOrigin dead(
      HttpOriginOptions{.name = "dead",
                        .base_url = absl::StrCat("http://127.0.0.1:", testing::FreePort()),
                        .retry = FastRetry()});
  EXPECT_EQ(dead.Head(kKey).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(HttpOriginTest, NothingIsWrittenThroughIt) {
  EXPECT_EQ(ErrorReason(origin_->Put("x", http::FileBodyReader(0), 1, "", nullptr)),
            "ORIGIN_READ_ONLY");
  EXPECT_EQ(ErrorReason(origin_->Delete(kKey)), "ORIGIN_READ_ONLY");
  EXPECT_TRUE(origin_->Head(kKey).ok());  // still there
}

TEST_F(HttpOriginTest, DevicesGetThePublicUrlAndItServesTheBytes) {
  absl::StatusOr<std::string> url = origin_->DeviceUrl(kKey, 0);
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url, nginx_->Url(absl::StrCat("/", kKey)));
  absl::StatusOr<std::string> fetched = FetchWithHttp(*url, 100, 50);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, bytes_.substr(100, 50));
}

TEST_F(HttpOriginTest, MakeOriginPutsTheCdnInFrontForDevicesOnly) {
  // A CloudFront key in its 0600 file, as the origins file names it.
  const std::string key_file = dir_.Join("cf.pem");
  ASSERT_EQ(std::system(absl::StrCat("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                                     "-out ",
                                     key_file, " 2>/dev/null")
                            .c_str()),
            0);
  ASSERT_EQ(::chmod(key_file.c_str(), 0600), 0);
  v1::Origin config = WebBehindCloudFront(key_file);

  absl::StatusOr<std::unique_ptr<Origin>> origin = MakeOrigin(config);
  ASSERT_TRUE(origin.ok()) << origin.status();
  absl::StatusOr<std::string> url = (*origin)->DeviceUrl(kKey, 1767225600);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(*url, StartsWith(absl::StrCat("https://d111111abcdef8.cloudfront.net/", kKey,
                                            "?Expires=1767225600&Key-Pair-Id=K2JCJMDEHXQW5F"
                                            "&Signature=")));
  // The server itself still reads through the origin underneath.
  absl::StatusOr<std::string> got = Read(**origin, kKey, 0, 64);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes_.substr(0, 64));

  // Without signing, the plain CDN URL.
  config.mutable_cdn()->clear_cloudfront();
  origin = MakeOrigin(config);
  ASSERT_TRUE(origin.ok()) << origin.status();
  EXPECT_EQ(*(*origin)->DeviceUrl(kKey, 1767225600),
            absl::StrCat("https://d111111abcdef8.cloudfront.net/", kKey));
}

TEST_F(HttpOriginTest, MakeOriginRefusesAKeyOthersCanReadOrThatIsNoKey) {
  const std::string key_file = dir_.Join("cf.pem");
  ASSERT_TRUE(WriteFileAtomically(key_file, "not a key\n", 0644).ok());
  v1::Origin config = WebBehindCloudFront(key_file);

  absl::StatusOr<std::unique_ptr<Origin>> origin = MakeOrigin(config);
  EXPECT_EQ(ErrorReason(origin.status()), "SECRET_UNAVAILABLE");
  EXPECT_THAT(origin.status().message(), HasSubstr("chmod 600"));

  ASSERT_EQ(::chmod(key_file.c_str(), 0600), 0);
  origin = MakeOrigin(config);
  EXPECT_EQ(ErrorReason(origin.status()), "CLOUDFRONT_KEY_INVALID");
  EXPECT_THAT(origin.status().message(), Not(HasSubstr("not a key")));
}

}  // namespace
}  // namespace modeldist::origin
