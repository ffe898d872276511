// KeyRing: key files on disk, the trust root chain in a store, and what devices will verify.
#include "services/key_ring.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::services {
namespace {

using ::modeldist::testing::HasReason;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// The catalog's contract in memory, with an injectable Append failure.
class FakeTrustRootStore : public TrustRootStore {
 public:
  absl::Status Append(int64_t version, absl::string_view signed_root,
                      absl::string_view /*actor*/) override {
    absl::MutexLock lock(&mu_);
    if (!fail_appends_.ok()) return fail_appends_;
    if (version != static_cast<int64_t>(roots_.size()) + 1) {
      return absl::FailedPreconditionError(absl::StrCat("version ", version, " is not next"));
    }
    roots_.emplace_back(signed_root);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(int64_t version) override {
    absl::MutexLock lock(&mu_);
    if (roots_.empty()) return absl::NotFoundError("no trust root");
    if (version == 0) return roots_.back();
    if (version < 0 || version > static_cast<int64_t>(roots_.size())) {
      return absl::NotFoundError(absl::StrCat("no trust root ", version));
    }
    return roots_[version - 1];
  }

  int64_t size() {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(roots_.size());
  }
  void FailAppends(absl::Status status) {
    absl::MutexLock lock(&mu_);
    fail_appends_ = std::move(status);
  }
  // Stores a root as is, without the gap check (for tampering tests).
  void Put(const v1::SignedTrustRoot& root) {
    absl::MutexLock lock(&mu_);
    roots_.push_back(root.SerializeAsString());
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> roots_;
  absl::Status fail_appends_;
};

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

KeyRing::Options FixedClock() {
  KeyRing::Options options;
  options.now = [] { return kNow; };
  return options;
}

Ed25519PrivateKey NewKey() {
  auto key = Ed25519PrivateKey::Generate();
  EXPECT_THAT(key, IsOk());
  return std::move(key).value();
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::vector<std::string> KeyIds(const v1::TrustRoot& root) {
  std::vector<std::string> ids;
  for (const v1::SigningKey& key : root.keys()) ids.push_back(key.key_id());
  return ids;
}

v1::SignedManifest SignedBy(const KeyRing& ring, const std::string& bytes) {
  v1::SignedManifest out;
  out.set_manifest(bytes);
  for (v1::Signature& sig : ring.SignManifest(bytes)) *out.add_signatures() = std::move(sig);
  return out;
}

std::string SomeManifest() {
  v1::Manifest m;
  m.set_tier("llama8b");
  m.set_channel("stable");
  m.set_sequence(3);
  return m.SerializeAsString();
}

// Walks the stored chain from root 1 as a device would; returns the newest root.
v1::TrustRoot WalkChain(FakeTrustRootStore& store) {
  v1::TrustRoot trusted;
  for (int64_t version = 1; version <= store.size(); ++version) {
    auto bytes = store.Get(version);
    EXPECT_THAT(bytes, IsOk());
    v1::SignedTrustRoot signed_root;
    EXPECT_TRUE(signed_root.ParseFromString(*bytes));
    auto next = version == 1 ? VerifyFirstRoot(signed_root) : VerifyNextRoot(trusted, signed_root);
    EXPECT_THAT(next, IsOk()) << "root " << version;
    if (!next.ok()) break;
    trusted = *std::move(next);
  }
  return trusted;
}

class KeyRingTest : public ::testing::Test {
 protected:
  std::string KeysDir() const { return dir_.Join("keys"); }
  std::string KeyPath(const std::string& id) const { return KeysDir() + "/" + id + ".pem"; }

  std::unique_ptr<KeyRing> OpenOk(KeyRing::Options options = FixedClock()) {
    auto ring = KeyRing::Open(KeysDir(), &store_, std::move(options));
    EXPECT_THAT(ring, IsOk());
    return ring.ok() ? std::move(ring).value() : nullptr;
  }

  ScratchDir dir_;
  FakeTrustRootStore store_;
};

TEST_F(KeyRingTest, FirstStartCreatesRootOne) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  KeyRing::VerifiedRoot newest = ring->NewestRoot();
  EXPECT_EQ(newest.root.version(), 1);
  EXPECT_EQ(newest.root.threshold(), 1);
  ASSERT_EQ(newest.root.keys_size(), 1);
  EXPECT_EQ(newest.root.issued_at().seconds(), absl::ToUnixSeconds(kNow));
  EXPECT_EQ(store_.size(), 1);
  EXPECT_EQ(*store_.Get(1), newest.signed_root.SerializeAsString());
  EXPECT_THAT(VerifyFirstRoot(newest.signed_root), IsOk());

  const std::string id = newest.root.keys(0).key_id();
  EXPECT_EQ(ModeOf(KeyPath(id)), 0600u);
  EXPECT_EQ(ModeOf(KeysDir()), 0700u);

  std::vector<v1::Signature> sigs = ring->SignManifest(SomeManifest());
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(sigs[0].key_id(), id);
  EXPECT_THAT(VerifyManifest(newest.root, SignedBy(*ring, SomeManifest())), IsOk());
}

TEST_F(KeyRingTest, RestartLoadsTheSameKeysAndRoot) {
  std::string first_root;
  {
    auto ring = OpenOk();
    ASSERT_NE(ring, nullptr);
    first_root = ring->NewestRoot().signed_root.SerializeAsString();
  }
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(ring->NewestRoot().signed_root.SerializeAsString(), first_root);
  EXPECT_EQ(store_.size(), 1);  // nothing new appended
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(KeysDir())) {
    files.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(files.size(), 1u);  // no second key generated
  EXPECT_THAT(VerifyManifest(ring->NewestRoot().root, SignedBy(*ring, SomeManifest())), IsOk());
}

TEST_F(KeyRingTest, LegacyKeyFileBecomesRootOne) {
  ASSERT_THAT(MakeDirs(KeysDir(), 0700), IsOk());
  Ed25519PrivateKey legacy = NewKey();
  ASSERT_THAT(legacy.SavePemFile(KeysDir() + "/manifest-signing.pem"), IsOk());
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  EXPECT_THAT(KeyIds(ring->NewestRoot().root), ElementsAre(legacy.public_key().KeyId()));
}

TEST_F(KeyRingTest, SigningKeyFlagBecomesRootOne) {
  Ed25519PrivateKey key = NewKey();
  const std::string path = dir_.Join("operator.pem");
  ASSERT_THAT(key.SavePemFile(path), IsOk());
  KeyRing::Options options = FixedClock();
  options.signing_key_file = path;
  auto ring = OpenOk(options);
  ASSERT_NE(ring, nullptr);
  EXPECT_THAT(KeyIds(ring->NewestRoot().root), ElementsAre(key.public_key().KeyId()));
  EXPECT_TRUE(std::filesystem::is_empty(KeysDir()));  // nothing generated

  // Rotating it away leaves the operator's file where it is.
  ASSERT_THAT(ring->RotateKeys(1, 0, "ops"), IsOk());
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_THAT(ring->SignManifest(SomeManifest()),
              Not(::testing::Contains(
                  ::testing::Property(&v1::Signature::key_id, key.public_key().KeyId()))));
}

TEST_F(KeyRingTest, AddRevokeRotateFormAChainDevicesAccept) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const std::string first = ring->NewestRoot().root.keys(0).key_id();

  auto v2 = ring->AddKey(0, "ops");  // 2 keys, threshold stays 1
  ASSERT_THAT(v2, IsOk());
  EXPECT_EQ(v2->root.version(), 2);
  EXPECT_EQ(v2->root.keys_size(), 2);
  EXPECT_EQ(v2->root.threshold(), 1);

  auto v3 = ring->AddKey(2, "ops");  // 3 keys, 2-of-3
  ASSERT_THAT(v3, IsOk());
  EXPECT_EQ(v3->root.threshold(), 2);
  EXPECT_EQ(ring->SignManifest(SomeManifest()).size(), 3u);

  auto v4 = ring->RevokeKey(first, 0, "ops");  // 2 keys, still 2-of-2
  ASSERT_THAT(v4, IsOk());
  EXPECT_EQ(v4->root.keys_size(), 2);
  EXPECT_EQ(v4->root.threshold(), 2);
  EXPECT_THAT(KeyIds(v4->root), Not(::testing::Contains(first)));

  auto v5 = ring->RotateKeys(3, 2, "ops");  // 3 new keys, 2-of-3
  ASSERT_THAT(v5, IsOk());
  EXPECT_EQ(v5->root.keys_size(), 3);
  for (const std::string& id : KeyIds(v4->root)) {
    EXPECT_THAT(KeyIds(v5->root), Not(::testing::Contains(id)));
    EXPECT_FALSE(std::filesystem::exists(KeyPath(id)));
    EXPECT_TRUE(std::filesystem::exists(KeysDir() + "/revoked/" + id + ".pem"));
  }

  auto v6 = ring->RevokeKey(v5->root.keys(0).key_id(), 0, "ops");  // threshold 2 of the 2 left
  ASSERT_THAT(v6, IsOk());
  EXPECT_EQ(v6->root.threshold(), 2);

  ASSERT_EQ(store_.size(), 6);
  v1::TrustRoot walked = WalkChain(store_);
  EXPECT_EQ(walked.SerializeAsString(), v6->root.SerializeAsString());
  EXPECT_THAT(VerifyManifest(walked, SignedBy(*ring, SomeManifest())), IsOk());
  for (int64_t version = 1; version <= 6; ++version) {
    auto root = ring->Root(version);
    ASSERT_THAT(root, IsOk());
    EXPECT_EQ(root->SerializeAsString(), *store_.Get(version)) << version;
  }

  // A restart verifies the same chain and signs with the same keys.
  ring.reset();
  ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(ring->NewestRoot().root.version(), 6);
  EXPECT_EQ(ring->SignManifest(SomeManifest()).size(), 2u);
  EXPECT_THAT(VerifyManifest(walked, SignedBy(*ring, SomeManifest())), IsOk());
}

TEST_F(KeyRingTest, RevokedKeyNoLongerSigns) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const std::string revoked = ring->NewestRoot().root.keys(0).key_id();
  ASSERT_THAT(ring->AddKey(0, "ops"), IsOk());
  auto after = ring->RevokeKey(revoked, 0, "ops");
  ASSERT_THAT(after, IsOk());

