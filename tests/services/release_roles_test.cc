// Trust roots with offline root keys on a real server: UploadTrustRoot accepts exactly what
// devices would follow, the server's own key rpcs refuse once root keys are offline, and the
// chain survives a restart. Fixture: release_roles_fixture.h.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/services/release_roles_fixture.h"

namespace modeldist::testing::release_roles {
namespace {

// The server's signatures authorize a change of a single-role root: it must not lend them to
// a root that names an online key someone else holds (who would then sign manifests).
TEST_F(ReleaseRolesTest, AnOnlineKeyTheServerDoesNotHoldIsRefused) {
  std::vector<Ed25519PrivateKey> outsider = GenerateKeys(1);
  v1::TrustRoot next = NextWithRoles();
  *next.add_keys() = RootKeyFor(outsider[0].public_key());
  std::vector<const Ed25519PrivateKey*> signers = Pointers(root_keys_, 2);
  signers.push_back(&outsider[0]);
  grpc::Status s = Upload(SignRoot(next, signers));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(ErrorReason(FromGrpcStatus(s)), "SIGNING_KEYS_MISSING");
  EXPECT_EQ(Newest().version(), 1) << "nothing stored";
}

TEST_F(ReleaseRolesTest, UploadedRoleRootChainsFromTheSingleRoleRootAndIsServed) {
  const v1::TrustRoot before = Newest();
  ASSERT_FALSE(before.has_root_keys());
  const v1::TrustRoot uploaded = UploadRoles();
  EXPECT_EQ(uploaded.version(), before.version() + 1);
  EXPECT_EQ(uploaded.root_keys().keys_size(), 3);
  EXPECT_EQ(uploaded.release_keys().threshold(), 2);

  // A device that trusts the old root follows to the new one (the server added the online
  // keys' signatures: the old root's only root signers).
  const v1::SignedTrustRoot served = NewestSigned();
  auto followed = VerifyNextRoot(before, served);
  ASSERT_TRUE(followed.ok()) << followed.status();
  EXPECT_TRUE(followed->has_release_keys());

  // The next root needs the offline root keys: 2 of 3 suffice, the server adds nothing that
  // counts for them.
  v1::TrustRoot next = *followed;
  next.set_version(next.version() + 1);
  *next.mutable_release_keys() = Role(release_keys_, 1);
  ASSERT_TRUE(Upload(SignRoot(next, {&root_keys_[1], &root_keys_[2]})).ok());
  auto third = VerifyNextRoot(*followed, NewestSigned());
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->release_keys().threshold(), 1);

  // The audit log records each upload.
  v1::ListAuditLogRequest audit;
  v1::ListAuditLogResponse entries;
  ASSERT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), audit, &entries).ok());
  std::vector<std::string> roots;
  for (const v1::AuditEntry& e : entries.entries()) {
    if (e.action() == "AppendTrustRoot") roots.push_back(e.resource());
  }
  const std::vector<std::string> expected = {absl::StrCat("trustRoots/", third->version()),
                                             absl::StrCat("trustRoots/", uploaded.version())};
  EXPECT_EQ(
      std::vector<std::string>(roots.begin(), roots.begin() + std::min<size_t>(2, roots.size())),
      expected);
}

