// The Replicator (services/replicator.h) on its own parts: a real catalog and blob store on a
// scratch folder and a clock the test moves; origins that are MemoryOrigins (fault seams), and
// then a real store (Swift's S3 API on loopback: multipart, damage mid-part). At the end, its
// wiring into the server (a publish wakes it, GetVersion shows the rows); the binaries, kill -9
// included, are in ctl_e2e_origins_test.
#include "services/replicator.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "services/mirror_urls.h"
#include "services/origin_repair.h"
#include "storage/blob_record.h"
#include "storage/origin/origin_factory.h"
#include "storage/origin/s3_origin.h"
#include "storage/served_bytes_check.h"
#include "tests/services/replicator_fixture.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/error_contract.h"
#include "tests/testing/swift_s3_server.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMiB = 1 << 20;

TEST_F(ReplicatorTest, CopiesEveryPublishedBlobToEachReplicatingOriginAndConfirmsIt) {
  EXPECT_THAT(replicator_->origin_names(), ::testing::ElementsAre("r2", "backup"));
  const std::string a = RandomBytes(9 * kMiB + 7, 1);  // three chain chunks
  const std::string b = RandomBytes(1000, 2);
  const std::string hex_a = Publish("1", a);
  const std::string hex_b = Publish("2", b);

  EXPECT_EQ(RunOnce(), 4);
  EXPECT_TRUE(fakes_["r2"]->objects["prod/sha256/" + hex_a] == a);
  EXPECT_TRUE(fakes_["r2"]->objects["prod/sha256/" + hex_b] == b);
  EXPECT_TRUE(fakes_["backup"]->objects["sha256/" + hex_a] == a);
  EXPECT_TRUE(fakes_["backup"]->objects["sha256/" + hex_b] == b);
  EXPECT_THAT(fakes_["cold"]->objects, IsEmpty());
  for (const auto& [origin, row] : Rows(hex_a)) {
    EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << origin;
    EXPECT_EQ(row.bytes_done(), static_cast<int64_t>(a.size())) << origin;
    EXPECT_EQ(row.attempts(), 0) << origin;
    EXPECT_EQ(row.last_error(), "") << origin;
  }
  EXPECT_EQ(Rows(hex_a).size(), 2u);

  // Confirmed copies are not made again; a version published later is.
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(fakes_["r2"]->puts, 2);
  Publish("3", RandomBytes(10, 3));
  EXPECT_EQ(RunOnce(), 2);
  EXPECT_EQ(fakes_["r2"]->puts, 3);
}

TEST_F(ReplicatorTest, AFailedCopyWaitsItsBackoffAndSucceedsOnALaterAttempt) {
  const std::string bytes = RandomBytes(5000, 4);
  const std::string hex = Publish("1", bytes);
  fakes_["r2"]->put_error =
      MakeError(absl::StatusCode::kUnavailable, "HTTP_SERVICE_UNAVAILABLE", "r2: PUT got 503");

  EXPECT_EQ(RunOnce(), 2);
  v1::Replica row = Rows(hex)["r2"];
  EXPECT_EQ(row.state(), v1::Replica::FAILING);
  EXPECT_EQ(row.attempts(), 1);
  EXPECT_EQ(row.last_error(), "UNAVAILABLE: r2: PUT got 503");
  // The policy's first backoff (5 s, no jitter here).
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(row.next_attempt_time()),
            absl::ToUnixMicros(Now() + absl::Seconds(5)));
  EXPECT_EQ(Rows(hex)["backup"].state(), v1::Replica::CONFIRMED);

  // Not before its time; then twice the wait after a second failure.
  EXPECT_EQ(RunOnce(), 0);
  Advance(absl::Seconds(5));
  EXPECT_EQ(RunOnce(), 1);
  row = Rows(hex)["r2"];
  EXPECT_EQ(row.attempts(), 2);
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(row.next_attempt_time()),
            absl::ToUnixMicros(Now() + absl::Seconds(10)));

  fakes_["r2"]->put_error = absl::OkStatus();
  Advance(absl::Seconds(10));
  EXPECT_EQ(RunOnce(), 1);
  row = Rows(hex)["r2"];
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED);
  EXPECT_EQ(row.attempts(), 0);
  EXPECT_EQ(row.last_error(), "");
  EXPECT_TRUE(fakes_["r2"]->objects["prod/sha256/" + hex] == bytes);
}

