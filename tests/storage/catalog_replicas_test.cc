// Tests of the replication queue (storage/catalog_replicas.cc).
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

using google::protobuf::util::TimeUtil;

std::vector<std::string> Keys(const std::vector<ReplicaRow>& rows) {
  std::vector<std::string> keys;
  for (const ReplicaRow& r : rows) keys.push_back(r.digest.substr(7, 1) + "@" + r.replica.origin());
  return keys;
}

TEST_F(CatalogTest, QueuesEveryPublishedDigestOncePerOrigin) {
  Published("llama", "v1", 'a');
  Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->CreateModel("qwen", ""), IsOk());
  // A draft's blobs are not copied: devices cannot be sent to them yet.
  ASSERT_THAT(catalog_->CreateVersion({"qwen", "draft"}, {MacArtifact(Digest('c'), 1)}), IsOk());

  EXPECT_THAT(catalog_->QueueReplicas({"r2", "swift"}), IsOkAndHolds(4));
  // A second sweep changes nothing: rows are queued once.
  EXPECT_THAT(catalog_->QueueReplicas({"r2", "swift"}), IsOkAndHolds(0));

  absl::StatusOr<std::vector<ReplicaRow>> due = catalog_->DueReplicas({"r2", "swift"}, now_, 10);
  ASSERT_THAT(due, IsOk());
  EXPECT_THAT(Keys(*due), ElementsAre("a@r2", "a@swift", "b@r2", "b@swift"));
  // Only the origins asked for: a replicator works on the origins it has.
  due = catalog_->DueReplicas({"swift", "gone"}, now_, 10);
  ASSERT_THAT(due, IsOk());
  EXPECT_THAT(Keys(*due), ElementsAre("a@swift", "b@swift"));
  for (const ReplicaRow& row : *due) {
    EXPECT_EQ(row.replica.state(), v1::Replica::PENDING);
    EXPECT_EQ(row.replica.attempts(), 0);
    EXPECT_EQ(TimeUtil::TimestampToMicroseconds(row.replica.next_attempt_time()), kT0);
  }
  EXPECT_THAT(catalog_->DueReplicas({"r2", "swift"}, now_, 1), IsOkAndHolds(::testing::SizeIs(1)));

  // A version published later is queued by the next sweep.
  Published("qwen", "v1", 'd');
  EXPECT_THAT(catalog_->QueueReplicas({"r2", "swift"}), IsOkAndHolds(2));
}

// Which origins a digest is queued for: the version's replicate_to, else its model's, else
// every origin the replicator has; the lists round-trip through GetModel and GetVersion.
TEST_F(CatalogTest, RowsAreQueuedOnlyForTheOriginsAVersionOrItsModelAsksFor) {
  ASSERT_THAT(catalog_->CreateModel("llama", "", kDefaultActor, {"swift"}), IsOk());
  ASSERT_THAT(catalog_->CreateModel("qwen", ""), IsOk());
  const VersionName model_default{"llama", "v1"};
  const VersionName own_choice{"llama", "v2"};
  const VersionName everywhere{"qwen", "v1"};
  ASSERT_THAT(catalog_->CreateVersion(model_default, {MacArtifact(Digest('a'), 1)}), IsOk());
  ASSERT_THAT(catalog_->CreateVersion(own_choice, {MacArtifact(Digest('b'), 1)}, kDefaultActor,
                                      {"r2", "backup"}),
              IsOk());
  ASSERT_THAT(catalog_->CreateVersion(everywhere, {MacArtifact(Digest('c'), 1)}), IsOk());
  for (const VersionName& name : {model_default, own_choice, everywhere}) {
    ASSERT_THAT(catalog_->PublishVersion(name, Uploaded), IsOk());
  }

  EXPECT_THAT(catalog_->QueueReplicas({"r2", "swift", "backup"}), IsOkAndHolds(6));
  absl::StatusOr<std::vector<ReplicaRow>> due =
      catalog_->DueReplicas({"r2", "swift", "backup"}, now_, 20);
  ASSERT_THAT(due, IsOk());
  EXPECT_THAT(Keys(*due),
              ElementsAre("a@swift", "b@backup", "b@r2", "c@backup", "c@r2", "c@swift"));

  absl::StatusOr<v1::Model> llama = catalog_->GetModel("llama");
  ASSERT_THAT(llama, IsOk());
  EXPECT_THAT(llama->replicate_to(), ElementsAre("swift"));
  absl::StatusOr<v1::Version> v2 = catalog_->GetVersion(own_choice);
  ASSERT_THAT(v2, IsOk());
  EXPECT_THAT(v2->replicate_to(), ElementsAre("r2", "backup"));
  absl::StatusOr<v1::Version> v1 = catalog_->GetVersion(model_default);
  ASSERT_THAT(v1, IsOk());
  EXPECT_TRUE(v1->replicate_to().empty());
}

