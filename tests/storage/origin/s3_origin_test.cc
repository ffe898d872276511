// S3Origin against a real S3 store that checks signatures: Swift with s3api on loopback.
#include "storage/origin/s3_origin.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/origin/origin_factory.h"
#include "tests/testing/child_process.h"
#include "tests/testing/swift_s3_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::origin {
namespace {

using ::modeldist::testing::SwiftS3Server;

constexpr int64_t kMiB = int64_t{1} << 20;
// The smallest part S3 takes (all but the last), which is also Swift's default
// min_segment_size for s3api; S3Origin refuses smaller ones. Small parts keep the multipart
// tests at a few tens of MiB.
constexpr int64_t kPartSize = 5 * kMiB;

// A file of `data` kept open for Put.
class BlobFile {
 public:
  BlobFile(const testing::ScratchDir& dir, const std::string& name, const std::string& data)
      : sha256_(Sha256::HexOf(data)), size_(static_cast<int64_t>(data.size())) {
    const std::string path = dir.Join(name);
    MD_EXPECT_OK(WriteFileAtomically(path, data, 0644));
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd_, 0);
  }
  ~BlobFile() { ::close(fd_); }
  http::BodyReader reader() const { return http::FileBodyReader(fd_); }
  int64_t size() const { return size_; }
  const std::string& sha256() const { return sha256_; }

 private:
  int fd_ = -1;
  std::string sha256_;
  int64_t size_;
};

class S3OriginTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!SwiftS3Server::Installed()) return;
    server_ = new SwiftS3Server();
    ::testing::AssertionResult started = server_->Start("models");
    if (!started) {
      ADD_FAILURE() << started.message();
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!SwiftS3Server::Installed()) {
      GTEST_SKIP() << "Swift is not installed (tools/install-deps.sh installs it)";
    }
    ASSERT_NE(server_, nullptr) << "Swift did not start";
  }

  S3OriginOptions Options(const std::string& secret = SwiftS3Server::kSecret) {
    S3OriginOptions options;
    options.name = "swift";
    options.endpoint = server_->endpoint();
    options.bucket = "models";
    options.region = SwiftS3Server::kRegion;  // "auto", as R2 signs
    options.credentials = {SwiftS3Server::kAccessKey, secret, ""};
    // On, as for AWS and R2: Swift must accept the header even though it does not keep it.
    options.checksum_sha256 = true;
    options.part_size = kPartSize;
    options.retry.initial_backoff = absl::Milliseconds(10);
    options.retry.max_backoff = absl::Milliseconds(50);
    return options;
  }
  std::unique_ptr<S3Origin> Make(S3OriginOptions options) {
    absl::StatusOr<std::unique_ptr<S3Origin>> origin = S3Origin::Create(std::move(options));
    EXPECT_TRUE(origin.ok()) << origin.status();
    return origin.ok() ? std::move(*origin) : nullptr;
  }
  static std::string GetAll(S3Origin& origin, const std::string& key, int64_t offset,
                            int64_t length, absl::Status* status) {
    std::string out;
    *status = origin.Get(
        key, offset, length,
        [&out](absl::string_view piece) {
          out.append(piece.data(), piece.size());
          return absl::OkStatus();
        },
        nullptr);
    return out;
  }

  static SwiftS3Server* server_;
  testing::ScratchDir dir_;
};

SwiftS3Server* S3OriginTest::server_ = nullptr;

TEST_F(S3OriginTest, WrongSecretIsDeniedAndTheRightOneWorks) {
  const std::string data = testing::RandomBytes(1000, 7);
  BlobFile file(dir_, "a", data);
  auto wrong = Make(Options("not-the-secret"));
  const absl::Status denied =
      wrong->Put("auth/a", file.reader(), file.size(), file.sha256(), nullptr);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied) << denied;
  EXPECT_EQ(ErrorReason(denied), "HTTP_FORBIDDEN");
  EXPECT_THAT(denied.message(), ::testing::HasSubstr("SignatureDoesNotMatch"));
  EXPECT_THAT(denied.message(), ::testing::Not(::testing::HasSubstr("not-the-secret")));
  EXPECT_EQ(wrong->Head("auth/a").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(wrong->Delete("auth/a").code(), absl::StatusCode::kPermissionDenied);

  auto right = Make(Options());
  MD_ASSERT_OK(right->Put("auth/a", file.reader(), file.size(), file.sha256(), nullptr));
  absl::StatusOr<ObjectInfo> info = right->Head("auth/a");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 1000);
}