TEST_F(ReplicatorTest, ACopyTheOriginReportsWrongIsNotConfirmed) {
  const std::string hex = Publish("1", RandomBytes(5000, 5));
  fakes_["r2"]->size_skew = 1;
  EXPECT_EQ(RunOnce(), 2);
  const v1::Replica row = Rows(hex)["r2"];
  EXPECT_EQ(row.state(), v1::Replica::FAILING);
  EXPECT_THAT(row.last_error(), HasSubstr("reports 5001 bytes"));
  EXPECT_EQ(Rows(hex)["backup"].state(), v1::Replica::CONFIRMED);
}

TEST_F(ReplicatorTest, DamagedBytesNeverLeaveAndTheBlobIsQuarantined) {
  const std::string bytes = RandomBytes(3 * storage::kChunkDigestBytes + 100, 6);
  const std::string hex = Publish("1", bytes);
  // One bit of the last chunk rots on the disk: the first three chunks go out, the last does
  // not, so the origin never has a complete copy.
  Rot(hex, static_cast<int64_t>(bytes.size()) - 10);

  EXPECT_EQ(RunOnce(), 2);
  for (const char* name : {"r2", "backup"}) {
    EXPECT_THAT(fakes_[name]->objects, IsEmpty()) << name;
    EXPECT_EQ(Rows(hex)[name].state(), v1::Replica::FAILING) << name;
  }
  // The first copy (rows go by digest, then origin) found the damage; the second the blob
  // already quarantined.
  EXPECT_THAT(Rows(hex)["backup"].last_error(), HasSubstr("DATA_LOSS"));
  EXPECT_THAT(Rows(hex)["r2"].last_error(), HasSubstr("quarantined"));
  // Reported once, like any damage: quarantined (gone from the store) and recorded.
  EXPECT_FALSE(blobs_->Contains(hex));
  absl::StatusOr<std::vector<storage::DamagedBlob>> damaged = catalog_->ListDamagedBlobs();
  ASSERT_TRUE(damaged.ok());
  ASSERT_EQ(damaged->size(), 1u);
  EXPECT_EQ((*damaged)[0].digest, "sha256:" + hex);

  // Later attempts find the blob gone and still copy nothing.
  Advance(absl::Hours(1));
  EXPECT_EQ(RunOnce(), 2);
  EXPECT_THAT(fakes_["r2"]->objects, IsEmpty());
  EXPECT_EQ(Rows(hex)["r2"].attempts(), 2);
}

TEST_F(ReplicatorTest, ACopyCutOffByACrashIsDoneByTheNextProcess) {
  const std::string bytes = RandomBytes(5000, 7);
  const std::string hex = Publish("1", bytes);
  // What a kill -9 mid-copy leaves: the rows queued, one of them COPYING.
  ASSERT_TRUE(catalog_->QueueReplicas({"r2", "backup"}).ok());
  storage::ReplicaRow copying;
  copying.digest = "sha256:" + hex;
  copying.replica.set_origin("r2");
  copying.replica.set_state(v1::Replica::COPYING);
  copying.replica.set_bytes_done(4096);
  *copying.replica.mutable_next_attempt_time() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(Now()));
  ASSERT_TRUE(catalog_->UpdateReplica(copying).ok());

  replicator_ = MakeReplicator();  // the next process
  EXPECT_EQ(RunOnce(), 2);
  EXPECT_EQ(Rows(hex)["r2"].state(), v1::Replica::CONFIRMED);
  EXPECT_TRUE(fakes_["r2"]->objects["prod/sha256/" + hex] == bytes);
}