TEST_F(CatalogTest, FailedRowsWaitForTheirNextAttemptAndConfirmedOnesLeaveTheQueue) {
  Published("llama", "v1", 'a');
  Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->QueueReplicas({"r2"}), IsOkAndHolds(2));
  EXPECT_THAT(catalog_->NextReplicaAttempt({"r2"}),
              IsOkAndHolds(std::optional<absl::Time>(absl::FromUnixMicros(kT0))));

  absl::StatusOr<std::vector<ReplicaRow>> due = catalog_->DueReplicas({"r2"}, now_, 10);
  ASSERT_THAT(due, IsOk());
  ASSERT_EQ(due->size(), 2u);
  ReplicaRow failed = (*due)[0];
  failed.replica.set_state(v1::Replica::FAILING);
  failed.replica.set_attempts(1);
  failed.replica.set_bytes_done(5);
  failed.replica.set_last_error("UNAVAILABLE: r2: PUT answered 503");
  *failed.replica.mutable_next_attempt_time() = TimeUtil::MicrosecondsToTimestamp(kT0 + 60'000'000);
  ASSERT_THAT(catalog_->UpdateReplica(failed), IsOk());
  ReplicaRow confirmed = (*due)[1];
  confirmed.replica.set_state(v1::Replica::CONFIRMED);
  confirmed.replica.set_bytes_done(1);
  ASSERT_THAT(catalog_->UpdateReplica(confirmed), IsOk());

  // Nothing is due until the failed row's time comes; the confirmed one never is again.
  EXPECT_THAT(catalog_->DueReplicas({"r2"}, now_, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(catalog_->NextReplicaAttempt({"r2"}),
              IsOkAndHolds(std::optional<absl::Time>(absl::FromUnixMicros(kT0 + 60'000'000))));
  Advance(absl::Seconds(60));
  due = catalog_->DueReplicas({"r2"}, now_, 10);
  ASSERT_THAT(due, IsOk());
  ASSERT_THAT(Keys(*due), ElementsAre("a@r2"));
  EXPECT_EQ((*due)[0].replica.state(), v1::Replica::FAILING);
  EXPECT_EQ((*due)[0].replica.attempts(), 1);
  EXPECT_EQ((*due)[0].replica.bytes_done(), 5);
  EXPECT_EQ((*due)[0].replica.last_error(), "UNAVAILABLE: r2: PUT answered 503");

  // What GetVersion shows, per digest and ordered by origin; kept across a reopen (the
  // durable queue).
  Reopen();
  absl::StatusOr<std::vector<v1::Replica>> shown = catalog_->ListReplicas(Digest('b'));
  ASSERT_THAT(shown, IsOk());
  ASSERT_EQ(shown->size(), 1u);
  EXPECT_EQ((*shown)[0].origin(), "r2");
  EXPECT_EQ((*shown)[0].state(), v1::Replica::CONFIRMED);
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds((*shown)[0].update_time()), kT0);
  EXPECT_THAT(catalog_->ListReplicas(Digest('z')), IsOkAndHolds(IsEmpty()));

  confirmed = (*due)[0];
  confirmed.replica.set_state(v1::Replica::CONFIRMED);
  ASSERT_THAT(catalog_->UpdateReplica(confirmed), IsOk());
  EXPECT_THAT(catalog_->NextReplicaAttempt({"r2"}), IsOkAndHolds(std::optional<absl::Time>()));
}

TEST_F(CatalogTest, UpdatingARowNeverQueuedIsNotFound) {
  ReplicaRow row;
  row.digest = Digest('a');
  row.replica.set_origin("r2");
  row.replica.set_state(v1::Replica::CONFIRMED);
  EXPECT_THAT(catalog_->UpdateReplica(row),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("never queued")));
  EXPECT_EQ(QueryRaw(path(), "SELECT COUNT(*) FROM replicas"), "0");
}

}  // namespace
}  // namespace modeldist::storage