  std::vector<v1::Signature> sigs = ring->SignManifest(SomeManifest());
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_NE(sigs[0].key_id(), revoked);

  // The private key went to revoked/; whoever holds it cannot sign for the new root.
  EXPECT_FALSE(std::filesystem::exists(KeyPath(revoked)));
  const std::string moved = KeysDir() + "/revoked/" + revoked + ".pem";
  EXPECT_EQ(ModeOf(moved), 0600u);
  auto old_key = Ed25519PrivateKey::LoadPemFile(moved);
  ASSERT_THAT(old_key, IsOk());
  v1::SignedManifest by_revoked;
  by_revoked.set_manifest(SomeManifest());
  v1::Signature* sig = by_revoked.add_signatures();
  sig->set_key_id(revoked);
  sig->set_signature(old_key->Sign(kManifestSignatureContext, by_revoked.manifest()));
  EXPECT_THAT(VerifyManifest(after->root, by_revoked),
              HasReason(absl::StatusCode::kPermissionDenied, kReasonSignatureThresholdNotMet));
  // It was valid under the root before the revocation.
  auto v2 = VerifyFirstRoot(*ring->Root(2));  // self-signed by its own threshold as well
  ASSERT_THAT(v2, IsOk());
  EXPECT_THAT(VerifyManifest(*v2, by_revoked), IsOk());

