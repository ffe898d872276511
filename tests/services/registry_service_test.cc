// RegistryService end to end through a real server: auth, validation (code + field in the
// message), the version lifecycle and resumable, verified uploads.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "common/grpc_status.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kUploadId[] = "svc-test-0123456789abcdef";

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

  v1::QueryUploadResponse QuerySession(const std::string& upload_id) {
    v1::QueryUploadRequest request;
    request.set_upload_id(upload_id);
    v1::QueryUploadResponse response;
    grpc::Status s = server_.registry().QueryUpload(server_.Admin().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
  // Sends `messages` as one WriteArtifact stream.
  grpc::Status Write(const std::vector<v1::WriteArtifactRequest>& messages) {
    auto context = server_.Admin();
    v1::WriteArtifactResponse response;
    auto writer = server_.registry().WriteArtifact(context.get(), &response);
    for (const auto& m : messages) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  static v1::WriteArtifactRequest Message(const std::string& upload_id, int64_t offset,
                                          const std::string& data, bool finish = false,
                                          const std::string& digest = "") {
    v1::WriteArtifactRequest m;
    m.set_upload_id(upload_id);
    m.set_write_offset(offset);
    m.set_data(data);
    m.set_finish_write(finish);
    m.set_digest(digest);
    return m;
  }
  bool BlobsEmpty() const {
    return std::filesystem::is_empty(server_.data_dir() + "/data/blobs/sha256");
  }

  TestServer server_;
  const std::string bytes_ = RandomBytes(3 * 1024 * 1024 + 17, 7);
  const v1::Artifact gguf_ =
      MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, bytes_);
};

TEST_F(RegistryServiceTest, EveryRpcRefusesMissingOrWrongToken) {
  // More failures than one peer may have in a minute: the limit is tested in
  // credentials_test.cc.
  server_.config().max_auth_failures = 0;
  server_.Restart();
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
    // Upload sessions need the token like every other rpc of the service.
    auto sc = context();
    auto session_writer = r.WriteArtifact(sc.get(), &written);
    v1::WriteArtifactRequest s;
    s.set_upload_id(kUploadId);
    s.set_data("x");
    s.set_finish_write(true);
    s.set_digest(FormatDigest(Sha256::HexOf("x")));
    session_writer->Write(s);
    session_writer->WritesDone();
    EXPECT_GRPC(session_writer->Finish(), UNAUTHENTICATED, "");
    v1::QueryUploadRequest session_query;
    session_query.set_upload_id(kUploadId);
    EXPECT_GRPC(r.QueryUpload(context().get(), session_query, &query), UNAUTHENTICATED, "");
  }
  // No session was started.
  EXPECT_TRUE(std::filesystem::is_empty(server_.data_dir() + "/data/uploads"));
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
  absl::Status back = FromGrpcStatus(s);
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

// --- upload sessions -------------------------------------------------------------------------

TEST_F(RegistryServiceTest, SessionUploadThenDeclarePublishAndServe) {
  v1::WriteArtifactResponse written;
  ASSERT_TRUE(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_}, &written).ok());
  EXPECT_EQ(written.committed_size(), static_cast<int64_t>(bytes_.size()));
  EXPECT_EQ(written.digest(), gguf_.digest());
  v1::QueryUploadResponse q = QuerySession(kUploadId);
  EXPECT_TRUE(q.complete());
  EXPECT_EQ(q.committed_size(), static_cast<int64_t>(bytes_.size()));
  EXPECT_EQ(q.digest(), gguf_.digest());

  // Declared afterwards, the version finds its bytes stored and publishes.
  ASSERT_TRUE(CreateModel("llama").ok());
  v1::Version v;
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}, &v).ok());
  ASSERT_EQ(v.artifacts_size(), 1);
  EXPECT_TRUE(v.artifacts(0).uploaded());
  EXPECT_TRUE(Query(gguf_.digest()).complete());
  ASSERT_TRUE(Publish("models/llama/versions/1", &v).ok());
  EXPECT_EQ(v.state(), v1::Version::PUBLISHED);

  std::string got;
  ASSERT_TRUE(server_.ReadBlob(gguf_.digest(), &got).ok());
  EXPECT_EQ(got, bytes_);
}

