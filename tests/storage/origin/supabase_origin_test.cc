// SupabaseOrigin against the Supabase Storage stand-in on loopback
// (tests/testing/supabase_standin.h), which checks the service_role JWT and answers in
// Supabase's error shape: small objects in one POST, Head/Get/ranges/Delete, the error mapping
// (HTTP 400 with the real status in the JSON body; a HEAD's bodiless 400 explained by the info
// route), a wrong key, signed and public device URLs fetched like a device would, TUS uploads in
// 6 MiB chunks with a retried chunk, a cancelled upload resumed by the next Put and one whose
// bytes failed their check ended, and MakeOrigin from a `supabase` entry with its key in a file.
#include "storage/origin/supabase_origin.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/http/http.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "modeldist/v1/origins.pb.h"
#include "storage/origin/origin_factory.h"
#include "storage/origin/origin_set.h"
#include "tests/testing/supabase_standin.h"
#include "tests/testing/test_util.h"

namespace modeldist::origin {
namespace {

using ::modeldist::testing::SupabaseStandin;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr char kBucket[] = "models";
constexpr char kPublicBucket[] = "public-models";

// `data` as a BodyReader; counts the bytes read and the lowest offset asked for.
struct Source {
  explicit Source(std::string bytes) : data(std::move(bytes)) {}

  // Fails with `code` once a read reaches byte `fail_at` (the bytes before it are given).
  http::BodyReader Reader(int64_t fail_at = std::numeric_limits<int64_t>::max(),
                          absl::StatusCode code = absl::StatusCode::kOk) {
    return [this, fail_at, code](int64_t offset, char* buf, size_t size) -> absl::StatusOr<size_t> {
      if (offset >= fail_at) {
        return MakeError(code, "TEST_SOURCE_FAULT", absl::StrCat("failed at byte ", offset));
      }
      const int64_t end = std::min<int64_t>(
          {offset + static_cast<int64_t>(size), static_cast<int64_t>(data.size()), fail_at});
      if (offset >= end) return 0;
      std::copy(data.data() + offset, data.data() + end, buf);
      read += end - offset;
      lowest = std::min(lowest, offset);
      return static_cast<size_t>(end - offset);
    };
  }
  int64_t size() const { return static_cast<int64_t>(data.size()); }

  std::string data;
  std::atomic<int64_t> read{0};
  int64_t lowest = std::numeric_limits<int64_t>::max();
};

// Every request the origin sends, seen through its fault seam; can fail chosen PATCHes once.
struct Recorder {
  struct Sent {
    std::string method;
    std::string url;
    http::Headers headers;
    std::string body;
    int64_t body_length = 0;
    std::string Header(const std::string& name) const {
      for (const auto& [key, value] : headers) {
        if (absl::EqualsIgnoreCase(key, name)) return value;
      }
      return "";
    }
  };

  std::function<absl::Status(const http::HttpRequest&)> Seam() {
    return [this](const http::HttpRequest& request) {
      std::lock_guard<std::mutex> lock(mu);
      sent.push_back(
          {request.method, request.url, request.headers, request.body, request.body_length});
      if (request.method == "PATCH") {
        const std::string offset = sent.back().Header("Upload-Offset");
        if (fail_patch_at.erase(offset) != 0) {
          return MakeError(absl::StatusCode::kUnavailable, "TEST_FAULT",
                           "connection reset (injected)");
        }
      }
      return absl::OkStatus();
    };
  }
  std::vector<Sent> Of(const std::string& method) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<Sent> out;
    for (const Sent& s : sent) {
      if (s.method == method) out.push_back(s);
    }
    return out;
  }
  // (Upload-Offset, length) of every PATCH, in order.
  std::vector<std::pair<int64_t, int64_t>> Patches() {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Sent& s : Of("PATCH")) {
      out.emplace_back(std::stoll(s.Header("Upload-Offset")), s.body_length);
    }
    return out;
  }

  std::mutex mu;
  std::vector<Sent> sent;
  std::set<std::string> fail_patch_at;  // Upload-Offset values whose first PATCH fails
};

