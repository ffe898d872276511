// The model checks at PublishVersion (services/publish_checks.h): a GGUF or CoreML zip that a
// device could not load is refused with the artifact and the problem named, the version stays a
// DRAFT, and what a good file says about itself is kept on the artifact and shown in
// GetManifest's unsigned model_info.
#include <string>

#include "gtest/gtest.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "services/server.h"
#include "tests/testing/error_contract.h"
#include "tests/testing/model_files.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

// CreateModel (once) + CreateVersion of one macOS artifact + upload, then PublishVersion's
// status.
grpc::Status PublishOne(TestServer& server, const std::string& version, v1::Format format,
                        const std::string& bytes) {
  v1::CreateModelRequest model;
  model.set_model_id("m");
  v1::Model created;
  server.registry().CreateModel(server.Admin().get(), model, &created);
  v1::CreateVersionRequest request;
  request.set_parent("models/m");
  request.set_version_id(version);
  *request.add_artifacts() = MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, format, bytes);
  v1::Version draft;
  grpc::Status s = server.registry().CreateVersion(server.Admin().get(), request, &draft);
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = server.Upload(request.artifacts(0).digest(), bytes);
  EXPECT_TRUE(s.ok()) << s.error_message();
  v1::PublishVersionRequest publish;
  publish.set_name("models/m/versions/" + version);
  v1::Version published;
  return server.registry().PublishVersion(server.Admin().get(), publish, &published);
}

class PublishChecksTest : public ::testing::Test {
 protected:
  grpc::Status TryPublish(const std::string& version, v1::Format format, const std::string& bytes) {
    return PublishOne(server_, version, format, bytes);
  }

  v1::Version GetVersion(const std::string& version) {
    v1::GetVersionRequest request;
    request.set_name("models/m/versions/" + version);
    v1::Version out;
    grpc::Status s = server_.registry().GetVersion(server_.Admin().get(), request, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  TestServer server_{services::ServerConfig{}, TestServer::ModelChecks::kOn};
};

TEST(PublishChecksDefaultTest, OnUnlessTurnedOff) {
  EXPECT_TRUE(services::ServerConfig{}.check_models);
}

TEST_F(PublishChecksTest, GoodGgufIsPublishedWithWhatItHolds) {
  ASSERT_TRUE(TryPublish("1", v1::FORMAT_GGUF, MakeGguf(GgufSpec{})).ok());
  v1::Version version = GetVersion("1");
  ASSERT_EQ(version.artifacts_size(), 1);
  const v1::ModelInfo& info = version.artifacts(0).model_info();
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_EQ(info.name(), "Tiny Llama");
  EXPECT_EQ(info.context_length(), 2048);
  EXPECT_EQ(info.tokenizer(), "llama");
  EXPECT_EQ(info.vocabulary_size(), 5);
  EXPECT_EQ(info.quantization(), "Q4_K_M");
  EXPECT_EQ(info.item_count(), 3);
  EXPECT_EQ(info.parameter_count(), 64 * 5 + 256 * 4 + 64);

  // Devices (and people reading manifests) see it too, outside the signed bytes.
  server_.SetTier("llama8b", "", "models/m/versions/1");
  v1::SignedManifest manifest;
  ASSERT_TRUE(server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, &manifest).ok());
  EXPECT_EQ(manifest.model_info().SerializeAsString(), info.SerializeAsString());
  v1::Manifest signed_part;
  ASSERT_TRUE(signed_part.ParseFromString(manifest.manifest()));
  EXPECT_EQ(signed_part.artifact().format(), v1::FORMAT_GGUF);

  // Kept in the catalog: a restarted server still has it.
  server_.Restart();
  EXPECT_EQ(GetVersion("1").artifacts(0).model_info().architecture(), "llama");
}

TEST_F(PublishChecksTest, GoodCoreMlZipIsPublishedWithWhatItHolds) {
  ASSERT_TRUE(TryPublish("1", v1::FORMAT_COREML_ZIP, MakeCoreMlZip(CoreMlZipSpec{})).ok());
  const v1::ModelInfo info = GetVersion("1").artifacts(0).model_info();
  EXPECT_EQ(info.name(), "TinyLlama");
  EXPECT_EQ(info.container(), "mlpackage");
  EXPECT_THAT(info.tokenizer(), HasSubstr("tokenizer.json"));
}

TEST_F(PublishChecksTest, BrokenGgufIsRefusedAndTheVersionStaysADraft) {
  GgufSpec spec;
  spec.omit_context_length = true;
  grpc::Status s = TryPublish("1", v1::FORMAT_GGUF, MakeGguf(spec));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReasonOf(s), "GGUF_INVALID");
  EXPECT_THAT(s.error_message(), HasSubstr("PLATFORM_MACOS/ARCH_ARM64/FORMAT_GGUF"));
  EXPECT_THAT(s.error_message(), HasSubstr("context_length"));
  EXPECT_EQ(GetVersion("1").state(), v1::Version::DRAFT);

