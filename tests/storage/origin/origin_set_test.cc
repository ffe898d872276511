// OriginSet builds every configured origin or names the one that failed, and CheckOrigin runs
// its steps in order, stops at the first failure, still removes a stored probe, and catches a
// store that loses or changes bytes. The origin here is an in-memory fake with fault seams;
// s3_origin_test and the services tests run the check against a real store.
#include "storage/origin/origin_set.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/origin/memory_origin.h"

namespace modeldist::origin {
namespace {

using ::modeldist::testing::MemoryOrigin;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;

v1::Origin S3Entry(const std::string& name) {
  v1::Origin entry;
  entry.set_name(name);
  entry.set_key_prefix("models/");
  v1::S3Origin* s3 = entry.mutable_s3();
  s3->set_endpoint("http://127.0.0.1:1");
  s3->set_region("us-east-1");
  s3->set_bucket("b");
  s3->mutable_access_key_id()->set_env("UNUSED_KEY_ID");
  s3->mutable_secret_access_key()->set_env("UNUSED_SECRET");
  return entry;
}

struct Checked {
  std::vector<CheckStep> steps;
  MemoryOrigin* fake = nullptr;
};

// What a device gets from a MemoryOrigin's URL ("memory://<name>/<key>"): the stored bytes,
// or `device_bytes_flipped` changed in transit, as a broken CDN would.
UrlFetcher FetchFrom(MemoryOrigin* fake, bool device_bytes_flipped = false) {
  return [fake, device_bytes_flipped](const std::string& url, int64_t offset,
                                      int64_t length) -> absl::StatusOr<std::string> {
    const std::string prefix = "memory://" + fake->name() + "/";
    EXPECT_TRUE(absl::StartsWith(url, prefix)) << url;
    auto it = fake->objects.find(url.substr(prefix.size()));
    if (it == fake->objects.end()) {
      return MakeError(absl::StatusCode::kNotFound, "HTTP_NOT_FOUND", url);
    }
    std::string bytes = it->second.substr(static_cast<size_t>(offset), static_cast<size_t>(length));
    if (device_bytes_flipped) bytes[0] ^= 1;
    return bytes;
  };
}

// Runs CheckOrigin on a writable fake, set up by `arrange`.
Checked CheckWritable(const std::function<void(MemoryOrigin&)>& arrange,
                      bool device_bytes_flipped = false, bool hide_from_devices = false) {
  auto fake = std::make_unique<MemoryOrigin>("r2");
  arrange(*fake);
  Checked out;
  out.fake = fake.get();
  static std::vector<ConfiguredOrigin> keep;  // the fake outlives the check for inspection
  v1::Origin entry = S3Entry("r2");
  entry.set_hide_from_devices(hide_from_devices);
  keep.push_back(ConfiguredOrigin{entry, std::move(fake)});
  CheckOptions options{.probe_bytes = 4096, .fetch = FetchFrom(out.fake, device_bytes_flipped)};
  absl::StatusOr<std::vector<CheckStep>> steps = CheckOrigin(keep.back(), options);
  EXPECT_TRUE(steps.ok()) << steps.status();
  if (steps.ok()) out.steps = *steps;
  return out;
}

std::vector<std::string> Names(const std::vector<CheckStep>& steps) {
  std::vector<std::string> names;
  for (const CheckStep& s : steps) names.push_back(s.step + (s.status.ok() ? " ok" : " failed"));
  return names;
}

TEST(OriginSetTest, BuildsEveryOriginAndFindsThemByName) {
  v1::OriginsConfig config;
  *config.add_origins() = S3Entry("r2");
  *config.add_origins() = S3Entry("backup");
  absl::StatusOr<std::unique_ptr<OriginSet>> set =
      OriginSet::Build(config, [](const v1::Origin& entry) {
        return absl::StatusOr<std::unique_ptr<Origin>>(
            std::make_unique<MemoryOrigin>(entry.name()));
      });
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ((*set)->origins().size(), 2u);
  EXPECT_EQ((*set)->origins()[1].config.name(), "backup");
  ASSERT_NE((*set)->Find("backup"), nullptr);
  EXPECT_EQ((*set)->Find("backup")->origin->name(), "backup");
  EXPECT_EQ((*set)->Find("nope"), nullptr);
}

TEST(OriginSetTest, ABuildFailureNamesTheOriginAndStopsTheStart) {
  v1::OriginsConfig config;
  *config.add_origins() = S3Entry("r2");
  *config.add_origins() = S3Entry("backup");
  absl::StatusOr<std::unique_ptr<OriginSet>> set = OriginSet::Build(
      config, [](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<Origin>> {
        if (entry.name() == "backup") {
          return MakeError(absl::StatusCode::kFailedPrecondition, "SECRET_UNAVAILABLE",
                           "environment variable UNUSED_SECRET is not set");
        }
        return std::make_unique<MemoryOrigin>(entry.name());
      });
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(set.status().message(), HasSubstr("origins[1] (backup)"));
  EXPECT_EQ(ErrorReason(set.status()), "SECRET_UNAVAILABLE");
}

TEST(OriginSetTest, BuildValidatesTheConfigFirst) {
  v1::OriginsConfig config;
  *config.add_origins() = S3Entry("r2");
  *config.add_origins() = S3Entry("r2");
  int built = 0;
  absl::StatusOr<std::unique_ptr<OriginSet>> set =
      OriginSet::Build(config, [&](const v1::Origin& entry) {
        ++built;
        return absl::StatusOr<std::unique_ptr<Origin>>(
            std::make_unique<MemoryOrigin>(entry.name()));
      });
  EXPECT_EQ(ErrorReason(set.status()), "INVALID_ORIGINS_CONFIG");
  EXPECT_EQ(built, 0);
}

TEST(CheckOriginTest, AGoodStorePassesEveryStepAndKeepsNothing) {
  Checked c = CheckWritable([](MemoryOrigin&) {});
  EXPECT_THAT(Names(c.steps),
              ElementsAre("put ok", "head ok", "get ok", "device-url ok", "delete ok"));
  EXPECT_TRUE(c.fake->objects.empty());
  EXPECT_TRUE(absl::StartsWith(c.steps[0].key, "models/modeldist-check/")) << c.steps[0].key;
}

TEST(CheckOriginTest, BytesChangedOnTheWayToDevicesFailTheDeviceUrl) {
  Checked c = CheckWritable([](MemoryOrigin&) {}, /*device_bytes_flipped=*/true);
  EXPECT_THAT(Names(c.steps),
              ElementsAre("put ok", "head ok", "get ok", "device-url failed", "delete ok"));
  EXPECT_EQ(ErrorReason(c.steps[3].status), "ORIGIN_PROBE_MISMATCH");
}

TEST(CheckOriginTest, AnOriginHiddenFromDevicesHasNoDeviceUrlStep) {
  Checked c = CheckWritable([](MemoryOrigin&) {}, false, /*hide_from_devices=*/true);
  EXPECT_THAT(Names(c.steps), ElementsAre("put ok", "head ok", "get ok", "delete ok"));
}

TEST(CheckOriginTest, RefusedCredentialsStopAtPutWithTheStoresError) {
  Checked c = CheckWritable([](MemoryOrigin& o) {
    o.put_error = MakeError(absl::StatusCode::kPermissionDenied, "HTTP_FORBIDDEN",
                            "r2: PUT: HTTP 403 (SignatureDoesNotMatch)");
  });
  ASSERT_THAT(Names(c.steps), ElementsAre("put failed"));
  EXPECT_EQ(c.steps[0].status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(c.fake->deletes, 0);  // nothing was stored, nothing to remove
}

TEST(CheckOriginTest, AWrongSizeFailsHeadAndTheProbeIsStillRemoved) {
  Checked c = CheckWritable([](MemoryOrigin& o) { o.size_skew = -1; });
  EXPECT_THAT(Names(c.steps), ElementsAre("put ok", "head failed", "delete ok"));
  EXPECT_EQ(ErrorReason(c.steps[1].status), "ORIGIN_PROBE_MISMATCH");
  EXPECT_TRUE(c.fake->objects.empty());
}

TEST(CheckOriginTest, ChangedBytesFailGet) {
  Checked c = CheckWritable([](MemoryOrigin& o) { o.flip_stored_byte = true; });
  EXPECT_THAT(Names(c.steps), ElementsAre("put ok", "head ok", "get failed", "delete ok"));
  EXPECT_EQ(c.steps[2].status.code(), absl::StatusCode::kDataLoss);
}

TEST(CheckOriginTest, ADeleteThatKeepsTheObjectFails) {
  Checked c = CheckWritable([](MemoryOrigin& o) { o.ignore_delete = true; });
  EXPECT_THAT(Names(c.steps),
              ElementsAre("put ok", "head ok", "get ok", "device-url ok", "delete failed"));
  EXPECT_THAT(c.steps[4].status.message(), HasSubstr("still there"));
}

TEST(CheckOriginTest, AReadOnlyOriginPassesWhenItAnswersEvenNotFound) {
  v1::Origin entry;
  entry.set_name("cdn");
  entry.mutable_http()->set_base_url("https://models.example.com");
  auto fake = std::make_unique<MemoryOrigin>("cdn");
  MemoryOrigin* raw = fake.get();
  ConfiguredOrigin configured{entry, std::move(fake)};

  absl::StatusOr<std::vector<CheckStep>> steps = CheckOrigin(configured);
  ASSERT_TRUE(steps.ok()) << steps.status();
  EXPECT_THAT(Names(*steps), ElementsAre("head ok"));
  EXPECT_TRUE(raw->objects.empty());  // nothing is ever written to a read-only origin

  raw->head_error =
      MakeError(absl::StatusCode::kUnavailable, "HTTP_TRANSPORT_FAILED", "cdn: connection refused");
  steps = CheckOrigin(configured);
  ASSERT_TRUE(steps.ok()) << steps.status();
  EXPECT_THAT(Names(*steps), ElementsAre("head failed"));
  EXPECT_THAT(*steps, ElementsAre(Field(&CheckStep::key, HasSubstr("modeldist-check/"))));
}

}  // namespace
}  // namespace modeldist::origin