// The blob of a publish that uploaded its bytes but never declared them goes once its session
// record expires; a declared one stays, even in a draft.
TEST_F(RegistryServiceTest, AnExpiredSessionsUndeclaredBlobIsRemovedAtRestart) {
  const std::string orphan_id = "orphan-upload-0123456789";
  const std::string orphan = RandomBytes(100000, 8);
  const std::string orphan_hex = Sha256::HexOf(orphan);
  ASSERT_TRUE(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_}).ok());
  ASSERT_TRUE(server_.UploadSession({.upload_id = orphan_id, .bytes = orphan}).ok());
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}, nullptr).ok());

  // A week and a day later (the records' mtime moved back), the server restarts.
  const auto old = std::filesystem::file_time_type::clock::now() - std::chrono::hours(8 * 24);
  for (const std::string& id : {std::string(kUploadId), orphan_id}) {
    std::filesystem::last_write_time(
        absl::StrCat(server_.data_dir(), "/data/uploads/session-", id, ".done"), old);
  }
  server_.Restart();

  v1::ReadRequest read;
  read.set_digest(FormatDigest(orphan_hex));
  grpc::ClientContext context;
  v1::ReadResponse chunk;
  auto reader = server_.artifacts().Read(&context, read);
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(server_.data_dir(), "/data/blobs/sha256/",
                                                    orphan_hex.substr(0, 2), "/", orphan_hex)));
  // The declared one publishes from the bytes it uploaded a week ago.
  v1::Version v;
  ASSERT_TRUE(Publish("models/llama/versions/1", &v).ok());
  EXPECT_EQ(v.state(), v1::Version::PUBLISHED);
}

TEST_F(RegistryServiceTest, SessionResumesAcrossStreamsAndARestart) {
  const int64_t half = static_cast<int64_t>(bytes_.size() / 2);
  v1::WriteArtifactResponse written;
  ASSERT_TRUE(server_
                  .UploadSession({.upload_id = kUploadId,
                                  .bytes = bytes_.substr(0, static_cast<size_t>(half)),
                                  .finish = false,
                                  .size_bytes = static_cast<int64_t>(bytes_.size())},
                                 &written)
                  .ok());
  EXPECT_EQ(written.committed_size(), half);
  EXPECT_TRUE(written.digest().empty());
  server_.Restart();
  v1::QueryUploadResponse q = QuerySession(kUploadId);
  EXPECT_EQ(q.committed_size(), half);
  EXPECT_FALSE(q.complete());
  EXPECT_GRPC(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_, .offset = 1}),
              INVALID_ARGUMENT, absl::StrCat("write_offset must be ", half));
  ASSERT_TRUE(
      server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_, .offset = half}).ok());
  EXPECT_EQ(QuerySession(kUploadId).digest(), gguf_.digest());
}

