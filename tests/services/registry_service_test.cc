// RegistryService end to end through a real server: auth, validation (code + field in the
// message), the version lifecycle and resumable, verified uploads.
#include <string>

#include "common/digest.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "services/grpc_status.h"
#include "tests/services/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

#define EXPECT_GRPC(status, code, substring)                                  \
  do {                                                                        \
    grpc::Status s_ = (status);                                               \
    EXPECT_EQ(s_.error_code(), grpc::StatusCode::code) << s_.error_message(); \
    EXPECT_THAT(s_.error_message(), HasSubstr(substring));                    \
  } while (false)

class RegistryServiceTest : public ::testing::Test {
 protected:
  grpc::Status CreateModel(const std::string& id, grpc::ClientContext* context = nullptr) {
    v1::CreateModelRequest request;
    request.set_model_id(id);
    v1::Model response;
    auto own = server_.Admin();
    return server_.registry().CreateModel(context ? context : own.get(), request, &response);
  }
  grpc::Status CreateVersion(const std::string& model, const std::string& version,
                             const std::vector<v1::Artifact>& artifacts,
                             v1::Version* out = nullptr) {
    v1::CreateVersionRequest request;
    request.set_parent("models/" + model);
    request.set_version_id(version);
    for (const auto& a : artifacts) *request.add_artifacts() = a;
    v1::Version response;
    return server_.registry().CreateVersion(server_.Admin().get(), request, out ? out : &response);
  }
  grpc::Status Publish(const std::string& name, v1::Version* out = nullptr) {
    v1::PublishVersionRequest request;
    request.set_name(name);
    v1::Version response;
    return server_.registry().PublishVersion(server_.Admin().get(), request, out ? out : &response);
  }
  grpc::Status GetVersion(const std::string& name, v1::Version* out) {
    v1::GetVersionRequest request;
    request.set_name(name);
    return server_.registry().GetVersion(server_.Admin().get(), request, out);
  }
  v1::QueryUploadResponse Query(const std::string& digest) {
    v1::QueryUploadRequest request;
    request.set_digest(digest);
    v1::QueryUploadResponse response;
    grpc::Status s = server_.registry().QueryUpload(server_.Admin().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  TestServer server_;
  const std::string bytes_ = RandomBytes(3 * 1024 * 1024 + 17, 7);
  const v1::Artifact gguf_ =
      MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, bytes_);
};

TEST_F(RegistryServiceTest, EveryRpcRefusesMissingOrWrongToken) {
  for (const std::string& token : {std::string(""), std::string("wrong-token-0123456789")}) {
    auto context = [&] {
      auto c = std::make_unique<grpc::ClientContext>();
      if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
      return c;
    };
    auto& r = server_.registry();
    v1::Model model;
    v1::Version version;
    v1::CreateModelRequest create_model;
    create_model.set_model_id("m");
    EXPECT_GRPC(r.CreateModel(context().get(), create_model, &model), UNAUTHENTICATED, "token");
    v1::GetModelRequest get_model;
    get_model.set_name("models/m");
    EXPECT_GRPC(r.GetModel(context().get(), get_model, &model), UNAUTHENTICATED, "");
    v1::ListModelsResponse models;
    EXPECT_GRPC(r.ListModels(context().get(), {}, &models), UNAUTHENTICATED, "");
    EXPECT_GRPC(r.CreateVersion(context().get(), {}, &version), UNAUTHENTICATED, "");
    EXPECT_GRPC(r.GetVersion(context().get(), {}, &version), UNAUTHENTICATED, "");
    v1::ListVersionsResponse versions;
    EXPECT_GRPC(r.ListVersions(context().get(), {}, &versions), UNAUTHENTICATED, "");
    v1::QueryUploadResponse query;
    EXPECT_GRPC(r.QueryUpload(context().get(), {}, &query), UNAUTHENTICATED, "");
    EXPECT_GRPC(r.PublishVersion(context().get(), {}, &version), UNAUTHENTICATED, "");
    EXPECT_GRPC(r.YankVersion(context().get(), {}, &version), UNAUTHENTICATED, "");
    v1::TierBinding tier;
    EXPECT_GRPC(r.SetTier(context().get(), {}, &tier), UNAUTHENTICATED, "");
    v1::ListTiersResponse tiers;
    EXPECT_GRPC(r.ListTiers(context().get(), {}, &tiers), UNAUTHENTICATED, "");
    v1::WriteArtifactResponse written;
    auto c = context();
    auto writer = r.WriteArtifact(c.get(), &written);
    v1::WriteArtifactRequest w;
    w.set_digest(gguf_.digest());
    w.set_data("x");
    writer->Write(w);
    writer->WritesDone();
    EXPECT_GRPC(writer->Finish(), UNAUTHENTICATED, "");
  }
  // Nothing was created by the refused calls.
  v1::ListModelsResponse models;
  ASSERT_TRUE(server_.registry().ListModels(server_.Admin().get(), {}, &models).ok());
  EXPECT_EQ(models.models_size(), 0);
}

TEST_F(RegistryServiceTest, MalformedIdsNameTheField) {
  EXPECT_GRPC(CreateModel(""), INVALID_ARGUMENT, "model_id is required");
  EXPECT_GRPC(CreateModel(std::string(129, 'a')), INVALID_ARGUMENT, "model_id is 129");
  EXPECT_GRPC(CreateModel("a..b"), INVALID_ARGUMENT, "model_id must not contain \"..\"");
  EXPECT_GRPC(CreateModel("a/b"), INVALID_ARGUMENT, "model_id may only contain");
  EXPECT_GRPC(CreateModel(".hidden"), INVALID_ARGUMENT, "model_id must start");
  v1::GetModelRequest get;
  get.set_name("models/../etc");
  v1::Model model;
  EXPECT_GRPC(server_.registry().GetModel(server_.Admin().get(), get, &model), INVALID_ARGUMENT,
              "name");
}

TEST_F(RegistryServiceTest, ErrorInfoReasonReachesTheClient) {
  grpc::Status s = CreateModel("a/b");
  absl::Status back = services::FromGrpcStatus(s);
  EXPECT_EQ(ErrorReason(back), "INVALID_ID");
  EXPECT_EQ(ErrorMetadataValue(back, "field"), "model_id");
}

TEST_F(RegistryServiceTest, DuplicatesAndUnknownParents) {
  ASSERT_TRUE(CreateModel("llama").ok());
  EXPECT_GRPC(CreateModel("llama"), ALREADY_EXISTS, "models/llama");
  EXPECT_GRPC(CreateVersion("nope", "1", {gguf_}), NOT_FOUND, "models/nope");
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  EXPECT_GRPC(CreateVersion("llama", "1", {gguf_}), ALREADY_EXISTS, "models/llama/versions/1");
  v1::Version v;
  EXPECT_GRPC(GetVersion("models/llama/versions/2", &v), NOT_FOUND, "models/llama/versions/2");
}

TEST_F(RegistryServiceTest, BadArtifactFieldsAreNamed) {
  ASSERT_TRUE(CreateModel("llama").ok());
  v1::Artifact a = gguf_;
  a.set_digest("sha256:ABC");
  EXPECT_GRPC(CreateVersion("llama", "1", {gguf_, a}), INVALID_ARGUMENT, "artifacts[1].digest");
  a = gguf_;
  a.set_size_bytes(0);
  EXPECT_GRPC(CreateVersion("llama", "1", {a}), INVALID_ARGUMENT, "artifacts[0].size_bytes");
  a = gguf_;
  a.clear_platform();
  EXPECT_GRPC(CreateVersion("llama", "1", {a}), INVALID_ARGUMENT, "artifacts[0].platform");
  a = gguf_;
  a.clear_arch();
  EXPECT_GRPC(CreateVersion("llama", "1", {a}), INVALID_ARGUMENT, "artifacts[0].arch");
  a = gguf_;
  a.clear_format();
  EXPECT_GRPC(CreateVersion("llama", "1", {a}), INVALID_ARGUMENT, "artifacts[0].format");
  EXPECT_GRPC(CreateVersion("llama", "1", {}), INVALID_ARGUMENT, "artifacts");
  // None of the refused versions exists.
  v1::Version v;
  EXPECT_GRPC(GetVersion("models/llama/versions/1", &v), NOT_FOUND, "");
}

TEST_F(RegistryServiceTest, UploadPublishAndFreeze) {
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  const std::string name = "models/llama/versions/1";
  EXPECT_GRPC(Publish(name), FAILED_PRECONDITION, gguf_.digest());

  ASSERT_TRUE(server_.Upload(gguf_.digest(), bytes_).ok());
  v1::Version v;
  ASSERT_TRUE(GetVersion(name, &v).ok());
  ASSERT_EQ(v.artifacts_size(), 1);
  EXPECT_TRUE(v.artifacts(0).uploaded());
  EXPECT_EQ(v.state(), v1::Version::DRAFT);

  ASSERT_TRUE(Publish(name, &v).ok());
  EXPECT_EQ(v.state(), v1::Version::PUBLISHED);
  EXPECT_TRUE(v.has_publish_time());
  EXPECT_GRPC(Publish(name), FAILED_PRECONDITION, "");
  EXPECT_TRUE(Query(gguf_.digest()).complete());
}

TEST_F(RegistryServiceTest, InterruptedUploadResumesFromCommittedSize) {
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  const size_t half = bytes_.size() / 2;
  // A client that stops after half the bytes without finishing.
  ASSERT_TRUE(server_.Upload(gguf_.digest(), bytes_.substr(0, half), 0, false).ok());
  v1::QueryUploadResponse q = Query(gguf_.digest());
  EXPECT_EQ(q.committed_size(), static_cast<int64_t>(half));
  EXPECT_FALSE(q.complete());
  // Resuming at the wrong offset is refused and changes nothing.
  EXPECT_GRPC(server_.Upload(gguf_.digest(), bytes_, 1), INVALID_ARGUMENT, "");
  EXPECT_EQ(Query(gguf_.digest()).committed_size(), static_cast<int64_t>(half));
  // Resuming at the committed size completes it.
  ASSERT_TRUE(server_.Upload(gguf_.digest(), bytes_, static_cast<int64_t>(half)).ok());
  q = Query(gguf_.digest());
  EXPECT_TRUE(q.complete());
  EXPECT_EQ(q.committed_size(), static_cast<int64_t>(bytes_.size()));
}

TEST_F(RegistryServiceTest, CorruptUploadIsDiscarded) {
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  std::string corrupt = bytes_;
  corrupt[12345] ^= 0x01;
  EXPECT_GRPC(server_.Upload(gguf_.digest(), corrupt), DATA_LOSS, "");
  v1::QueryUploadResponse q = Query(gguf_.digest());
  EXPECT_EQ(q.committed_size(), 0);
  EXPECT_FALSE(q.complete());
  EXPECT_GRPC(Publish("models/llama/versions/1"), FAILED_PRECONDITION, "");
  // Too few bytes, finished: discarded as well.
  EXPECT_GRPC(server_.Upload(gguf_.digest(), bytes_.substr(0, 100)), DATA_LOSS,
              "has 100 bytes, expected");
  EXPECT_EQ(Query(gguf_.digest()).committed_size(), 0);
  // Too many bytes: the message that overflows is refused; the whole messages before it were
  // committed (committed_size never goes back) and the upload can still be finished.
  EXPECT_GRPC(server_.Upload(gguf_.digest(), bytes_ + "extra"), INVALID_ARGUMENT, "");
  const int64_t committed = Query(gguf_.digest()).committed_size();
  EXPECT_EQ(committed, 3 * 1024 * 1024);
  EXPECT_FALSE(Query(gguf_.digest()).complete());
  ASSERT_TRUE(server_.Upload(gguf_.digest(), bytes_, committed).ok());
  EXPECT_TRUE(Query(gguf_.digest()).complete());
}

TEST_F(RegistryServiceTest, UndeclaredOrMalformedUploadDigest) {
  EXPECT_GRPC(server_.Upload(gguf_.digest(), bytes_), NOT_FOUND, gguf_.digest());
  EXPECT_GRPC(server_.Upload("sha256:xyz", bytes_), INVALID_ARGUMENT, "digest");
  v1::QueryUploadRequest request;
  request.set_digest("md5:abc");
  v1::QueryUploadResponse response;
  EXPECT_GRPC(server_.registry().QueryUpload(server_.Admin().get(), request, &response),
              INVALID_ARGUMENT, "digest");
}

TEST_F(RegistryServiceTest, OversizedMessageIsResourceExhausted) {
  ASSERT_TRUE(CreateModel("llama").ok());
  const std::string big = RandomBytes(9 * 1024 * 1024, 3);
  v1::Artifact a = MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, big);
  ASSERT_TRUE(CreateVersion("llama", "1", {a}).ok());
  EXPECT_GRPC(server_.Upload(a.digest(), big, 0, true, big.size()), RESOURCE_EXHAUSTED, "");
  EXPECT_EQ(Query(a.digest()).committed_size(), 0);
}