  // After a restart too (the revoked file is not in keys_dir any more).
  ring.reset();
  ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  sigs = ring->SignManifest(SomeManifest());
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_NE(sigs[0].key_id(), revoked);
}

TEST_F(KeyRingTest, KeyFilesAreOwnerOnly) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  ASSERT_THAT(ring->AddKey(0, "ops"), IsOk());
  ASSERT_THAT(ring->RotateKeys(2, 0, "ops"), IsOk());
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(KeysDir())) {
    if (entry.is_directory()) {
      EXPECT_EQ(ModeOf(entry.path().string()), 0700u) << entry.path();
    } else {
      EXPECT_EQ(ModeOf(entry.path().string()), 0600u) << entry.path();
      ++files;
    }
  }
  EXPECT_EQ(files, 4);  // 2 current + 2 revoked
}

TEST_F(KeyRingTest, GroupOrWorldAccessibleKeyFileIsRefused) {
  std::string path;
  {
    auto ring = OpenOk();
    ASSERT_NE(ring, nullptr);
    path = KeyPath(ring->NewestRoot().root.keys(0).key_id());
  }
  for (mode_t mode : {0644, 0640, 0604, 0620}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto ring = KeyRing::Open(KeysDir(), &store_, FixedClock());
    EXPECT_THAT(ring, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(path), HasSubstr("chmod 600"),
                                     Not(HasSubstr("PRIVATE KEY")))))
        << std::oct << mode;
    EXPECT_EQ(ErrorReason(ring.status()), "KEY_FILE_TOO_OPEN");
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);  // read-only for the owner is fine
  EXPECT_THAT(KeyRing::Open(KeysDir(), &store_, FixedClock()), IsOk());

  // The --signing-key file obeys the same rule.
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  const std::string operator_key = dir_.Join("operator.pem");
  ASSERT_THAT(NewKey().SavePemFile(operator_key), IsOk());
  ASSERT_EQ(::chmod(operator_key.c_str(), 0644), 0);
  KeyRing::Options options = FixedClock();
  options.signing_key_file = operator_key;
  EXPECT_THAT(KeyRing::Open(KeysDir(), &store_, options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(operator_key)));
}

