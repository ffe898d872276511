// File: release_roles_fixture.h
//
// Shared by release_roles_test.cc and release_publish_test.cc. Roles on a real server (issue 14): a
// trust root with offline root keys and release keys is made in the test (as `modeldistctl root`
// does on an offline machine), uploaded with UploadTrustRoot, and from then on the server changes
// no root by itself, publishes no version without a release statement that lists exactly its
// artifacts, and serves manifests that carry the statement, which VerifyManifest (what devices run)
// accepts.
#ifndef MODELDIST_TESTS_SERVICES_RELEASE_ROLES_FIXTURE_H_
#define MODELDIST_TESTS_SERVICES_RELEASE_ROLES_FIXTURE_H_

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/chunk_chain.h"
#include "common/grpc_status.h"
#include "common/release.h"
#include "common/status.h"
#include "common/trust.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "tests/testing/test_server.h"

// Its own namespace: the helpers have short names.
namespace modeldist::testing::release_roles {

inline constexpr char kModel[] = "llama";
inline constexpr char kA[] = "models/llama/versions/a";

// What `modeldistctl release sign` lists for a file: computed from its bytes.
inline v1::ReleasedArtifact ReleasedFile(const std::string& bytes, v1::Platform platform,
                                         v1::Arch arch, v1::Format format) {
  ChunkChainBuilder builder(storage::kChunkDigestBytes);
  builder.Update(bytes);
  return ReleasedArtifactOf(builder, storage::kChunkDigestBytes, platform, arch, format);
}

// One file of a version: its declaration and its bytes.
struct File {
  v1::Artifact artifact;
  std::string bytes;
  v1::ReleasedArtifact released;
};

inline File MakeFile(v1::Platform platform, v1::Arch arch, v1::Format format, size_t size,
                     uint32_t seed) {
  File f;
  f.bytes = RandomBytes(size, seed);
  f.artifact = MakeArtifact(platform, arch, format, f.bytes);
  f.released = ReleasedFile(f.bytes, platform, arch, format);
  return f;
}

inline std::vector<Ed25519PrivateKey> GenerateKeys(int n) {
  std::vector<Ed25519PrivateKey> out;
  for (int i = 0; i < n; ++i) out.push_back(*Ed25519PrivateKey::Generate());
  return out;
}

inline std::vector<const Ed25519PrivateKey*> Pointers(const std::vector<Ed25519PrivateKey>& keys,
                                                      size_t n) {
  std::vector<const Ed25519PrivateKey*> out;
  for (size_t i = 0; i < n && i < keys.size(); ++i) out.push_back(&keys[i]);
  return out;
}

inline v1::RoleKeys Role(const std::vector<Ed25519PrivateKey>& keys, int threshold) {
  v1::RoleKeys role;
  for (const Ed25519PrivateKey& key : keys) *role.add_keys() = RootKeyFor(key.public_key());
  role.set_threshold(threshold);
  return role;
}

inline std::string Reason(const grpc::Status& s) { return ErrorReason(FromGrpcStatus(s)); }

class ReleaseRolesTest : public ::testing::Test {
 protected:
  ReleaseRolesTest() : root_keys_(GenerateKeys(3)), release_keys_(GenerateKeys(2)) {}

  v1::SignedTrustRoot NewestSigned() {
    v1::GetTrustRootRequest request;
    v1::SignedTrustRoot signed_root;
    grpc::ClientContext context;
    EXPECT_TRUE(server_.manifests().GetTrustRoot(&context, request, &signed_root).ok());
    return signed_root;
  }
  v1::TrustRoot Newest() {
    v1::TrustRoot root;
    EXPECT_TRUE(root.ParseFromString(NewestSigned().root()));
    return root;
  }

  // The newest root + 1 with the same online keys, root keys 2-of-3 and release keys 2-of-2.
  v1::TrustRoot NextWithRoles() {
    v1::TrustRoot next = Newest();
    next.set_version(next.version() + 1);
    *next.mutable_root_keys() = Role(root_keys_, 2);
    *next.mutable_release_keys() = Role(release_keys_, 2);
    return next;
  }