TEST_F(RegistryServiceTest, YankMovesTierBackAndBumpsSequence) {
  const std::string d1 = server_.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                             v1::FORMAT_GGUF, RandomBytes(1000, 1));
  const std::string d2 = server_.PublishBlob("llama", "2", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                             v1::FORMAT_GGUF, RandomBytes(1000, 2));
  v1::TierBinding first = server_.SetTier("llama8b", "", "models/llama/versions/1");
  EXPECT_EQ(first.channel(), "stable");
  v1::TierBinding second = server_.SetTier("llama8b", "", "models/llama/versions/2");
  EXPECT_GT(second.sequence(), first.sequence());

  v1::YankVersionRequest yank;
  yank.set_name("models/llama/versions/2");
  yank.set_reason("bad outputs");
  v1::Version yanked;
  ASSERT_TRUE(server_.registry().YankVersion(server_.Admin().get(), yank, &yanked).ok());
  EXPECT_EQ(yanked.state(), v1::Version::YANKED);
  EXPECT_EQ(yanked.yank_reason(), "bad outputs");
  EXPECT_GRPC(server_.registry().YankVersion(server_.Admin().get(), yank, &yanked),
              FAILED_PRECONDITION, "");

  v1::ListTiersResponse tiers;
  ASSERT_TRUE(server_.registry().ListTiers(server_.Admin().get(), {}, &tiers).ok());
  ASSERT_EQ(tiers.tiers_size(), 1);
  EXPECT_EQ(tiers.tiers(0).version(), "models/llama/versions/1");
  EXPECT_GT(tiers.tiers(0).sequence(), second.sequence());

  // A yanked version cannot be bound again.
  v1::SetTierRequest set;
  set.set_tier("llama8b");
  set.set_version("models/llama/versions/2");
  v1::TierBinding binding;
  EXPECT_GRPC(server_.registry().SetTier(server_.Admin().get(), set, &binding), FAILED_PRECONDITION,
              "");
}