  // Opaque bytes labelled GGUF are refused just the same, and say where.
  s = TryPublish("2", v1::FORMAT_GGUF, "this is not a model file at all");
  EXPECT_EQ(ReasonOf(s), "GGUF_INVALID");
  EXPECT_EQ(GetVersion("2").state(), v1::Version::DRAFT);
}

TEST_F(PublishChecksTest, BrokenGgufDataIsRefusedWithItsOffset) {
  // The file ends before the last tensor's data does.
  std::string bytes = MakeGguf(GgufSpec{});
  bytes.resize(bytes.size() - 100);
  grpc::Status s = TryPublish("1", v1::FORMAT_GGUF, bytes);
  EXPECT_EQ(ReasonOf(s), "GGUF_INVALID");
  EXPECT_THAT(s.error_message(), HasSubstr("output_norm.weight"));
}

TEST_F(PublishChecksTest, CoreMlZipWithoutTokenizerIsRefused) {
  CoreMlZipSpec spec;
  spec.top_level_files.clear();
  grpc::Status s = TryPublish("1", v1::FORMAT_COREML_ZIP, MakeCoreMlZip(spec));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReasonOf(s), "COREML_ZIP_INVALID");
  EXPECT_THAT(s.error_message(), HasSubstr("tokenizer"));
  EXPECT_EQ(GetVersion("1").state(), v1::Version::DRAFT);
}

TEST_F(PublishChecksTest, CoreMlZipWithAnEscapingEntryIsRefusedByName) {
  CoreMlZipSpec spec;
  spec.extra_entries.push_back({.name = "../evil.sh", .contents = "#!/bin/sh\n"});
  grpc::Status s = TryPublish("1", v1::FORMAT_COREML_ZIP, MakeCoreMlZip(spec));
  EXPECT_EQ(ReasonOf(s), "COREML_ZIP_INVALID");
  EXPECT_THAT(s.error_message(), HasSubstr("../evil.sh"));
}

TEST_F(PublishChecksTest, FormatsWithoutChecksAreNotRead) {
  EXPECT_TRUE(TryPublish("1", v1::FORMAT_ONNX, "opaque onnx bytes").ok());
  EXPECT_FALSE(GetVersion("1").artifacts(0).has_model_info());
}

TEST(PublishChecksRequiredFilesTest, TheServersListIsWhatACoreMlZipMustHold) {
  services::ServerConfig config;
  config.coreml_required_files = {"tokenizer.json", "generation_config.json"};
  TestServer server(config, TestServer::ModelChecks::kOn);
  // The zip holds tokenizer.json, not generation_config.json.
  grpc::Status s = PublishOne(server, "1", v1::FORMAT_COREML_ZIP, MakeCoreMlZip(CoreMlZipSpec{}));
  EXPECT_EQ(ReasonOf(s), "COREML_ZIP_INVALID");
  EXPECT_THAT(s.error_message(), HasSubstr("generation_config.json"));
}

TEST(PublishChecksOffTest, OpaqueBytesArePublishedWithoutModelInfo) {
  TestServer server;  // the harness's default: checks off
  server.PublishBlob("m", "1", v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, "not gguf");
  v1::GetVersionRequest request;
  request.set_name("models/m/versions/1");
  v1::Version version;
  ASSERT_TRUE(server.registry().GetVersion(server.Admin().get(), request, &version).ok());
  EXPECT_EQ(version.state(), v1::Version::PUBLISHED);
  EXPECT_FALSE(version.artifacts(0).has_model_info());
}

}  // namespace
}  // namespace modeldist::testing