  grpc::Status Upload(const v1::SignedTrustRoot& root, v1::SignedTrustRoot* out = nullptr) {
    v1::UploadTrustRootRequest request;
    *request.mutable_root() = root;
    v1::SignedTrustRoot response;
    grpc::Status s = server_.registry().UploadTrustRoot(server_.Admin().get(), request, &response);
    if (out != nullptr) *out = response;
    return s;
  }

  // Uploads NextWithRoles signed by two of the root keys; returns the stored root.
  v1::TrustRoot UploadRoles() {
    v1::SignedTrustRoot stored;
    grpc::Status s = Upload(SignRoot(NextWithRoles(), Pointers(root_keys_, 2)), &stored);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::TrustRoot root;
    EXPECT_TRUE(root.ParseFromString(stored.root()));
    return root;
  }

  v1::SignedRelease SignedReleaseOf(const std::string& version,
                                    const std::vector<v1::ReleasedArtifact>& artifacts,
                                    const std::vector<const Ed25519PrivateKey*>& signers) {
    v1::Release release;
    release.set_version(version);
    for (const v1::ReleasedArtifact& a : artifacts) *release.add_artifacts() = a;
    return SignRelease(release, signers);
  }
  v1::SignedRelease Released(const std::string& version,
                             const std::vector<v1::ReleasedArtifact>& artifacts) {
    return SignedReleaseOf(version, artifacts, Pointers(release_keys_, 2));
  }

  // A DRAFT version `id` of kModel with `files`, all uploaded.
  void CreateDraft(const std::string& id, const std::vector<File>& files) {
    v1::CreateModelRequest model;
    model.set_model_id(kModel);
    v1::Model created;
    server_.registry().CreateModel(server_.Admin().get(), model, &created);  // may exist
    v1::CreateVersionRequest request;
    request.set_parent(std::string("models/") + kModel);
    request.set_version_id(id);
    for (const File& f : files) *request.add_artifacts() = f.artifact;
    v1::Version version;
    grpc::Status s = server_.registry().CreateVersion(server_.Admin().get(), request, &version);
    ASSERT_TRUE(s.ok()) << s.error_message();
    for (const File& f : files) ASSERT_TRUE(server_.Upload(f.artifact.digest(), f.bytes).ok());
  }

  grpc::Status Publish(const std::string& name, const v1::SignedRelease* release,
                       v1::Version* out = nullptr) {
    v1::PublishVersionRequest request;
    request.set_name(name);
    if (release != nullptr) *request.mutable_release() = *release;
    v1::Version response;
    grpc::Status s = server_.registry().PublishVersion(server_.Admin().get(), request, &response);
    if (out != nullptr) *out = response;
    return s;
  }

  grpc::Status Attach(const std::string& name, const v1::SignedRelease& release,
                      v1::Version* out = nullptr) {
    v1::AttachReleaseRequest request;
    request.set_name(name);
    *request.mutable_release() = release;
    v1::Version response;
    grpc::Status s = server_.registry().AttachRelease(server_.Admin().get(), request, &response);
    if (out != nullptr) *out = response;
    return s;
  }

  // The manifest a macOS arm64 device on `tier` gets, verified as the device does against
  // `root`.
  absl::StatusOr<v1::Manifest> DeviceFetch(const v1::TrustRoot& root,
                                           v1::SignedManifest* raw = nullptr) {
    v1::SignedManifest signed_manifest;
    grpc::Status s =
        server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, &signed_manifest);
    if (!s.ok()) return FromGrpcStatus(s);
    if (raw != nullptr) *raw = signed_manifest;
    return VerifyManifest(root, signed_manifest);
  }

  TestServer server_;
  std::vector<Ed25519PrivateKey> root_keys_;
  std::vector<Ed25519PrivateKey> release_keys_;
  const File mac_ = MakeFile(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, 5000, 1);
  const File linux_ = MakeFile(v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, 7000, 2);
};

}  // namespace modeldist::testing::release_roles

#endif  // MODELDIST_TESTS_SERVICES_RELEASE_ROLES_FIXTURE_H_