google::protobuf::Struct ParseJsonObject(const std::string& json) {
  google::protobuf::Struct out;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &out).ok()) << json;
  return out;
}

class SupabaseOriginTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!SupabaseStandin::Installed()) return;
    server_ = new SupabaseStandin();
    ::testing::AssertionResult started = server_->Start();
    if (started) started = server_->CreateBucket(kBucket, /*is_public=*/false);
    if (started) started = server_->CreateBucket(kPublicBucket, /*is_public=*/true);
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
    if (!SupabaseStandin::Installed()) GTEST_SKIP() << "node is not installed";
    ASSERT_NE(server_, nullptr) << "the Supabase stand-in did not start";
  }

  SupabaseOriginOptions Options() const {
    SupabaseOriginOptions options;
    options.name = "supabase";
    options.url = server_->url();
    options.bucket = kBucket;
    options.service_role_key = server_->service_key();
    options.retry.initial_backoff = absl::Milliseconds(10);
    options.retry.max_backoff = absl::Milliseconds(50);
    return options;
  }
  static std::unique_ptr<SupabaseOrigin> Make(SupabaseOriginOptions options) {
    absl::StatusOr<std::unique_ptr<SupabaseOrigin>> origin =
        SupabaseOrigin::Create(std::move(options));
    EXPECT_TRUE(origin.ok()) << origin.status();
    return origin.ok() ? std::move(*origin) : nullptr;
  }
  static std::string GetAll(Origin& origin, const std::string& key, int64_t offset, int64_t length,
                            absl::Status* status) {
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
  // The stand-in's upload of `name`, if it holds one.
  static std::optional<testing::StandinTusUpload> StandinUpload(const std::string& name) {
    for (const testing::StandinTusUpload& upload : server_->TusUploads()) {
      if (upload.name == name && !upload.done) return upload;
    }
    return std::nullopt;
  }

  static SupabaseStandin* server_;
  testing::ScratchDir dir_;
};

SupabaseStandin* SupabaseOriginTest::server_ = nullptr;

TEST_F(SupabaseOriginTest, PutHeadGetRangesDelete) {
  Source source(testing::RandomBytes(300000, 1));
  const std::string key = "prod/sha256/" + Sha256::HexOf(source.data);
  Recorder recorder;
  SupabaseOriginOptions options = Options();
  options.fault = recorder.Seam();
  auto origin = Make(options);
  int64_t reported = 0;
  MD_ASSERT_OK(origin->Put(key, source.Reader(), source.size(), Sha256::HexOf(source.data),
                           [&](int64_t done, int64_t) { reported = done; }));
  EXPECT_EQ(reported, source.size());
  // One POST with the credentials in both headers Supabase reads, and x-upsert.
  const std::vector<Recorder::Sent> posts = recorder.Of("POST");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].url, absl::StrCat(server_->url(), "/storage/v1/object/models/", key));
  EXPECT_EQ(posts[0].Header("Authorization"), "Bearer " + server_->service_key());
  EXPECT_EQ(posts[0].Header("apikey"), server_->service_key());
  EXPECT_EQ(posts[0].Header("x-upsert"), "true");
  EXPECT_EQ(posts[0].Header("Content-Type"), "application/octet-stream");
  EXPECT_TRUE(recorder.Of("PATCH").empty());

  absl::StatusOr<ObjectInfo> info = origin->Head(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, source.size());
  EXPECT_EQ(info->etag.size(), 32u) << info->etag;  // an MD5 in hex, quotes removed
  EXPECT_EQ(info->sha256_hex, "");

  absl::Status status;
  EXPECT_EQ(GetAll(*origin, key, 0, -1, &status), source.data);
  MD_EXPECT_OK(status);
  EXPECT_EQ(GetAll(*origin, key, 1000, 5000, &status), source.data.substr(1000, 5000));
  MD_EXPECT_OK(status);
  EXPECT_EQ(GetAll(*origin, key, source.size() - 10, -1, &status),
            source.data.substr(source.data.size() - 10));
  MD_EXPECT_OK(status);
  // Past the end: the one real 416 Supabase sends.
  GetAll(*origin, key, source.size() + 5, 10, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_EQ(GetAll(*origin, key, source.size() - 10, 100, &status),
            source.data.substr(source.data.size() - 10));
  EXPECT_EQ(ErrorReason(status), "ORIGIN_OBJECT_SHORT") << status;

  // A second Put replaces the object (x-upsert), as a repair would.
  Source other(testing::RandomBytes(1234, 2));
  MD_ASSERT_OK(origin->Put(key, other.Reader(), other.size(), "", nullptr));
  EXPECT_EQ(GetAll(*origin, key, 0, -1, &status), other.data);

  MD_ASSERT_OK(origin->Delete(key));
  EXPECT_EQ(origin->Head(key).status().code(), absl::StatusCode::kNotFound);
  MD_EXPECT_OK(origin->Delete(key));  // already gone is fine
  GetAll(*origin, key, 0, -1, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
}

TEST_F(SupabaseOriginTest, KeysAreEncodedPerSegment) {
  Source source(testing::RandomBytes(100, 3));
  auto origin = Make(Options());
  const std::string key = "odd/a b+c (1).bin";
  MD_ASSERT_OK(origin->Put(key, source.Reader(), source.size(), "", nullptr));
  absl::StatusOr<ObjectInfo> info = origin->Head(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 100);
  // Stored under the key as written, not its escaped form.
  EXPECT_EQ(origin->Head("odd/a%20b%2Bc%20%281%29.bin").status().code(),
            absl::StatusCode::kNotFound);
  absl::Status status;
  EXPECT_EQ(GetAll(*origin, key, 10, 20, &status), source.data.substr(10, 20));
  MD_EXPECT_OK(status);
  MD_EXPECT_OK(origin->Delete(key));
}

TEST_F(SupabaseOriginTest, AnEmptyObjectGoesInOnePost) {
  Source source("");
  auto origin = Make(Options());
  MD_ASSERT_OK(origin->Put("empty/e", source.Reader(), 0, "", nullptr));
  absl::StatusOr<ObjectInfo> info = origin->Head("empty/e");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 0);
}