TEST_F(ReplicatorTest, AShutdownMidCopyLeavesTheRowDueWithoutCountingAFailure) {
  const std::string bytes = RandomBytes(3 * kMiB, 13);
  const std::string hex = Publish("1", bytes);
  // The server stops while the first copy has sent 1 MiB.
  fakes_["backup"]->before_read = [this](int64_t offset) {
    if (offset == kMiB) replicator_->Stop();
  };
  EXPECT_EQ(RunOnce(), 1);  // the round ends with the stop
  v1::Replica row = Rows(hex)["backup"];
  EXPECT_EQ(row.state(), v1::Replica::PENDING);
  EXPECT_EQ(row.attempts(), 0);
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(row.next_attempt_time()), absl::ToUnixMicros(Now()));
  EXPECT_THAT(fakes_["backup"]->objects, IsEmpty());
  EXPECT_EQ(Rows(hex)["r2"].state(), v1::Replica::PENDING);  // not started

  fakes_["backup"]->before_read = nullptr;
  replicator_ = MakeReplicator();  // the next start
  EXPECT_EQ(RunOnce(), 2);
  EXPECT_EQ(Rows(hex)["backup"].state(), v1::Replica::CONFIRMED);
  EXPECT_TRUE(fakes_["backup"]->objects["sha256/" + hex] == bytes);
}

TEST_F(ReplicatorTest, RowsOfAnOriginNoLongerConfiguredAreLeftAlone) {
  const std::string hex = Publish("1", RandomBytes(100, 8));
  ASSERT_TRUE(catalog_->QueueReplicas({"gone"}).ok());
  EXPECT_EQ(RunOnce(), 2);  // r2 and backup only
  EXPECT_EQ(Rows(hex)["gone"].state(), v1::Replica::PENDING);
}

// MirrorUrls (services/mirror_urls.h): what GetManifest adds for devices, from the copies the
// replicator confirmed.
TEST_F(ReplicatorTest, MirrorsAreTheConfirmedCopiesDevicesMayUseInTheFilesOrder) {
  const std::string hex = Publish("1", RandomBytes(5000, 12));
  const std::string digest = "sha256:" + hex;
  services::MirrorUrls mirrors(catalog_.get(), origins_.get());
  const absl::Time expires = Now() + absl::Hours(24);
  EXPECT_THAT(mirrors.For(digest, expires), IsEmpty());  // nothing confirmed yet

  fakes_["r2"]->put_error = MakeError(absl::StatusCode::kUnavailable, "TEST", "down");
  EXPECT_EQ(RunOnce(), 2);  // backup confirmed, r2 failing
  ASSERT_TRUE(mirrors.Refresh().ok());
  EXPECT_THAT(mirrors.For(digest, expires),
              ::testing::ElementsAre("memory://backup/sha256/" + hex));

  fakes_["r2"]->put_error = absl::OkStatus();
  Advance(absl::Seconds(5));
  EXPECT_EQ(RunOnce(), 1);
  ASSERT_TRUE(mirrors.Refresh().ok());
  // The file's order: r2 before backup.
  EXPECT_THAT(
      mirrors.For(digest, expires),
      ::testing::ElementsAre("memory://r2/prod/sha256/" + hex, "memory://backup/sha256/" + hex));
  // Made once per expiry, whatever the number of devices asking.
  const int made = fakes_["r2"]->device_urls;
  for (int i = 0; i < 3; ++i) mirrors.For(digest, expires);
  EXPECT_EQ(fakes_["r2"]->device_urls, made);
  mirrors.For(digest, expires + absl::Hours(1));
  EXPECT_EQ(fakes_["r2"]->device_urls, made + 1);
  // An origin that cannot make a URL is left out; the device keeps the server.
  fakes_["r2"]->device_url_error = MakeError(absl::StatusCode::kInternal, "TEST", "no key");
  EXPECT_THAT(mirrors.For(digest, expires + absl::Hours(2)),
              ::testing::ElementsAre("memory://backup/sha256/" + hex));
  EXPECT_THAT(mirrors.For("sha256:" + std::string(64, 'f'), expires), IsEmpty());
}