TEST_F(KeyRingTest, KeyFileNamedForAnotherKeyIsRefused) {
  ASSERT_THAT(MakeDirs(KeysDir(), 0700), IsOk());
  ASSERT_THAT(NewKey().SavePemFile(KeyPath("0123456789abcdef")), IsOk());
  EXPECT_THAT(KeyRing::Open(KeysDir(), &store_, FixedClock()),
              HasReason(absl::StatusCode::kFailedPrecondition, "KEY_FILE_NAME_MISMATCH"));
}

TEST_F(KeyRingTest, StoredRootWhoseKeysWeDoNotHoldIsRefused) {
  Ed25519PrivateKey a = NewKey();
  Ed25519PrivateKey b = NewKey();
  Ed25519PrivateKey c = NewKey();
  v1::TrustRoot root;
  root.set_version(1);
  root.set_threshold(2);
  for (const Ed25519PrivateKey* k : {&a, &b, &c}) *root.add_keys() = RootKeyFor(k->public_key());
  store_.Put(SignRoot(root, {&a, &b, &c}));

  // None held.
  auto ring = KeyRing::Open(KeysDir(), &store_, FixedClock());
  EXPECT_THAT(ring, HasReason(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING"));
  EXPECT_THAT(ring.status().message(),
              AllOf(HasSubstr(a.public_key().KeyId()), HasSubstr(b.public_key().KeyId()),
                    HasSubstr(c.public_key().KeyId())));
  EXPECT_TRUE(std::filesystem::is_empty(KeysDir()));  // no key generated for a foreign root

  // One of the two needed.
  ASSERT_THAT(a.SavePemFile(KeyPath(a.public_key().KeyId())), IsOk());
  ring = KeyRing::Open(KeysDir(), &store_, FixedClock());
  EXPECT_THAT(ring, HasReason(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING"));
  EXPECT_THAT(ring.status().message(),
              AllOf(Not(HasSubstr(a.public_key().KeyId())), HasSubstr(b.public_key().KeyId())));

  // Two of three is enough; the ring signs with the two it holds.
  ASSERT_THAT(c.SavePemFile(KeyPath(c.public_key().KeyId())), IsOk());
  ring = KeyRing::Open(KeysDir(), &store_, FixedClock());
  ASSERT_THAT(ring, IsOk());
  EXPECT_EQ((*ring)->SignManifest(SomeManifest()).size(), 2u);
  EXPECT_THAT(VerifyManifest(root, SignedBy(**ring, SomeManifest())), IsOk());

  // Revoking one of the two it holds would leave it unable to reach threshold 2.
  EXPECT_THAT((*ring)->RevokeKey(a.public_key().KeyId(), 0, "ops"),
              HasReason(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING"));
  // Revoking the one it lacks is fine (signed by a and c of the old root and of the new one).
  auto next = (*ring)->RevokeKey(b.public_key().KeyId(), 0, "ops");
  ASSERT_THAT(next, IsOk());
  EXPECT_THAT(VerifyNextRoot(root, next->signed_root), IsOk());
}

TEST_F(KeyRingTest, UploadedRootNamingOnlineKeysWeDoNotHoldListsEveryOne) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const KeyRing::VerifiedRoot first = ring->NewestRoot();
  // Threshold 1 is met by the key the ring holds, but two online keys are someone else's.
  Ed25519PrivateKey b = NewKey();
  Ed25519PrivateKey c = NewKey();
  v1::TrustRoot next = first.root;
  next.set_version(2);
  for (const Ed25519PrivateKey* k : {&b, &c}) *next.add_keys() = RootKeyFor(k->public_key());
  v1::SignedTrustRoot upload;
  upload.set_root(next.SerializeAsString());

  auto uploaded = ring->UploadRoot(upload, "ops");
  EXPECT_THAT(uploaded, HasReason(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING"));
  // Every missing key, in root order.
  EXPECT_EQ(ErrorMetadataValue(uploaded.status(), "missing_key_ids"),
            absl::StrCat(b.public_key().KeyId(), ",", c.public_key().KeyId()));
  EXPECT_THAT(uploaded.status().message(),
              AllOf(HasSubstr(b.public_key().KeyId()), HasSubstr(c.public_key().KeyId()),
                    Not(HasSubstr(first.root.keys(0).key_id()))));
  EXPECT_EQ(store_.size(), 1);  // nothing appended

  // Without the foreign keys the same upload is stored.
  next.mutable_keys()->DeleteSubrange(1, 2);
  upload.set_root(next.SerializeAsString());
  auto stored = ring->UploadRoot(upload, "ops");
  ASSERT_THAT(stored, IsOk());
  EXPECT_THAT(VerifyNextRoot(first.root, stored->signed_root), IsOk());
  EXPECT_EQ(store_.size(), 2);
}

TEST_F(KeyRingTest, TamperedChainIsRefused) {
  {
    auto ring = OpenOk();
    ASSERT_NE(ring, nullptr);
  }
  // Someone with write access to the catalog appends a root of their own.
  Ed25519PrivateKey attacker = NewKey();
  v1::TrustRoot evil;
  evil.set_version(2);
  evil.set_threshold(1);
  *evil.add_keys() = RootKeyFor(attacker.public_key());
  store_.Put(SignRoot(evil, {&attacker}));
  ASSERT_THAT(attacker.SavePemFile(KeyPath(attacker.public_key().KeyId())), IsOk());

  auto ring = KeyRing::Open(KeysDir(), &store_, FixedClock());
  EXPECT_THAT(ring, HasReason(absl::StatusCode::kDataLoss, "TRUST_ROOT_CHAIN_BROKEN"));
  EXPECT_THAT(ring.status().message(), HasSubstr("ROOT_SIGNATURE_THRESHOLD_NOT_MET"));
}

TEST_F(KeyRingTest, ArgumentErrors) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const std::string only = ring->NewestRoot().root.keys(0).key_id();
  constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

  EXPECT_THAT(ring->AddKey(-1, "ops"), HasReason(kInvalid, "THRESHOLD_OUT_OF_RANGE"));
  EXPECT_THAT(ring->AddKey(3, "ops"), HasReason(kInvalid, "THRESHOLD_OUT_OF_RANGE"));
  EXPECT_THAT(ring->RevokeKey("not-a-key-id", 0, "ops"), HasReason(kInvalid, "MALFORMED_KEY_ID"));
  EXPECT_THAT(ring->RevokeKey("0123456789ABCDEF", 0, "ops"),
              HasReason(kInvalid, "MALFORMED_KEY_ID"));
  EXPECT_THAT(ring->RevokeKey("0123456789abcdef", 0, "ops"),
              HasReason(absl::StatusCode::kNotFound, "SIGNING_KEY_NOT_FOUND"));
  EXPECT_THAT(ring->RevokeKey(only, 0, "ops"),
              HasReason(absl::StatusCode::kFailedPrecondition, "LAST_SIGNING_KEY"));
  EXPECT_THAT(ring->RotateKeys(-1, 0, "ops"), HasReason(kInvalid, "KEY_COUNT_OUT_OF_RANGE"));
  EXPECT_THAT(ring->RotateKeys(kMaxRotateKeys + 1, 0, "ops"),
              HasReason(kInvalid, "KEY_COUNT_OUT_OF_RANGE"));
  EXPECT_THAT(ring->RotateKeys(2, 3, "ops"), HasReason(kInvalid, "THRESHOLD_OUT_OF_RANGE"));
  EXPECT_EQ(store_.size(), 1);  // nothing was published
  EXPECT_TRUE(std::filesystem::exists(KeyPath(only)));

  // Threshold 0 on revoke keeps the current one, lowered to what is left.
  ASSERT_THAT(ring->AddKey(2, "ops"), IsOk());
  auto lowered = ring->RevokeKey(only, 0, "ops");
  ASSERT_THAT(lowered, IsOk());
  EXPECT_EQ(lowered->root.threshold(), 1);
  // Count 0 on rotate keeps the key count.
  auto rotated = ring->RotateKeys(0, 0, "ops");
  ASSERT_THAT(rotated, IsOk());
  EXPECT_EQ(rotated->root.keys_size(), 1);
}

TEST_F(KeyRingTest, RootByVersion) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  ASSERT_THAT(ring->AddKey(0, "ops"), IsOk());
  EXPECT_EQ(ring->Root(0)->SerializeAsString(), *store_.Get(2));
  EXPECT_EQ(ring->Root(1)->SerializeAsString(), *store_.Get(1));
  EXPECT_EQ(ring->Root(2)->SerializeAsString(), *store_.Get(2));
  auto missing = ring->Root(3);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("newest is 2")));
  EXPECT_THAT(ring->Root(-1), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
}

TEST_F(KeyRingTest, FailedAppendPublishesNothingAndKeepsKeysFirst) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const KeyRing::VerifiedRoot before = ring->NewestRoot();
  store_.FailAppends(absl::UnavailableError("disk gone"));

  EXPECT_THAT(ring->AddKey(0, "ops"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk gone")));
  EXPECT_EQ(ring->NewestRoot().signed_root.SerializeAsString(),
            before.signed_root.SerializeAsString());
  EXPECT_EQ(ring->SignManifest(SomeManifest()).size(), 1u);
  // The new key was written before the root was appended: as after a crash between the two.
  int key_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(KeysDir())) {
    key_files += entry.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(key_files, 2);

  const std::string only = before.root.keys(0).key_id();
  ASSERT_THAT(ring->AddKey(0, "ops").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(ring->RevokeKey(only, 0, "ops"), HasReason(absl::StatusCode::kFailedPrecondition,
                                                         "LAST_SIGNING_KEY"));  // still root 1
  EXPECT_TRUE(std::filesystem::exists(KeyPath(only)));

  // A restart with the orphan key files: still root 1, signed by its one key only.
  store_.FailAppends(absl::OkStatus());
  ring.reset();
  ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  EXPECT_EQ(ring->NewestRoot().root.version(), 1);
  std::vector<v1::Signature> sigs = ring->SignManifest(SomeManifest());
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(sigs[0].key_id(), only);
  ASSERT_THAT(ring->AddKey(0, "ops"), IsOk());
  WalkChain(store_);
}

TEST_F(KeyRingTest, SignManifestDuringChangesAlwaysMatchesARoot) {
  auto ring = OpenOk();
  ASSERT_NE(ring, nullptr);
  const std::string manifest = SomeManifest();
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<v1::SignedManifest> seen;
  std::vector<std::thread> signers;
  for (int t = 0; t < 3; ++t) {
    signers.emplace_back([&] {
      while (!stop.load()) {
        v1::SignedManifest m = SignedBy(*ring, manifest);
        absl::MutexLock lock(&mu);
        if (seen.size() < 300) seen.push_back(std::move(m));
      }
    });
  }
  ASSERT_THAT(ring->AddKey(2, "ops"), IsOk());
  ASSERT_THAT(ring->RotateKeys(3, 2, "ops"), IsOk());
  ASSERT_THAT(ring->RevokeKey(ring->NewestRoot().root.keys(0).key_id(), 0, "ops"), IsOk());
  stop = true;
  for (std::thread& t : signers) t.join();

  std::vector<v1::TrustRoot> roots;
  for (int64_t version = 1; version <= store_.size(); ++version) {
    v1::TrustRoot root;
    ASSERT_TRUE(root.ParseFromString(ring->Root(version)->root()));
    roots.push_back(root);
  }
  ASSERT_FALSE(seen.empty());
  for (const v1::SignedManifest& m : seen) {
    bool verified = false;
    for (const v1::TrustRoot& root : roots) verified = verified || VerifyManifest(root, m).ok();
    EXPECT_TRUE(verified) << "a manifest signed mid-change matched no root";
  }
}

}  // namespace
}  // namespace modeldist::services