TEST_F(SupabaseOriginTest, AMissingObjectIsNotFoundFromTheBodysStatusCode) {
  auto origin = Make(Options());
  // HEAD's 400 has no body; the info route's GET says what it was.
  const absl::StatusOr<ObjectInfo> info = origin->Head("never/put");
  EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound) << info.status();
  EXPECT_EQ(ErrorReason(info.status()), "HTTP_NOT_FOUND");
  EXPECT_THAT(info.status().message(), HasSubstr("NoSuchKey"));
  absl::Status status;
  EXPECT_EQ(GetAll(*origin, "never/put", 0, -1, &status), "");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("NoSuchKey: Object not found (sent as HTTP 400)"));
  EXPECT_EQ(ErrorMetadataValue(status, "http_status"), "404");

  // A bucket that is not there is NOT_FOUND too.
  SupabaseOriginOptions options = Options();
  options.bucket = "no-such-bucket";
  Source source(testing::RandomBytes(10, 4));
  const absl::Status put = Make(options)->Put("k", source.Reader(), source.size(), "", nullptr);
  EXPECT_EQ(put.code(), absl::StatusCode::kNotFound) << put;
  EXPECT_THAT(put.message(), HasSubstr("NoSuchBucket"));
}

TEST_F(SupabaseOriginTest, TheWrongKeyIsDeniedAndNeverShown) {
  // A service_role JWT, well formed, signed with another project's secret.
  const std::string wrong = SupabaseStandin::MintServiceKey("another-projects-secret");
  ASSERT_FALSE(wrong.empty());
  SupabaseOriginOptions options = Options();
  options.service_role_key = wrong;
  auto origin = Make(options);
  Source small(testing::RandomBytes(1000, 5));
  Source large(testing::RandomBytes(7 * kMiB, 6));
  std::vector<absl::Status> denied = {
      origin->Put("auth/a", small.Reader(), small.size(), "", nullptr),
      origin->Put("auth/b", large.Reader(), large.size(), "", nullptr),  // TUS
      origin->Head("auth/a").status(),
      origin->Get(
          "auth/a", 0, -1, [](absl::string_view) { return absl::OkStatus(); }, nullptr),
      origin->DeviceUrl("auth/a", absl::ToUnixSeconds(absl::Now()) + 60).status(),
      origin->Delete("auth/a"),
  };
  for (const absl::Status& status : denied) {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_EQ(ErrorReason(status), "HTTP_FORBIDDEN") << status;
    EXPECT_THAT(status.message(), HasSubstr("AccessDenied")) << status;
    EXPECT_THAT(status.message(), Not(HasSubstr(wrong)));
    EXPECT_THAT(status.message(), Not(HasSubstr(server_->service_key())));
    EXPECT_THAT(status.message(), HasSubstr(server_->url()));  // the URL names where
  }
  EXPECT_EQ(origin->PendingUploadUrl("auth/b"), "");
  EXPECT_EQ(Make(Options())->Head("auth/a").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SupabaseOriginTest, ALargePutGoesOverTusIn6MiBChunksEachRetriedAlone) {
  Source source(testing::RandomBytes(13 * kMiB + 12345, 7));
  const std::string key = "prod/sha256/" + Sha256::HexOf(source.data);
  Recorder recorder;
  recorder.fail_patch_at = {absl::StrCat(6 * kMiB)};  // the second chunk's first try
  SupabaseOriginOptions options = Options();
  options.fault = recorder.Seam();
  auto origin = Make(options);
  std::vector<int64_t> progress;
  MD_ASSERT_OK(
      origin->Put(key, source.Reader(), source.size(), "", [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, source.size());
        progress.push_back(done);
      }));
  const int64_t chunk = kSupabaseTusChunkSize;
  EXPECT_EQ(chunk, 6 * kMiB);
  EXPECT_EQ(progress, (std::vector<int64_t>{chunk, 2 * chunk, source.size()}));
  // The failed PATCH was sent again after a HEAD of the upload; the others once.
  EXPECT_EQ(
      recorder.Patches(),
      (std::vector<std::pair<int64_t, int64_t>>{
          {0, chunk}, {chunk, chunk}, {chunk, chunk}, {2 * chunk, source.size() - 2 * chunk}}));
  for (const Recorder::Sent& patch : recorder.Of("PATCH")) {
    EXPECT_EQ(patch.Header("Content-Type"), "application/offset+octet-stream");
    EXPECT_EQ(patch.Header("Tus-Resumable"), "1.0.0");
  }
  ASSERT_EQ(recorder.Of("HEAD").size(), 1u);

  // The creation: its length, and metadata that decodes to the bucket and object names.
  const std::vector<Recorder::Sent> posts = recorder.Of("POST");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].url, server_->url() + "/storage/v1/upload/resumable");
  EXPECT_EQ(posts[0].Header("Upload-Length"), absl::StrCat(source.size()));
  EXPECT_EQ(posts[0].Header("x-upsert"), "true");
  std::map<std::string, std::string> metadata;
  for (absl::string_view pair : absl::StrSplit(posts[0].Header("Upload-Metadata"), ',')) {
    std::vector<std::string> parts = absl::StrSplit(pair, ' ');
    ASSERT_EQ(parts.size(), 2u) << pair;
    ASSERT_TRUE(absl::Base64Unescape(parts[1], &metadata[parts[0]])) << pair;
  }
  EXPECT_EQ(metadata,
            (std::map<std::string, std::string>{{"bucketName", kBucket},
                                                {"objectName", key},
                                                {"contentType", "application/octet-stream"}}));

  absl::StatusOr<ObjectInfo> info = origin->Head(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, source.size());
  absl::Status status;
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, key, 0, -1, &status)), Sha256::HexOf(source.data));
  MD_EXPECT_OK(status);
  EXPECT_EQ(origin->PendingUploadUrl(key), "");
  EXPECT_FALSE(StandinUpload(key).has_value());
}