// OriginRepair (services/origin_repair.h): a damaged blob fetched back from its replicas.
TEST_F(ReplicatorTest, ADamagedBlobIsFetchedBackFromTheFirstReplicaThatHasTheRightBytes) {
  const std::string bytes = RandomBytes(9 * kMiB + 7, 14);
  const std::string hex = Publish("1", bytes);
  EXPECT_EQ(RunOnce(), 2);  // confirmed on r2 and backup
  services::OriginRepair repair(catalog_.get(), blobs_.get(), health_.get(), origins_.get());
  EXPECT_THAT(repair.RunOnce(), IsOkAndHolds(0));  // nothing damaged

  // The local copy rots and a check finds it: quarantined and recorded.
  Rot(hex, 5 * kMiB);
  EXPECT_TRUE(health_->Report(hex, blobs_->Verify(hex)));
  ASSERT_FALSE(blobs_->Contains(hex));
  // r2, first in the file, holds a bad copy too (an origin is never trusted with bytes).
  fakes_["r2"]->objects["prod/sha256/" + hex][100] ^= 1;

  EXPECT_THAT(repair.RunOnce(), IsOkAndHolds(1));
  ASSERT_TRUE(blobs_->Contains(hex));
  MD_EXPECT_OK(blobs_->Verify(hex));
  absl::StatusOr<std::vector<storage::DamagedBlob>> damaged = catalog_->ListDamagedBlobs();
  ASSERT_TRUE(damaged.ok());
  EXPECT_THAT(*damaged, IsEmpty());
  // The chain was computed again from the fetched bytes: reads are checked against it.
  absl::StatusOr<storage::BlobReader> reader = blobs_->OpenBlob(hex);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string back(bytes.size(), '\0');
  storage::CheckedBlobReads checked(&*reader);
  for (size_t done = 0; done < back.size();) {
    absl::StatusOr<size_t> got =
        checked.ReadAt(static_cast<int64_t>(done), back.data() + done, back.size() - done);
    ASSERT_TRUE(got.ok()) << got.status();
    done += *got;
  }
  EXPECT_TRUE(back == bytes);
}