TEST_F(S3OriginTest, PresignedUrlWorksWithPlainCurlAndTamperedOnesAreRefused) {
  const std::string data = testing::RandomBytes(4096, 8);
  BlobFile file(dir_, "p", data);
  auto origin = Make(Options());
  MD_ASSERT_OK(
      origin->Put("presign/p b+c.bin", file.reader(), file.size(), file.sha256(), nullptr));
  const int64_t expires = absl::ToUnixSeconds(absl::Now()) + 600;

  absl::StatusOr<std::string> url = origin->DeviceUrl("presign/p b+c.bin", expires);
  ASSERT_TRUE(url.ok()) << url.status();
  http::HttpRequest get;
  get.url = *url;
  get.headers = {{"Range", "bytes=100-199"}};  // a device adds its own Range
  std::string body;
  absl::StatusOr<http::HttpResponse> answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 206);
  EXPECT_EQ(body, data.substr(100, 100));

  // The curl program, as a device or a person would use it: the URL alone is enough.
  testing::ChildProcess curl;
  const std::string fetched = dir_.Join("fetched");
  ASSERT_TRUE(curl.Start({"/usr/bin/curl", "-sSf", "-o", fetched, *url},
                         {.stdout_path = dir_.Join("curl.log")}));
  const std::optional<int> exited = curl.Wait(std::chrono::seconds(30));
  ASSERT_TRUE(exited.has_value() && WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0)
      << ReadFileToString(dir_.Join("curl.log")).value_or("");
  EXPECT_EQ(ReadFileToString(fetched).value_or(""), data);

  absl::StatusOr<std::string> forged =
      Make(Options("not-the-secret"))->DeviceUrl("presign/p b+c.bin", expires);
  ASSERT_TRUE(forged.ok());
  get.url = *forged;
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 403);
  EXPECT_EQ(http::HttpError(*answer, "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(answer->error_body, ::testing::HasSubstr("SignatureDoesNotMatch"));

  // The right URL with one signature digit changed.
  std::string tampered = *url;
  const size_t at = tampered.find("X-Amz-Signature=");
  ASSERT_NE(at, std::string::npos);
  char& digit = tampered[at + std::string("X-Amz-Signature=").size()];
  digit = digit == '0' ? '1' : '0';
  get.url = tampered;
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 403);

  // The right URL for another key (the key is part of what is signed).
  MD_ASSERT_OK(origin->Put("presign/other", file.reader(), file.size(), file.sha256(), nullptr));
  get.url = absl::StrReplaceAll(*url, {{"p%20b%2Bc.bin", "other"}});
  ASSERT_NE(get.url, *url);
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 403);

  // Signed an hour ago for a minute: expired.
  S3OriginOptions past = Options();
  const absl::Time signed_at = absl::Now() - absl::Hours(1);
  past.now = [signed_at] { return signed_at; };
  absl::StatusOr<std::string> expired =
      Make(past)->DeviceUrl("presign/p b+c.bin", absl::ToUnixSeconds(signed_at) + 60);
  ASSERT_TRUE(expired.ok()) << expired.status();
  get.url = *expired;
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 403);

  EXPECT_EQ(origin->DeviceUrl("k", absl::ToUnixSeconds(absl::Now()) - 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(S3OriginTest, PutHeadGetRangeDelete) {
  const std::string data = testing::RandomBytes(3 * kMiB + 17, 9);
  BlobFile file(dir_, "b", data);
  auto origin = Make(Options());
  const std::string key = "blobs/sha256/" + file.sha256();
  int64_t reported = 0;
  MD_ASSERT_OK(origin->Put(key, file.reader(), file.size(), file.sha256(),
                           [&](int64_t done, int64_t total) { reported = done; }));
  EXPECT_EQ(reported, file.size());

  absl::StatusOr<ObjectInfo> info = origin->Head(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, file.size());
  EXPECT_FALSE(info->etag.empty());
  EXPECT_FALSE(absl::StrContains(info->etag, "\""));
  // Swift 2.30's s3api neither checks nor keeps x-amz-checksum-sha256: it accepts the header
  // (even with a wrong value: tried by hand, the PUT still succeeded) and HEAD answers without
  // it. The bytes are still checked on receipt, through the SigV4 payload hash (see
  // TheStoreRefusesBytesThatDoNotMatchTheDigest). AWS and R2 keep it; with a Swift that does,
  // this becomes EXPECT_EQ(info->sha256_hex, file.sha256()).
  EXPECT_EQ(info->sha256_hex, "");

  absl::Status status;
  EXPECT_EQ(GetAll(*origin, key, 0, -1, &status), data);
  MD_EXPECT_OK(status);
  EXPECT_EQ(GetAll(*origin, key, 1000, 5000, &status), data.substr(1000, 5000));
  MD_EXPECT_OK(status);
  EXPECT_EQ(GetAll(*origin, key, file.size() - 10, -1, &status), data.substr(data.size() - 10));
  MD_EXPECT_OK(status);
  GetAll(*origin, key, file.size() + 5, 10, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  // Starts inside, ends past the end: the bytes there are, then an error, not a silent short read.
  EXPECT_EQ(GetAll(*origin, key, file.size() - 10, 100, &status), data.substr(data.size() - 10));
  EXPECT_EQ(ErrorReason(status), "ORIGIN_OBJECT_SHORT") << status;

  // A sink's error stops the transfer and comes back unchanged.
  status = origin->Get(
      key, 0, -1,
      [](absl::string_view) {
        return MakeError(absl::StatusCode::kAborted, "TEST_STOP", "enough");
      },
      nullptr);
  EXPECT_EQ(ErrorReason(status), "TEST_STOP");

  MD_ASSERT_OK(origin->Delete(key));
  EXPECT_EQ(origin->Head(key).status().code(), absl::StatusCode::kNotFound);
  MD_EXPECT_OK(origin->Delete(key));  // already gone is fine
  GetAll(*origin, key, 0, -1, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
}

TEST_F(S3OriginTest, AMissingKeyIsNotFound) {
  auto origin = Make(Options());
  const absl::StatusOr<ObjectInfo> info = origin->Head("never/put");
  EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound) << info.status();
  EXPECT_EQ(ErrorReason(info.status()), "HTTP_NOT_FOUND");
  absl::Status status;
  EXPECT_EQ(GetAll(*origin, "never/put", 0, -1, &status), "");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr("NoSuchKey"));
}

// Swift's s3api takes exactly one region in a signature's scope: its `location` setting
// (the harness sets "auto", R2's region; with the default "us-east-1", a request signed for
// "auto" gets 400 AuthorizationHeaderMalformed, checked by hand). So R2's "auto" works
// against Swift only when Swift is configured for it, and the region is really signed.
TEST_F(S3OriginTest, ASignatureScopedToAnotherRegionIsRefused) {
  BlobFile file(dir_, "g", testing::RandomBytes(100, 14));
  S3OriginOptions options = Options();
  options.region = "us-east-1";
  const absl::Status status =
      Make(options)->Put("region/g", file.reader(), file.size(), file.sha256(), nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr("AuthorizationHeaderMalformed"));
  EXPECT_EQ(Make(Options())->Head("region/g").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(S3OriginTest, TheStoreRefusesBytesThatDoNotMatchTheDigest) {
  BlobFile file(dir_, "c", testing::RandomBytes(5000, 10));
  auto origin = Make(Options());
  const std::string wrong(64, 'a');
  const absl::Status status = origin->Put("bad/c", file.reader(), file.size(), wrong, nullptr);
  // Swift answers 400 BadDigest (AWS: 400 XAmzContentSHA256Mismatch): final, not retried.
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(ErrorMetadataValue(status, "http_status"), "400") << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr("BadDigest"));
  EXPECT_EQ(origin->Head("bad/c").status().code(), absl::StatusCode::kNotFound);
}

// Counts each part's PUTs and fails chosen attempts: the transport's fault seam.
struct PartFaults {
  std::map<std::string, int> sent;                 // "partNumber=N" -> attempts
  std::map<std::string, absl::Status> fail_first;  // fails the first attempt of these parts

  std::function<absl::Status(const http::HttpRequest&)> Seam() {
    return [this](const http::HttpRequest& request) {
      const size_t at = request.url.find("partNumber=");
      if (request.method != "PUT" || at == std::string::npos) return absl::OkStatus();
      const std::string part = request.url.substr(at, request.url.find('&', at) - at);
      if (++sent[part] == 1 && fail_first.count(part) != 0) return fail_first[part];
      return absl::OkStatus();
    };
  }
};

absl::Status Unavailable() {
  return MakeError(absl::StatusCode::kUnavailable, "TEST_FAULT", "connection reset (injected)");
}

TEST_F(S3OriginTest, MultipartRetriesAFailedPartAlone) {
  // 64 MiB and a bit: 13 parts, as the issue asks of a model-sized multipart upload.
  const std::string data = testing::RandomBytes((int64_t{64} << 20) + 12345, 11);
  BlobFile file(dir_, "m", data);
  const int64_t parts = (file.size() + kPartSize - 1) / kPartSize;
  ASSERT_EQ(parts, 13);
  PartFaults faults;
  faults.fail_first["partNumber=7"] = Unavailable();
  S3OriginOptions options = Options();
  options.fault = faults.Seam();
  auto origin = Make(options);
  std::vector<int64_t> progress;
  MD_ASSERT_OK(origin->Put("multi/m", file.reader(), file.size(), file.sha256(),
                           [&](int64_t done, int64_t total) {
                             EXPECT_EQ(total, file.size());
                             progress.push_back(done);
                           }));
  std::vector<int64_t> expected_progress;
  for (int64_t n = 1; n <= parts; ++n) {
    EXPECT_EQ(faults.sent[absl::StrCat("partNumber=", n)], n == 7 ? 2 : 1) << "part " << n;
    expected_progress.push_back(std::min(n * kPartSize, file.size()));
  }
  EXPECT_EQ(progress, expected_progress);

  absl::StatusOr<ObjectInfo> info = origin->Head("multi/m");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, file.size());
  absl::Status status;
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, "multi/m", 0, -1, &status)), file.sha256());
  MD_EXPECT_OK(status);
  absl::StatusOr<std::vector<PendingUpload>> pending = origin->PendingUploads("multi/");
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_TRUE(pending->empty());
}