TEST_F(SupabaseOriginTest, ACancelledPutIsResumedByTheNextPut) {
  Source source(testing::RandomBytes(13 * kMiB + 777, 8));
  const std::string key = "resume/" + Sha256::HexOf(source.data);
  Recorder recorder;
  SupabaseOriginOptions options = Options();
  options.fault = recorder.Seam();
  auto origin = Make(options);
  const absl::Status cancelled = origin->Put(
      key, source.Reader(7 * kMiB, absl::StatusCode::kCancelled), source.size(), "", nullptr);
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled) << cancelled;
  EXPECT_EQ(ErrorReason(cancelled), "TEST_SOURCE_FAULT");
  const std::string upload_url = origin->PendingUploadUrl(key);
  EXPECT_THAT(upload_url, ::testing::StartsWith(server_->url() + "/storage/v1/upload/resumable/"));
  // The server kept the first chunk at least, and whatever of the second reached it. Asked
  // with a TUS HEAD, which waits for the server to finish with the cut PATCH.
  http::HttpRequest head{.method = "HEAD", .url = upload_url};
  head.headers = {{"Authorization", "Bearer " + server_->service_key()},
                  {"Tus-Resumable", "1.0.0"}};
  absl::StatusOr<http::HttpResponse> answer = http::Perform(head);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->status, 200);
  const int64_t kept = std::stoll(answer->Header("Upload-Offset"));
  EXPECT_GE(kept, 6 * kMiB);
  EXPECT_LE(kept, 7 * kMiB);
  std::optional<testing::StandinTusUpload> held = StandinUpload(key);
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->offset, kept);
  EXPECT_EQ(held->size, source.size());
  EXPECT_EQ(origin->Head(key).status().code(), absl::StatusCode::kNotFound);

  Source again(source.data);
  std::vector<int64_t> progress;
  MD_ASSERT_OK(origin->Put(key, again.Reader(), again.size(), "",
                           [&](int64_t done, int64_t) { progress.push_back(done); }));
  // Resumed where the server stopped: nothing before it read again, and the chunk in progress
  // ended on 12 MiB so that the later parts stay 6 MiB.
  EXPECT_EQ(again.lowest, kept);
  EXPECT_EQ(again.read.load(), source.size() - kept);
  const std::vector<std::pair<int64_t, int64_t>> patches = recorder.Patches();
  ASSERT_GE(patches.size(), 2u);
  EXPECT_EQ(patches[patches.size() - 2], (std::pair<int64_t, int64_t>{kept, 12 * kMiB - kept}));
  EXPECT_EQ(patches.back(), (std::pair<int64_t, int64_t>{12 * kMiB, source.size() - 12 * kMiB}));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front(), kept);
  EXPECT_EQ(progress.back(), source.size());
  // Only one upload was ever created.
  EXPECT_EQ(recorder.Of("POST").size(), 1u);

  absl::Status status;
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, key, 0, -1, &status)), Sha256::HexOf(source.data));
  MD_EXPECT_OK(status);
  EXPECT_EQ(origin->PendingUploadUrl(key), "");
}

