// RegistryService.ImportArtifact (services/blob_import.h) through the in-process server, with a
// MemoryOrigin as the origin holding the objects (its seams fail and count reads). A URL import
// against a real web server is in ctl_e2e_publish_test (PublishImportsAFileAlreadyHostedAtAUrl).
#include "services/blob_import.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

class ImportArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string file = dir_.Join("origins.textproto");
    ASSERT_TRUE(
        WriteFileAtomically(
            file, "origins { name: \"bucket\" http { base_url: \"https://x.example\" } }\n", 0600)
            .ok());
    services::ServerConfig config;
    config.origins_file = file;
    config.origin_factory =
        [this](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
      auto fake = std::make_unique<MemoryOrigin>(entry.name());
      bucket_ = fake.get();
      return fake;
    };
    server_ = std::make_unique<TestServer>(config);
    bytes_ = RandomBytes(9 * kMiB + 3, 5);
    digest_ = FormatDigest(Sha256::HexOf(bytes_));
    bucket_->objects["seed/llama.gguf"] = bytes_;
  }

  // Calls ImportArtifact; `progress` gets every message.
  absl::Status Import(const v1::ImportArtifactRequest& request,
                      std::vector<v1::ImportArtifactProgress>* progress = nullptr) {
    auto context = server_->Admin();
    auto reader = server_->registry().ImportArtifact(context.get(), request);
    v1::ImportArtifactProgress message;
    while (reader->Read(&message)) {
      if (progress != nullptr) progress->push_back(message);
    }
    return FromGrpcStatus(reader->Finish());
  }

  v1::ImportArtifactRequest FromBucket(const std::string& key = "seed/llama.gguf") const {
    v1::ImportArtifactRequest request;
    request.set_origin("bucket");
    request.set_key(key);
    request.set_digest(digest_);
    request.set_size_bytes(static_cast<int64_t>(bytes_.size()));
    return request;
  }

  ScratchDir dir_;
  MemoryOrigin* bucket_ = nullptr;
  std::unique_ptr<TestServer> server_;
  std::string bytes_;
  std::string digest_;
};

TEST_F(ImportArtifactTest, AnObjectInAnOriginBecomesAVerifiedBlobAVersionCanDeclare) {
  std::vector<v1::ImportArtifactProgress> progress;
  ASSERT_TRUE(Import(FromBucket(), &progress).ok());
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(progress.back().done());
  EXPECT_EQ(progress.back().bytes_done(), static_cast<int64_t>(bytes_.size()));
  EXPECT_EQ(bucket_->gets.load(), 1);
  // Stored: readable, and a version declaring it can be published without an upload.
  std::string got;
  ASSERT_TRUE(server_->ReadBlob(digest_, &got).ok());
  EXPECT_TRUE(got == bytes_);
  v1::CreateVersionRequest create;
  create.set_parent("models/seed");
  create.set_version_id("1");
  v1::Artifact* artifact = create.add_artifacts();
  artifact->set_platform(v1::PLATFORM_LINUX);
  artifact->set_arch(v1::ARCH_X86_64);
  artifact->set_format(v1::FORMAT_GGUF);
  artifact->set_digest(digest_);
  artifact->set_size_bytes(static_cast<int64_t>(bytes_.size()));
  v1::CreateModelRequest model;
  model.set_model_id("seed");
  v1::Model created_model;
  ASSERT_TRUE(server_->registry().CreateModel(server_->Admin().get(), model, &created_model).ok());
  v1::Version version;
  ASSERT_TRUE(server_->registry().CreateVersion(server_->Admin().get(), create, &version).ok());
  EXPECT_TRUE(version.artifacts(0).uploaded());
  // Again: stored already, nothing fetched.
  ASSERT_TRUE(Import(FromBucket()).ok());
  EXPECT_EQ(bucket_->gets.load(), 1);
}

TEST_F(ImportArtifactTest, WrongBytesStoreNothing) {
  v1::ImportArtifactRequest request = FromBucket();
  request.set_digest(FormatDigest(std::string(64, 'a')));
  absl::Status status = Import(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_EQ(ErrorReason(status), "DIGEST_MISMATCH");
  std::string got;
  EXPECT_EQ(server_->ReadBlob(request.digest(), &got).error_code(), grpc::StatusCode::NOT_FOUND);
  // A size the object does not have: only that many bytes are asked for, and they do not hash.
  request = FromBucket();
  request.set_size_bytes(request.size_bytes() - 1);
  EXPECT_EQ(Import(request).code(), absl::StatusCode::kDataLoss);
}

TEST_F(ImportArtifactTest, AnInterruptedImportResumesWhereItStopped) {
  bucket_->before_piece = [](int64_t offset) {
    if (offset < 5 * kMiB) return absl::OkStatus();
    return MakeError(absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE", "bucket: 503");
  };
  absl::Status failed = Import(FromBucket());
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_EQ(ErrorReason(failed), "IMPORT_SOURCE_FAILED");
  EXPECT_THAT(failed.message(), HasSubstr("origin bucket key seed/llama.gguf"));
  EXPECT_THAT(failed.message(), HasSubstr("run the import again"));

  std::vector<int64_t> offsets;
  bucket_->before_piece = [&offsets](int64_t offset) {
    offsets.push_back(offset);
    return absl::OkStatus();
  };
  std::vector<v1::ImportArtifactProgress> progress;
  ASSERT_TRUE(Import(FromBucket(), &progress).ok());
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), 5 * kMiB);
  EXPECT_EQ(progress.front().bytes_done(), 5 * kMiB);  // what was kept, said at once
  std::string got;
  ASSERT_TRUE(server_->ReadBlob(digest_, &got).ok());
  EXPECT_TRUE(got == bytes_);
}

TEST_F(ImportArtifactTest, BadSourcesAreRefusedNamingTheField) {
  v1::ImportArtifactRequest missing_key = FromBucket("seed/none.gguf");
  absl::Status status = Import(missing_key);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_EQ(ErrorReason(status), "IMPORT_SOURCE_FAILED");

  v1::ImportArtifactRequest unknown = FromBucket();
  unknown.set_origin("elsewhere");
  status = Import(unknown);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_EQ(ErrorReason(status), "ORIGIN_NOT_FOUND");

  v1::ImportArtifactRequest both = FromBucket();
  both.set_url("https://x.example/llama.gguf");
  status = Import(both);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(ErrorReason(status), "INVALID_IMPORT_SOURCE");

  v1::ImportArtifactRequest file_url = FromBucket();
  file_url.clear_origin();
  file_url.clear_key();
  file_url.set_url("file:///etc/passwd");
  status = Import(file_url);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(ErrorMetadataValue(status, "field"), "url");

  v1::ImportArtifactRequest bad_digest = FromBucket();
  bad_digest.set_digest("sha256:xyz");
  EXPECT_EQ(ErrorReason(Import(bad_digest)), "INVALID_DIGEST");
  v1::ImportArtifactRequest bad_size = FromBucket();
  bad_size.set_size_bytes(-1);
  EXPECT_EQ(ErrorReason(Import(bad_size)), "INVALID_SIZE");
  EXPECT_EQ(bucket_->gets.load(), 1);  // only the missing key was asked for
}

}  // namespace
}  // namespace modeldist::testing