TEST_F(ReleaseRolesTest, UploadRefusesRootsDevicesWouldRefuse) {
  const v1::TrustRoot before = Newest();
  // Fewer than the threshold of the new root's own root keys.
  grpc::Status s = Upload(SignRoot(NextWithRoles(), Pointers(root_keys_, 1)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Reason(s), "ROOT_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  // Not the next version.
  v1::TrustRoot skip = NextWithRoles();
  skip.set_version(skip.version() + 1);
  s = Upload(SignRoot(skip, Pointers(root_keys_, 3)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "ROOT_VERSION_NOT_NEXT") << s.error_message();
  // Bytes that are no root.
  v1::SignedTrustRoot garbage;
  garbage.set_root("\xff\xff not a root");
  s = Upload(garbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Reason(s), "MALFORMED_ROOT") << s.error_message();
  // A root that parses but is not well formed (release threshold above its key count).
  v1::TrustRoot bad = NextWithRoles();
  bad.mutable_release_keys()->set_threshold(3);
  s = Upload(SignRoot(bad, Pointers(root_keys_, 3)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Reason(s), "MALFORMED_ROOT") << s.error_message();
  // A well-formed root whose online keys the server does not hold: it could not sign.
  v1::TrustRoot foreign = NextWithRoles();
  const std::vector<Ed25519PrivateKey> other = GenerateKeys(1);
  foreign.clear_keys();
  *foreign.add_keys() = RootKeyFor(other[0].public_key());
  foreign.set_threshold(1);
  s = Upload(SignRoot(foreign, Pointers(root_keys_, 3)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "SIGNING_KEYS_MISSING") << s.error_message();
  EXPECT_NE(s.error_message().find(other[0].public_key().KeyId()), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Newest().version(), before.version()) << "a refused upload stored a root";

  // After roles: a root signed by one root key (threshold 2) and the online keys is refused,
  // whatever the server adds.
  const v1::TrustRoot roles = UploadRoles();
  v1::TrustRoot next = roles;
  next.set_version(roles.version() + 1);
  s = Upload(SignRoot(next, {&root_keys_[0]}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Reason(s), "ROOT_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  // Nor can new root keys alone take over.
  const std::vector<Ed25519PrivateKey> thief = GenerateKeys(2);
  *next.mutable_root_keys() = Role(thief, 2);
  s = Upload(SignRoot(next, Pointers(thief, 2)));
  EXPECT_EQ(Reason(s), "ROOT_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  EXPECT_EQ(Newest().version(), roles.version());
}

TEST_F(ReleaseRolesTest, ServerKeyChangesAreRefusedOnceRootKeysAreOffline) {
  UploadRoles();
  v1::SignedTrustRoot out;
  v1::AddSigningKeyRequest add;
  grpc::Status s = server_.registry().AddSigningKey(server_.Admin().get(), add, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "ROOT_KEYS_OFFLINE") << s.error_message();
  EXPECT_NE(s.error_message().find("modeldistctl root upload"), std::string::npos);
  v1::RevokeSigningKeyRequest revoke;
  revoke.set_key_id(Newest().keys(0).key_id());
  s = server_.registry().RevokeSigningKey(server_.Admin().get(), revoke, &out);
  EXPECT_EQ(Reason(s), "ROOT_KEYS_OFFLINE") << s.error_message();
  v1::RotateSigningKeysRequest rotate;
  s = server_.registry().RotateSigningKeys(server_.Admin().get(), rotate, &out);
  EXPECT_EQ(Reason(s), "ROOT_KEYS_OFFLINE") << s.error_message();
}

TEST_F(ReleaseRolesTest, RestartReopensTheRoleChainAndKeepsReleases) {
  const v1::TrustRoot first = Newest();
  const v1::TrustRoot roles = UploadRoles();
  v1::TrustRoot next = roles;
  next.set_version(roles.version() + 1);
  ASSERT_TRUE(Upload(SignRoot(next, Pointers(root_keys_, 2))).ok());
  CreateDraft("a", {mac_});
  v1::SignedRelease release = Released(kA, {mac_.released});
  ASSERT_TRUE(Publish(kA, &release).ok());
  server_.SetTier("llama8b", "", kA);

  server_.Restart();
  const v1::TrustRoot after = Newest();
  EXPECT_EQ(after.version(), next.version());
  // A device that pinned root 1 walks the whole chain the restarted server serves.
  v1::TrustRoot trusted = first;
  for (int64_t v = first.version() + 1; v <= after.version(); ++v) {
    v1::GetTrustRootRequest request;
    request.set_version(v);
    v1::SignedTrustRoot signed_root;
    grpc::ClientContext context;
    ASSERT_TRUE(server_.manifests().GetTrustRoot(&context, request, &signed_root).ok());
    auto verified = VerifyNextRoot(trusted, signed_root);
    ASSERT_TRUE(verified.ok()) << v << ": " << verified.status();
    trusted = *verified;
  }
  auto manifest = DeviceFetch(trusted);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  v1::GetVersionRequest get;
  get.set_name(kA);
  v1::Version version;
  ASSERT_TRUE(server_.registry().GetVersion(server_.Admin().get(), get, &version).ok());
  EXPECT_TRUE(version.released());
  // Still offline after the restart.
  v1::SignedTrustRoot out;
  grpc::Status s =
      server_.registry().AddSigningKey(server_.Admin().get(), v1::AddSigningKeyRequest(), &out);
  EXPECT_EQ(Reason(s), "ROOT_KEYS_OFFLINE") << s.error_message();
}

}  // namespace
}  // namespace modeldist::testing::release_roles