TEST_F(SupabaseOriginTest, AnOutagePastTheRetriesKeepsTheUploadAndAVanishedOneIsRedone) {
  Source source(testing::RandomBytes(13 * kMiB, 15));
  const std::string key = "outage/" + Sha256::HexOf(source.data);
  Recorder recorder;
  recorder.fail_patch_at = {absl::StrCat(6 * kMiB)};
  SupabaseOriginOptions options = Options();
  options.retry.max_attempts = 1;
  options.fault = recorder.Seam();
  auto origin = Make(options);
  const absl::Status down = origin->Put(key, source.Reader(), source.size(), "", nullptr);
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_THAT(down.message(), HasSubstr("chunk at byte 6291456 of 13631488"));
  const std::string upload_url = origin->PendingUploadUrl(key);
  ASSERT_FALSE(upload_url.empty());

  // The next Put goes on from the second chunk.
  Source again(source.data);
  MD_ASSERT_OK(origin->Put(key, again.Reader(), again.size(), "", nullptr));
  EXPECT_EQ(again.lowest, 6 * kMiB);
  EXPECT_EQ(recorder.Of("POST").size(), 1u);
  absl::Status status;
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, key, 0, -1, &status)), Sha256::HexOf(source.data));

  // An upload the server no longer has (expired, ended elsewhere): the next Put starts anew.
  const std::string other_key = key + ".2";
  recorder.fail_patch_at = {absl::StrCat(6 * kMiB)};
  EXPECT_EQ(origin->Put(other_key, source.Reader(), source.size(), "", nullptr).code(),
            absl::StatusCode::kUnavailable);
  http::HttpRequest terminate{.method = "DELETE", .url = origin->PendingUploadUrl(other_key)};
  terminate.headers = {{"Authorization", "Bearer " + server_->service_key()},
                       {"Tus-Resumable", "1.0.0"}};
  absl::StatusOr<http::HttpResponse> ended = http::Perform(terminate);
  ASSERT_TRUE(ended.ok()) << ended.status();
  ASSERT_EQ(ended->status, 204);
  Source third(source.data);
  MD_ASSERT_OK(origin->Put(other_key, third.Reader(), third.size(), "", nullptr));
  EXPECT_EQ(third.lowest, 0);
  EXPECT_EQ(recorder.Of("POST").size(), 3u);
  EXPECT_EQ(Sha256::HexOf(GetAll(*origin, other_key, 0, -1, &status)), Sha256::HexOf(source.data));
  MD_EXPECT_OK(status);
}