TEST_F(ReplicatorTest, ADamagedBlobWithoutAConfirmedReplicaStaysDamaged) {
  const std::string hex = Publish("1", RandomBytes(5000, 15));
  services::OriginRepair repair(catalog_.get(), blobs_.get(), health_.get(), origins_.get());
  Rot(hex, 100);
  EXPECT_TRUE(health_->Report(hex, blobs_->Verify(hex)));
  EXPECT_THAT(repair.Repair(hex), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no origin")));
  EXPECT_THAT(repair.RunOnce(), IsOkAndHolds(0));
  EXPECT_FALSE(blobs_->Contains(hex));

  // Once a copy is confirmed somewhere (here: the replicator finds the blob gone, so it is
  // put on the origins by hand, as an operator restoring a backup would, and confirmed),
  // the next pass repairs it.
  const std::string bytes = RandomBytes(5000, 15);
  fakes_["backup"]->objects["sha256/" + hex] = bytes;
  ASSERT_TRUE(catalog_->QueueReplicas({"backup"}).ok());
  storage::ReplicaRow row;
  row.digest = "sha256:" + hex;
  row.replica.set_origin("backup");
  row.replica.set_state(v1::Replica::CONFIRMED);
  ASSERT_TRUE(catalog_->UpdateReplica(row).ok());
  EXPECT_THAT(repair.RunOnce(), IsOkAndHolds(1));
  EXPECT_TRUE(blobs_->Contains(hex));
}

TEST_F(ReplicatorSwiftTest, AMultipartCopyIsStoredWholeAndConfirmed) {
  const std::string bytes = RandomBytes(13 * kMiB + 5, 10);  // 3 parts, 4 chunks
  const std::string hex = Publish("1", bytes);
  EXPECT_EQ(RunOnce(), 1);
  const v1::Replica row = Rows(hex)["swift"];
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << row.last_error();
  EXPECT_EQ(row.bytes_done(), static_cast<int64_t>(bytes.size()));
  EXPECT_TRUE(swift_->GetObject("models", "sha256/" + hex) == bytes);
}

TEST_F(ReplicatorSwiftTest, ARottenChunkInsideAPartStopsTheUploadAndLeavesNothing) {
  const std::string bytes = RandomBytes(13 * kMiB + 5, 11);
  const std::string hex = Publish("1", bytes);
  // Chunk 1 is [4, 8) MiB: its first MiB goes up with part 1 ([0, 5) MiB), unchecked yet; the
  // rot at 6 MiB is found when part 2 reaches the chunk's end, before its last byte is out.
  Rot(hex, 6 * kMiB);
  EXPECT_EQ(RunOnce(), 1);
  const v1::Replica row = Rows(hex)["swift"];
  EXPECT_EQ(row.state(), v1::Replica::FAILING);
  EXPECT_THAT(row.last_error(), HasSubstr("DATA_LOSS"));
  // No object, and the multipart upload was aborted (another attempt cannot fix the bytes).
  absl::StatusOr<origin::ObjectInfo> head = Store().Head("sha256/" + hex);
  EXPECT_TRUE(absl::IsNotFound(head.status())) << head.status();
  absl::StatusOr<std::vector<origin::PendingUpload>> pending = Store().PendingUploads("sha256/");
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_THAT(*pending, IsEmpty());
  EXPECT_FALSE(blobs_->Contains(hex));  // quarantined
}

// A TestServer whose origins file is kOrigins, built from MemoryOrigins (in `fakes`).
std::unique_ptr<TestServer> ServerWithFakes(const ScratchDir& dir, Fakes* fakes) {
  const std::string file = dir.Join("origins.textproto");
  EXPECT_TRUE(WriteFileAtomically(file, kOrigins, 0600).ok());
  services::ServerConfig config;
  config.origins_file = file;
  config.origin_factory = FakeFactory(fakes);
  return std::make_unique<TestServer>(config);
}

// The server: a publish wakes the replicator's thread, and GetVersion shows the rows; a blob
// damaged on disk comes back from the replica without anyone publishing it again.
TEST(ReplicationServerTest, APublishedVersionIsCopiedAndGetVersionShowsIt) {
  ScratchDir dir;
  Fakes fakes;
  std::unique_ptr<TestServer> started = ServerWithFakes(dir, &fakes);
  TestServer& server = *started;

  const std::string bytes = RandomBytes(2 * kMiB, 9);
  server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);

  v1::GetVersionRequest request;
  request.set_name("models/m/versions/1");
  v1::Version version;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool confirmed = false;
  while (!confirmed && absl::Now() < deadline) {
    ASSERT_TRUE(server.registry().GetVersion(server.Admin().get(), request, &version).ok());
    ASSERT_EQ(version.artifacts_size(), 1);
    confirmed = version.artifacts(0).replicas_size() == 2;
    for (const v1::Replica& r : version.artifacts(0).replicas()) {
      confirmed = confirmed && r.state() == v1::Replica::CONFIRMED;
    }
    if (!confirmed) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(confirmed) << version.DebugString();
  EXPECT_EQ(version.artifacts(0).replicas(0).origin(), "backup");
  EXPECT_EQ(version.artifacts(0).replicas(1).origin(), "r2");
  EXPECT_EQ(version.artifacts(0).replicas(1).bytes_done(), 2 * kMiB);

  server.SetTier("t", "stable", "models/m/versions/1");
  const std::string digest = version.artifacts(0).digest();
  const std::string hex = digest.substr(7);
  DamageFile(absl::StrCat(server.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex),
             FileDamage::kFlip, kMiB + 3);
  std::string got;
  EXPECT_EQ(server.ReadBlob(digest, &got).error_code(), grpc::StatusCode::DATA_LOSS);
  // Repaired in the background: the manifest and the bytes come back.
  bool repaired = false;
  for (absl::Time until = absl::Now() + absl::Seconds(30); !repaired && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(20))) {
    repaired = server.GetManifest("t", v1::PLATFORM_LINUX, v1::ARCH_X86_64).ok();
  }
  ASSERT_TRUE(repaired);
  got.clear();
  ASSERT_TRUE(server.ReadBlob(digest, &got).ok());
  EXPECT_TRUE(got == bytes);
}