TEST_F(S3OriginTest, InterruptedMultipartIsResumedFromTheListedParts) {
  const std::string data = testing::RandomBytes(3 * kPartSize + 1, 12);  // 4 parts
  BlobFile file(dir_, "r", data);
  S3OriginOptions options = Options();
  options.retry.max_attempts = 1;
  PartFaults first;
  first.fail_first["partNumber=3"] = Unavailable();
  options.fault = first.Seam();
  const absl::Status interrupted =
      Make(options)->Put("resume/r", file.reader(), file.size(), file.sha256(), nullptr);
  EXPECT_EQ(interrupted.code(), absl::StatusCode::kUnavailable) << interrupted;
  EXPECT_EQ(first.sent.count("partNumber=4"), 0u);

  PartFaults second;
  options.fault = second.Seam();
  auto origin = Make(options);
  absl::StatusOr<std::vector<PendingUpload>> pending = origin->PendingUploads("resume/");
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].key, "resume/r");

  MD_ASSERT_OK(origin->Put("resume/r", file.reader(), file.size(), file.sha256(), nullptr));
  EXPECT_EQ(second.sent.count("partNumber=1"), 0u);  // listed and kept
  EXPECT_EQ(second.sent.count("partNumber=2"), 0u);
  EXPECT_EQ(second.sent["partNumber=3"], 1);
  EXPECT_EQ(second.sent["partNumber=4"], 1);
  absl::Status status;
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, "resume/r", 0, -1, &status)), file.sha256());
  MD_EXPECT_OK(status);
  pending = origin->PendingUploads("resume/");
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