TEST_F(SupabaseOriginTest, ASourceFailingItsCheckLeavesNothingBehind) {
  auto origin = Make(Options());
  // Over TUS: the upload is ended on the server, not kept for a resume.
  Source large(testing::RandomBytes(13 * kMiB, 9));
  const absl::Status lost = origin->Put(
      "lost/large", large.Reader(7 * kMiB, absl::StatusCode::kDataLoss), large.size(), "", nullptr);
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_EQ(origin->PendingUploadUrl("lost/large"), "");
  EXPECT_FALSE(StandinUpload("lost/large").has_value());
  for (const testing::StandinTusUpload& upload : server_->TusUploads()) {
    EXPECT_NE(upload.name, "lost/large");
  }
  EXPECT_EQ(origin->Head("lost/large").status().code(), absl::StatusCode::kNotFound);

  // In one POST: the server never stores the half it got.
  Source small(testing::RandomBytes(2 * kMiB, 10));
  const absl::Status cut = origin->Put(
      "lost/small", small.Reader(kMiB, absl::StatusCode::kDataLoss), small.size(), "", nullptr);
  EXPECT_EQ(cut.code(), absl::StatusCode::kDataLoss) << cut;
  EXPECT_EQ(origin->Head("lost/small").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SupabaseOriginTest, SignedDeviceUrlsServeRangesAndExpire) {
  Source source(testing::RandomBytes(100000, 11));
  const std::string key = "prod/sha256/" + Sha256::HexOf(source.data);
  Recorder recorder;
  SupabaseOriginOptions options = Options();
  options.fault = recorder.Seam();
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  options.now = [now] { return now; };
  auto origin = Make(options);
  MD_ASSERT_OK(origin->Put(key, source.Reader(), source.size(), "", nullptr));

  absl::StatusOr<std::string> url = origin->DeviceUrl(key, absl::ToUnixSeconds(now) + 600);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(*url, ::testing::StartsWith(absl::StrCat(
                        server_->url(), "/storage/v1/object/sign/models/", key, "?token=")));
  // The request body, read back with a JSON parser: {"expiresIn": 600}.
  const std::vector<Recorder::Sent> posts = recorder.Of("POST");
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_EQ(posts[1].Header("Content-Type"), "application/json");
  const google::protobuf::Struct sent = ParseJsonObject(posts[1].body);
  ASSERT_EQ(sent.fields().size(), 1u) << posts[1].body;
  EXPECT_EQ(sent.fields().at("expiresIn").number_value(), 600);

  // A device's request: the URL and its own Range, no credentials.
  http::HttpRequest get{.url = *url};
  get.headers = {{"Range", "bytes=100-199"}};
  std::string body;
  absl::StatusOr<http::HttpResponse> answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 206);
  EXPECT_EQ(body, source.data.substr(100, 100));

  // The token is for this key only.
  Source other_bytes(testing::RandomBytes(10, 12));
  MD_ASSERT_OK(origin->Put("prod/other", other_bytes.Reader(), other_bytes.size(), "", nullptr));
  get.url = absl::StrReplaceAll(*url, {{key, "prod/other"}});
  ASSERT_NE(get.url, *url);
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 400);
  EXPECT_EQ(ParseJsonObject(answer->error_body).fields().at("code").string_value(),
            "InvalidSignature");

  // An expiry already past signs for the shortest time Supabase takes, 1 s, and then fails.
  absl::StatusOr<std::string> short_lived = origin->DeviceUrl(key, absl::ToUnixSeconds(now) - 5);
  ASSERT_TRUE(short_lived.ok()) << short_lived.status();
  EXPECT_EQ(
      ParseJsonObject(recorder.Of("POST").back().body).fields().at("expiresIn").number_value(), 1);
  absl::SleepFor(absl::Milliseconds(2100));
  get.url = *short_lived;
  answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 400);
  const google::protobuf::Struct expired = ParseJsonObject(answer->error_body);
  EXPECT_EQ(expired.fields().at("code").string_value(), "InvalidJWT");
  EXPECT_EQ(SupabaseError(*answer, "device").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SupabaseOriginTest, APublicBucketsDeviceUrlIsThePlainPublicUrl) {
  Source source(testing::RandomBytes(5000, 13));
  SupabaseOriginOptions options = Options();
  options.bucket = kPublicBucket;
  options.public_bucket = true;
  auto origin = Make(options);
  const std::string key = "prod/sha256/" + Sha256::HexOf(source.data);
  MD_ASSERT_OK(origin->Put(key, source.Reader(), source.size(), "", nullptr));
  absl::StatusOr<std::string> url = origin->DeviceUrl(key, 0);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(*url, absl::StrCat(server_->url(), "/storage/v1/object/public/public-models/", key));
  http::HttpRequest get{.url = *url};
  get.headers = {{"Range", "bytes=4000-"}};
  std::string body;
  absl::StatusOr<http::HttpResponse> answer = http::PerformToString(get, &body);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 206);
  EXPECT_EQ(body, source.data.substr(4000));
}