// A model's and a version's replicate_to: a version is copied only to the origins it (or
// else its model) asks for, and a name that is not a replicating origin is refused with the
// field named.
TEST(ReplicationServerTest, AVersionIsCopiedOnlyToTheOriginsItsModelOrItAsksFor) {
  ScratchDir dir;
  Fakes fakes;
  std::unique_ptr<TestServer> started = ServerWithFakes(dir, &fakes);
  TestServer& server = *started;

  v1::CreateModelRequest create_model;
  create_model.set_model_id("m");
  create_model.mutable_model()->add_replicate_to("backup");
  v1::Model model;
  ASSERT_TRUE(server.registry().CreateModel(server.Admin().get(), create_model, &model).ok());
  EXPECT_THAT(model.replicate_to(), ::testing::ElementsAre("backup"));
  const std::string bytes = RandomBytes(kMiB + 1, 12);
  const std::string digest =
      server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
  v1::GetVersionRequest get;
  get.set_name("models/m/versions/1");
  v1::Version version;
  bool confirmed = false;
  for (absl::Time until = absl::Now() + absl::Seconds(30); !confirmed && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(20))) {
    ASSERT_TRUE(server.registry().GetVersion(server.Admin().get(), get, &version).ok());
    confirmed = version.artifacts(0).replicas_size() == 1 &&
                version.artifacts(0).replicas(0).state() == v1::Replica::CONFIRMED;
  }
  ASSERT_TRUE(confirmed) << version.DebugString();
  EXPECT_EQ(version.artifacts(0).replicas(0).origin(), "backup");
  EXPECT_TRUE(fakes["r2"]->objects.empty());
  EXPECT_EQ(fakes["backup"]->objects.size(), 1u);

  struct Bad {
    std::vector<std::string> names;
    std::string field;
  } cases[] = {
      {{"cold"}, "replicate_to[0]"},        // configured, but does not replicate
      {{"r2", "nope"}, "replicate_to[1]"},  // not configured
      {{"r2", "r2"}, "replicate_to[1]"},    // twice
      {std::vector<std::string>(17, "r2"), "replicate_to"},
  };
  for (const Bad& bad : cases) {
    v1::CreateVersionRequest request;
    request.set_parent("models/m");
    request.set_version_id("2");
    *request.add_artifacts() =
        MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, "other bytes");
    for (const std::string& name : bad.names) request.add_replicate_to(name);
    v1::Version created;
    const grpc::Status status =
        server.registry().CreateVersion(server.Admin().get(), request, &created);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.field;
    EXPECT_EQ(ReasonOf(status), "INVALID_REPLICATE_TO") << bad.field;
    EXPECT_THAT(status.error_message(), HasSubstr(bad.field)) << status.error_message();
  }
  create_model.set_model_id("n");
  create_model.mutable_model()->set_replicate_to(0, "web");
  const grpc::Status refused =
      server.registry().CreateModel(server.Admin().get(), create_model, &model);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("model.replicate_to[0]"));
  EXPECT_THAT(refused.error_message(), HasSubstr("r2, backup"));  // what it could have named
}

}  // namespace
}  // namespace modeldist::testing