TEST_F(S3OriginTest, AFinalFailureAbortsTheUpload) {
  BlobFile file(dir_, "f", testing::RandomBytes(2 * kPartSize + 1, 13));
  S3OriginOptions options = Options();
  PartFaults faults;
  faults.fail_first["partNumber=2"] =
      MakeError(absl::StatusCode::kPermissionDenied, "TEST_FAULT", "denied (injected)");
  options.fault = faults.Seam();
  auto origin = Make(options);
  const absl::Status status =
      origin->Put("abort/f", file.reader(), file.size(), file.sha256(), nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(faults.sent["partNumber=2"], 1);  // not retried: it cannot get better
  absl::StatusOr<std::vector<PendingUpload>> pending = origin->PendingUploads("abort/");
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_TRUE(pending->empty());
}

TEST_F(S3OriginTest, APublicBucketsDeviceUrlIsThePlainObjectUrl) {
  S3OriginOptions options = Options();
  options.public_read = true;
  absl::StatusOr<std::string> url = Make(options)->DeviceUrl("a b/c", 0);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(*url, server_->endpoint() + "/models/a%20b/c");
}

// The server's factory (origin_factory.h) turns an `s3` entry of the origins file into an
// S3Origin that works against the store, with its credentials read from where the file says.
TEST_F(S3OriginTest, TheFactoryBuildsAWorkingOriginFromAnS3Entry) {
  ASSERT_EQ(::setenv("S3_ORIGIN_TEST_KEY_ID", SwiftS3Server::kAccessKey, 1), 0);
  ASSERT_EQ(::setenv("S3_ORIGIN_TEST_SECRET", SwiftS3Server::kSecret, 1), 0);
  v1::Origin config;
  config.set_name("swift-from-file");
  v1::S3Origin* s3 = config.mutable_s3();
  s3->set_endpoint(server_->endpoint());
  s3->set_region(SwiftS3Server::kRegion);
  s3->set_bucket("models");
  s3->mutable_access_key_id()->set_env("S3_ORIGIN_TEST_KEY_ID");
  s3->mutable_secret_access_key()->set_env("S3_ORIGIN_TEST_SECRET");
  absl::StatusOr<std::unique_ptr<Origin>> origin = MakeOrigin(config);
  ASSERT_TRUE(origin.ok()) << origin.status();
  EXPECT_EQ((*origin)->name(), "swift-from-file");
  BlobFile file(dir_, "y", testing::RandomBytes(2000, 15));
  MD_ASSERT_OK((*origin)->Put("factory/y", file.reader(), file.size(), file.sha256(), nullptr));
  absl::StatusOr<ObjectInfo> info = (*origin)->Head("factory/y");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 2000);

  // A part size S3 would refuse is refused when the origin is built, naming the option.
  s3->set_part_size_bytes(1 << 20);
  origin = MakeOrigin(config);
  EXPECT_EQ(origin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(origin.status()), "INVALID_ORIGINS_CONFIG");

  ASSERT_EQ(::unsetenv("S3_ORIGIN_TEST_SECRET"), 0);
  s3->set_part_size_bytes(0);
  origin = MakeOrigin(config);
  EXPECT_EQ(ErrorReason(origin.status()), "SECRET_UNAVAILABLE") << origin.status();
  EXPECT_THAT(origin.status().message(), ::testing::HasSubstr("s3.secret_access_key"));
  ::unsetenv("S3_ORIGIN_TEST_KEY_ID");
}

}  // namespace
}  // namespace modeldist::origin