// Answers as Supabase sends them, through the one mapping every call uses.
TEST(SupabaseErrorTest, ReadsTheStatusFromTheBodyOrTheHttpStatus) {
  auto error = [](long status, const std::string& body) {
    http::HttpResponse response;
    response.status = status;
    response.error_body = body;
    return SupabaseError(response, "sb: GET http://h/storage/v1/object/b/k");
  };
  absl::Status status = error(400, R"({"statusCode":"404","code":"NoSuchKey","error":"not_found",)"
                                   R"("message":"Object not found"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            "sb: GET http://h/storage/v1/object/b/k answered HTTP 404 NoSuchKey: Object not found "
            "(sent as HTTP 400)");
  EXPECT_EQ(error(400, R"({"statusCode":"403","code":"AccessDenied","message":"x"})").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(error(400, R"({"statusCode":"401","error":"Unauthorized","message":"x"})").code(),
            absl::StatusCode::kPermissionDenied);
  // Older servers: no `code`, the error in `error`.
  status = error(400, R"({"statusCode":"404","error":"Bucket not found","message":"x"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("Bucket not found: x"));
  EXPECT_EQ(error(400, R"({"statusCode":"409","code":"KeyAlreadyExists","message":"x"})").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(error(500, R"({"statusCode":"500","code":"InternalError","message":"x"})").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(error(416, R"({"statusCode":"416","code":"InvalidRange","message":"x"})").code(),
            absl::StatusCode::kOutOfRange);
  // A number where Supabase sends a string is read too.
  EXPECT_EQ(error(400, R"({"statusCode":404,"code":"NoSuchKey"})").code(),
            absl::StatusCode::kNotFound);
  // TUS: the real status, the message as plain text.
  status = error(404, "The file for this url was not found\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("The file for this url was not found"));
  EXPECT_EQ(error(409, "Upload-Offset conflict\n").code(), absl::StatusCode::kFailedPrecondition);
  // No body (a HEAD): only the HTTP status is known.
  EXPECT_EQ(error(400, "").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorMetadataValue(error(400, ""), "http_status"), "400");
  // Not JSON, or JSON with a nonsense statusCode: the HTTP status stands.
  EXPECT_EQ(error(502, "<html>Bad gateway</html>").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error(400, R"({"statusCode":"ok"})").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SupabaseOriginCreateTest, RefusesUnusableOptions) {
  SupabaseOriginOptions options{
      .name = "sb", .url = "https://p.supabase.co/", .bucket = "b", .service_role_key = "k"};
  MD_EXPECT_OK(SupabaseOrigin::Create(options).status());
  for (auto change : std::vector<std::function<void(SupabaseOriginOptions&)>>{
           [](SupabaseOriginOptions& o) { o.url = "p.supabase.co"; },
           [](SupabaseOriginOptions& o) { o.url = "https://user:pw@p.supabase.co"; },
           [](SupabaseOriginOptions& o) { o.url = "https://p.supabase.co?x=1"; },
           [](SupabaseOriginOptions& o) { o.bucket = ""; },
           [](SupabaseOriginOptions& o) { o.bucket = "a/b"; },
           [](SupabaseOriginOptions& o) { o.service_role_key = ""; },
           [](SupabaseOriginOptions& o) { o.single_upload_limit = 7 * kMiB; },
       }) {
    SupabaseOriginOptions bad = options;
    change(bad);
    const absl::Status status = SupabaseOrigin::Create(bad).status();
    EXPECT_EQ(ErrorReason(status), "INVALID_ORIGINS_CONFIG") << status;
  }
}

// The server's factory turns a `supabase` entry of the origins file into a working origin,
// reading the service_role key from its 0600 file.
TEST_F(SupabaseOriginTest, TheFactoryBuildsAWorkingOriginFromASupabaseEntry) {
  const std::string key_file = dir_.Join("service_role.key");
  MD_ASSERT_OK(WriteFileAtomically(key_file, server_->service_key() + "\n", 0600));
  v1::Origin config;
  ASSERT_TRUE(
      google::protobuf::TextFormat::ParseFromString(absl::StrCat("name: \"supabase-from-file\"\n"
                                                                 "key_prefix: \"prod/\"\n"
                                                                 "replicate: true\n"
                                                                 "supabase {\n"
                                                                 "  url: \"",
                                                                 server_->url(),
                                                                 "\"\n"
                                                                 "  bucket: \"models\"\n"
                                                                 "  service_role_key { file: \"",
                                                                 key_file,
                                                                 "\" }\n"
                                                                 "}\n"),
                                                    &config));
  absl::StatusOr<std::unique_ptr<Origin>> origin = MakeOrigin(config);
  ASSERT_TRUE(origin.ok()) << origin.status();
  EXPECT_EQ((*origin)->name(), "supabase-from-file");
  Source source(testing::RandomBytes(2000, 14));
  MD_ASSERT_OK((*origin)->Put("factory/y", source.Reader(), source.size(), "", nullptr));
  absl::StatusOr<ObjectInfo> info = (*origin)->Head("factory/y");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 2000);
  absl::StatusOr<std::string> url =
      (*origin)->DeviceUrl("factory/y", absl::ToUnixSeconds(absl::Now()) + 60);
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<std::string> fetched = FetchWithHttp(*url, 10, 20);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, source.data.substr(10, 20));

  // A key file others can read stops the start, naming the field, never the key.
  ASSERT_EQ(::chmod(key_file.c_str(), 0644), 0);
  origin = MakeOrigin(config);
  EXPECT_EQ(ErrorReason(origin.status()), "SECRET_UNAVAILABLE") << origin.status();
  EXPECT_THAT(origin.status().message(), HasSubstr("supabase.service_role_key"));
  EXPECT_THAT(origin.status().message(), Not(HasSubstr(server_->service_key())));
}

}  // namespace
}  // namespace modeldist::origin