TEST_F(RegistryServiceTest, SetTierValidates) {
  v1::SetTierRequest set;
  set.set_tier("bad/tier");
  set.set_version("models/llama/versions/1");
  v1::TierBinding binding;
  EXPECT_GRPC(server_.registry().SetTier(server_.Admin().get(), set, &binding), INVALID_ARGUMENT,
              "tier");
  set.set_tier("llama8b");
  set.set_version("llama/1");
  EXPECT_GRPC(server_.registry().SetTier(server_.Admin().get(), set, &binding), INVALID_ARGUMENT,
              "version");
  set.set_version("models/llama/versions/1");
  EXPECT_GRPC(server_.registry().SetTier(server_.Admin().get(), set, &binding), NOT_FOUND, "");
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  EXPECT_GRPC(server_.registry().SetTier(server_.Admin().get(), set, &binding), FAILED_PRECONDITION,
              "");
}

TEST_F(RegistryServiceTest, ListModelsPaginates) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(CreateModel("m" + std::to_string(i)).ok());
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    v1::ListModelsRequest request;
    request.set_page_size(3);
    request.set_page_token(token);
    v1::ListModelsResponse response;
    ASSERT_TRUE(server_.registry().ListModels(server_.Admin().get(), request, &response).ok());
    for (const auto& m : response.models()) names.push_back(m.name());
    token = response.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(names.size(), 7u);
  EXPECT_EQ(names.front(), "models/m0");
  EXPECT_EQ(names.back(), "models/m6");
  v1::ListModelsRequest bad;
  bad.set_page_token("!!not-a-token!!");
  v1::ListModelsResponse response;
  EXPECT_GRPC(server_.registry().ListModels(server_.Admin().get(), bad, &response),
              INVALID_ARGUMENT, "page_token");
  bad.set_page_token("");
  bad.set_page_size(-1);
  EXPECT_GRPC(server_.registry().ListModels(server_.Admin().get(), bad, &response),
              INVALID_ARGUMENT, "page_size");
}

}  // namespace
}  // namespace modeldist::testing
