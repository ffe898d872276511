// Release statements on a real server: PublishVersion and AttachRelease store only a statement
// the release keys signed that lists exactly the version's artifacts as uploaded, and every
// manifest carries it so that VerifyManifest (the device's check) accepts it. Fixture:
// release_roles_fixture.h.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/services/release_roles_fixture.h"

namespace modeldist::testing::release_roles {
namespace {

TEST_F(ReleaseRolesTest, PublishNeedsAReleaseListingExactlyTheUploadedArtifacts) {
  UploadRoles();
  CreateDraft("a", {mac_, linux_});
  grpc::Status s = Publish(kA, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "RELEASE_REQUIRED") << s.error_message();

  // One artifact missing.
  v1::SignedRelease missing = Released(kA, {mac_.released});
  s = Publish(kA, &missing);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  EXPECT_NE(s.error_message().find(linux_.artifact.digest()), std::string::npos)
      << s.error_message();
  // One more than the version has.
  const File extra = MakeFile(v1::PLATFORM_WINDOWS, v1::ARCH_X86_64, v1::FORMAT_GGUF, 300, 3);
  v1::SignedRelease more = Released(kA, {mac_.released, linux_.released, extra.released});
  s = Publish(kA, &more);
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  EXPECT_NE(s.error_message().find(extra.artifact.digest()), std::string::npos)
      << s.error_message();
  // One listed twice.
  v1::SignedRelease twice = Released(kA, {mac_.released, linux_.released, mac_.released});
  s = Publish(kA, &twice);
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  // One altered: another chunk chain, or another platform.
  v1::ReleasedArtifact altered = linux_.released;
  altered.set_chunk_chain_sha256(std::string(32, 'x'));
  v1::SignedRelease other_chain = Released(kA, {mac_.released, altered});
  s = Publish(kA, &other_chain);
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  altered = linux_.released;
  altered.set_platform(v1::PLATFORM_MACOS);
  v1::SignedRelease other_platform = Released(kA, {mac_.released, altered});
  s = Publish(kA, &other_platform);
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  // Signed by the wrong keys (the root keys), or by too few release keys.
  v1::SignedRelease wrong_keys =
      SignedReleaseOf(kA, {mac_.released, linux_.released}, Pointers(root_keys_, 3));
  s = Publish(kA, &wrong_keys);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Reason(s), "RELEASE_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  v1::SignedRelease one_key =
      SignedReleaseOf(kA, {mac_.released, linux_.released}, Pointers(release_keys_, 1));
  s = Publish(kA, &one_key);
  EXPECT_EQ(Reason(s), "RELEASE_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  // For another version.
  v1::SignedRelease other_version =
      Released("models/llama/versions/b", {mac_.released, linux_.released});
  s = Publish(kA, &other_version);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Reason(s), "MALFORMED_RELEASE") << s.error_message();

  v1::GetVersionRequest get;
  get.set_name(kA);
  v1::Version draft;
  ASSERT_TRUE(server_.registry().GetVersion(server_.Admin().get(), get, &draft).ok());
  EXPECT_EQ(draft.state(), v1::Version::DRAFT) << "a refused publish published";

  // In any order, it publishes.
  v1::SignedRelease good = Released(kA, {linux_.released, mac_.released});
  v1::Version published;
  s = Publish(kA, &good, &published);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(published.state(), v1::Version::PUBLISHED);
  EXPECT_TRUE(published.released());

  // Devices get the statement with the manifest, and their check passes.
  server_.SetTier("llama8b", "", kA);
  v1::SignedManifest raw;
  auto manifest = DeviceFetch(Newest(), &raw);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->artifact().digest(), mac_.artifact.digest());
  EXPECT_EQ(raw.release().release(), good.release());
  // Without it, a device refuses the same manifest.
  raw.clear_release();
  EXPECT_EQ(ErrorReason(VerifyManifest(Newest(), raw).status()), "RELEASE_REQUIRED");
}

TEST_F(ReleaseRolesTest, AttachReleaseToAVersionPublishedBeforeRoles) {
  server_.PublishBlob(kModel, "a", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP,
                      mac_.bytes);
  server_.SetTier("llama8b", "", kA);
  // No release keys yet: nothing to check a statement with.
  grpc::Status s = Attach(kA, Released(kA, {mac_.released}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "RELEASE_KEYS_NOT_SET") << s.error_message();

  const v1::TrustRoot roles = UploadRoles();
  // The old manifests carry no statement: a device with the new root refuses them.
  EXPECT_EQ(ErrorReason(DeviceFetch(roles).status()), "RELEASE_REQUIRED");

  s = Attach(kA, Released(kA, {linux_.released}));
  EXPECT_EQ(Reason(s), "RELEASE_MISMATCH") << s.error_message();
  s = Attach(kA, SignedReleaseOf(kA, {mac_.released}, Pointers(root_keys_, 3)));
  EXPECT_EQ(Reason(s), "RELEASE_SIGNATURE_THRESHOLD_NOT_MET") << s.error_message();
  s = Attach("models/llama/versions/zzz", Released("models/llama/versions/zzz", {}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::Version attached;
  s = Attach(kA, Released(kA, {mac_.released}), &attached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(attached.released());
  auto manifest = DeviceFetch(roles);
  ASSERT_TRUE(manifest.ok()) << manifest.status();

  // A draft cannot get one (it gets it when published).
  CreateDraft("b", {linux_});
  s = Attach("models/llama/versions/b", Released("models/llama/versions/b", {linux_.released}));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "VERSION_NOT_PUBLISHED") << s.error_message();
}

TEST_F(ReleaseRolesTest, ReleaseWithoutReleaseKeysIsRefused) {
  CreateDraft("a", {mac_});
  v1::SignedRelease release = Released(kA, {mac_.released});
  grpc::Status s = Publish(kA, &release);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(s), "RELEASE_KEYS_NOT_SET") << s.error_message();
  ASSERT_TRUE(Publish(kA, nullptr).ok());  // the single-role root needs none
}

}  // namespace
}  // namespace modeldist::testing::release_roles