TEST_F(RegistryServiceTest, SessionFieldsAreValidatedAndNamed) {
  const std::string digest = gguf_.digest();
  for (const std::string& bad : {std::string("short"), std::string("../../etc/passwd-xx"),
                                 std::string(65, 'a'), std::string("has.dots.in.it.xyz")}) {
    SCOPED_TRACE(bad);
    EXPECT_GRPC(Write({Message(bad, 0, "x", true, FormatDigest(Sha256::HexOf("x")))}),
                INVALID_ARGUMENT, "upload_id must be 16 to 64 characters");
    v1::QueryUploadRequest query;
    query.set_upload_id(bad);
    v1::QueryUploadResponse response;
    EXPECT_GRPC(server_.registry().QueryUpload(server_.Admin().get(), query, &response),
                INVALID_ARGUMENT, "upload_id");
  }
  v1::WriteArtifactRequest sized = Message(kUploadId, 0, "abc");
  sized.set_size_bytes(-1);
  EXPECT_GRPC(Write({sized}), INVALID_ARGUMENT, "size_bytes");
  sized.set_size_bytes((int64_t{1} << 40) + 1);
  EXPECT_GRPC(Write({sized}), INVALID_ARGUMENT, "size_bytes");
  EXPECT_GRPC(Write({Message(kUploadId, -1, "abc")}), INVALID_ARGUMENT, "write_offset");
  EXPECT_GRPC(Write({Message(kUploadId, 0, "abc", false, digest)}), INVALID_ARGUMENT,
              "digest is sent with finish_write only");
  EXPECT_GRPC(Write({Message(kUploadId, 0, "abc"), Message("another-id-0123456789", 3, "d")}),
              INVALID_ARGUMENT, "upload_id must be the same");
  EXPECT_GRPC(Write({Message(kUploadId, 3, "def", true)}), INVALID_ARGUMENT,
              "must carry the digest");
  EXPECT_GRPC(Write({Message(kUploadId, 3, "def", true, "sha256:ABC")}), INVALID_ARGUMENT,
              "digest");
  EXPECT_GRPC(Write({Message(kUploadId, 1, "x")}), INVALID_ARGUMENT, "write_offset must be 3");
  // None of the refused final messages committed its bytes.
  EXPECT_EQ(QuerySession(kUploadId).committed_size(), 3);

  // A session of no bytes at all is refused at finish.
  EXPECT_GRPC(
      Write({Message("empty-session-0123456789", 0, "", true, FormatDigest(Sha256::HexOf("")))}),
      INVALID_ARGUMENT, "at least 1 byte of data");
  // More bytes than declared.
  v1::WriteArtifactRequest small = Message("small-session-0123456789", 0, "abcd");
  small.set_size_bytes(3);
  EXPECT_GRPC(Write({small}), INVALID_ARGUMENT, "exceeds");
  // A stream that started by digest cannot switch to a session.
  ASSERT_TRUE(CreateModel("llama").ok());
  ASSERT_TRUE(CreateVersion("llama", "1", {gguf_}).ok());
  v1::WriteArtifactRequest by_digest;
  by_digest.set_digest(digest);
  by_digest.set_data("a");
  EXPECT_GRPC(Write({by_digest, Message(kUploadId, 1, "b")}), INVALID_ARGUMENT, "upload_id");
  // QueryUpload takes one of the two.
  v1::QueryUploadRequest both;
  both.set_digest(digest);
  both.set_upload_id(kUploadId);
  v1::QueryUploadResponse response;
  EXPECT_GRPC(server_.registry().QueryUpload(server_.Admin().get(), both, &response),
              INVALID_ARGUMENT, "not both");
  EXPECT_TRUE(BlobsEmpty());
}

TEST_F(RegistryServiceTest, SessionWhoseBytesDoNotMatchTheDigestIsDataLoss) {
  std::string corrupt = bytes_;
  corrupt[12345] ^= 0x01;
  // The client claims the digest of the real bytes; the server hashed what arrived.
  EXPECT_GRPC(
      server_.UploadSession({.upload_id = kUploadId, .bytes = corrupt, .digest = gguf_.digest()}),
      DATA_LOSS, gguf_.digest());
  v1::QueryUploadResponse q = QuerySession(kUploadId);
  EXPECT_EQ(q.committed_size(), 0);
  EXPECT_FALSE(q.complete());
  EXPECT_TRUE(BlobsEmpty());
  EXPECT_TRUE(std::filesystem::is_empty(server_.data_dir() + "/data/uploads"));

  // Fewer bytes than declared: discarded as well.
  EXPECT_GRPC(server_.UploadSession({.upload_id = kUploadId,
                                     .bytes = bytes_.substr(0, 100),
                                     .size_bytes = static_cast<int64_t>(bytes_.size())}),
              DATA_LOSS, "has 100 bytes, expected");
  EXPECT_EQ(QuerySession(kUploadId).committed_size(), 0);
  EXPECT_TRUE(BlobsEmpty());

  // The session id can be used again from 0.
  ASSERT_TRUE(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_}).ok());
  EXPECT_TRUE(QuerySession(kUploadId).complete());
}

TEST_F(RegistryServiceTest, FinishedSessionTakesNoMoreBytesButRepeatsItsFinish) {
  ASSERT_TRUE(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_}).ok());
  const int64_t size = static_cast<int64_t>(bytes_.size());
  EXPECT_GRPC(server_.UploadSession({.upload_id = kUploadId, .bytes = bytes_}), ALREADY_EXISTS,
              gguf_.digest());
  // The finish message of a client that lost the first answer succeeds again.
  v1::WriteArtifactRequest finish = Message(kUploadId, size, "", true, gguf_.digest());
  EXPECT_TRUE(Write({finish}).ok());
  finish.set_digest(FormatDigest(Sha256::HexOf("other bytes")));
  EXPECT_GRPC(Write({finish}), ALREADY_EXISTS, gguf_.digest());
}

}  // namespace
}  // namespace modeldist::testing
