// Limits that hold under abuse (services/upload_limits.h, services/transport_limits.h), each
// exceeded against the real server in-process while another client is still served: upload
// streams per client address, stalled upload streams, calls open on one connection, and a
// client that floods the server with HTTP/2 pings (Node's HTTP/2 client, tests/node).
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

// One upload-session stream left open after its first message: a client that stalls.
struct OpenUpload {
  std::unique_ptr<grpc::ClientContext> context;
  // On the heap: the writer keeps its address while the struct moves.
  std::unique_ptr<v1::WriteArtifactResponse> response =
      std::make_unique<v1::WriteArtifactResponse>();
  std::unique_ptr<grpc::ClientWriter<v1::WriteArtifactRequest>> writer;
};

// With `token`, the stream is authenticated as that credential; else with the admin token.
OpenUpload StartUpload(TestServer& server, const std::string& upload_id, const std::string& data,
                       v1::RegistryService::Stub* stub = nullptr, const std::string& token = "") {
  OpenUpload upload;
  upload.context = server.Admin();
  if (!token.empty()) {
    upload.context = std::make_unique<grpc::ClientContext>();
    upload.context->AddMetadata("authorization", "Bearer " + token);
  }
  if (stub == nullptr) stub = &server.registry();
  upload.writer = stub->WriteArtifact(upload.context.get(), upload.response.get());
  v1::WriteArtifactRequest first;
  first.set_upload_id(upload_id);
  first.set_size_bytes(1 << 20);
  first.set_data(data);
  // The server may already have refused the stream; Finish tells.
  upload.writer->Write(first);
  return upload;
}

// The server answers another client: a manifest request for a bound tier.
void ExpectManifestServed(TestServer& server, v1::ManifestService::Stub* stub = nullptr) {
  v1::GetManifestRequest request;
  request.set_tier("llama8b");
  request.set_platform(v1::PLATFORM_LINUX);
  request.set_arch(v1::ARCH_X86_64);
  v1::SignedManifest answer;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status s =
      (stub != nullptr ? *stub : server.manifests()).GetManifest(&context, request, &answer);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

std::string Id(int i) { return "stalled-upload-" + std::to_string(1000 + i); }

services::ServerConfig LimitedConfig() {
  services::ServerConfig config;
  config.uploads.max_per_peer = 2;
  // Long enough that the stalled streams still hold their slots when the third one comes, on
  // a loaded machine too.
  config.uploads.idle_timeout = absl::Seconds(2);
  return config;
}

// Waits until the server has admitted upload `id` (read its first byte).
void AwaitAdmitted(TestServer& server, const std::string& id) {
  for (int i = 0; i < 400; ++i) {
    v1::QueryUploadRequest query;
    query.set_upload_id(id);
    v1::QueryUploadResponse state;
    if (server.registry().QueryUpload(server.Admin().get(), query, &state).ok() &&
        state.committed_size() == 1) {
      return;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  ADD_FAILURE() << "upload " << id << " was never admitted";
}

TEST(UploadLimitsTest, UploadStreamsPerClientAreBoundedAndOthersAreServed) {
  TestServer server(LimitedConfig());
  server.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                     RandomBytes(1000));
  server.SetTier("llama8b", "", "models/llama/versions/1");
  std::vector<OpenUpload> open;
  open.push_back(StartUpload(server, Id(0), "a"));
  open.push_back(StartUpload(server, Id(1), "b"));
  // Both are admitted once the server has read their first message, in either order.
  AwaitAdmitted(server, Id(0));
  AwaitAdmitted(server, Id(1));

  OpenUpload third = StartUpload(server, Id(2), "c");
  third.writer->WritesDone();
  grpc::Status refused = third.writer->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(ErrorReason(FromGrpcStatus(refused)), "TOO_MANY_UPLOADS");
  EXPECT_THAT(refused.error_message(), HasSubstr("at most 2"));
  ExpectManifestServed(server);

  // The stalled streams are cancelled after the idle timeout, their bytes kept...
  for (OpenUpload& upload : open) {
    grpc::Status ended = upload.writer->Finish();
    EXPECT_EQ(ended.error_code(), grpc::StatusCode::CANCELLED) << ended.error_message();
  }
  v1::QueryUploadRequest query;
  query.set_upload_id(Id(0));
  v1::QueryUploadResponse state;
  ASSERT_TRUE(server.registry().QueryUpload(server.Admin().get(), query, &state).ok());
  EXPECT_EQ(state.committed_size(), 1);
  // ...and their slots are free again: the refused upload now completes.
  SessionUpload retry;
  retry.upload_id = Id(2);
  retry.bytes = RandomBytes(1 << 20, 3);
  grpc::Status done = server.UploadSession(retry);
  EXPECT_TRUE(done.ok()) << done.error_message();
}

// A new credential with SCOPE_PUBLISH; returns its token.
std::string PublishCredential(TestServer& server, const std::string& name) {
  v1::CreateCredentialRequest request;
  request.set_name(name);
  request.add_scopes(v1::SCOPE_PUBLISH);
  v1::CreateCredentialResponse created;
  grpc::Status s = server.registry().CreateCredential(server.Admin().get(), request, &created);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return created.token();
}

TEST(UploadLimitsTest, UploadStreamsPerCredentialAreBoundedAndOtherCredentialsUpload) {
  services::ServerConfig config;
  config.uploads.max_per_peer = 10;  // one address here: the credential limit must bite first
  config.uploads.max_per_credential = 2;
  config.uploads.idle_timeout = absl::Minutes(5);
  TestServer server(config);
  const std::string greedy = PublishCredential(server, "greedy-bot");
  const std::string other = PublishCredential(server, "other-bot");
  std::vector<OpenUpload> open;
  open.push_back(StartUpload(server, Id(20), "a", nullptr, greedy));
  open.push_back(StartUpload(server, Id(21), "b", nullptr, greedy));
  AwaitAdmitted(server, Id(20));
  AwaitAdmitted(server, Id(21));

  OpenUpload third = StartUpload(server, Id(22), "c", nullptr, greedy);
  third.writer->WritesDone();
  grpc::Status refused = third.writer->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(ErrorReason(FromGrpcStatus(refused)), "TOO_MANY_UPLOADS");
  EXPECT_THAT(refused.error_message(), HasSubstr("credential \"greedy-bot\""));
  EXPECT_THAT(refused.error_message(), HasSubstr("at most 2"));

  // Another credential, from the same address, uploads a whole blob meanwhile.
  const std::string bytes = RandomBytes(1 << 16, 5);
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + other);
  v1::WriteArtifactResponse response;
  auto writer = server.registry().WriteArtifact(context.get(), &response);
  v1::WriteArtifactRequest whole;
  whole.set_upload_id(Id(23));
  whole.set_size_bytes(static_cast<int64_t>(bytes.size()));
  whole.set_data(bytes);
  whole.set_digest(FormatDigest(Sha256::HexOf(bytes)));
  whole.set_finish_write(true);
  EXPECT_TRUE(writer->Write(whole));
  writer->WritesDone();
  grpc::Status done = writer->Finish();
  EXPECT_TRUE(done.ok()) << done.error_message();
  EXPECT_EQ(response.committed_size(), static_cast<int64_t>(bytes.size()));

  // Once one of its streams ends, the greedy credential may open another.
  open[0].context->TryCancel();
  open[0].writer->Finish();
  grpc::Status admitted;
  for (int i = 0; i < 200; ++i) {
    OpenUpload next = StartUpload(server, Id(24), "d", nullptr, greedy);
    next.writer->WritesDone();
    admitted = next.writer->Finish();
    if (ErrorReason(FromGrpcStatus(admitted)) != "TOO_MANY_UPLOADS") break;
    absl::SleepFor(absl::Milliseconds(10));  // the server may not have seen the cancel yet
  }
  EXPECT_NE(ErrorReason(FromGrpcStatus(admitted)), "TOO_MANY_UPLOADS") << admitted.error_message();
  open[1].context->TryCancel();
  open[1].writer->Finish();
}

TEST(UploadLimitsTest, CallsOpenOnOneConnectionAreBoundedAndOtherConnectionsAreServed) {
  services::ServerConfig config;
  config.transport.max_concurrent_streams = 2;
  config.uploads.max_per_peer = 10;
  TestServer server(config);
  server.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                     RandomBytes(1000));
  server.SetTier("llama8b", "", "models/llama/versions/1");
  // A connection of its own (not the shared subchannel of server.channel()).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto greedy = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server.server().port()),
                                          grpc::InsecureChannelCredentials(), args);
  auto greedy_registry = v1::RegistryService::NewStub(greedy);
  auto greedy_manifests = v1::ManifestService::NewStub(greedy);
  std::vector<OpenUpload> open;
  open.push_back(StartUpload(server, Id(10), "a", greedy_registry.get()));
  open.push_back(StartUpload(server, Id(11), "b", greedy_registry.get()));

  // A third call on that connection waits for a free stream...
  v1::GetManifestRequest request;
  request.set_tier("llama8b");
  request.set_platform(v1::PLATFORM_LINUX);
  request.set_arch(v1::ARCH_X86_64);
  v1::SignedManifest answer;
  grpc::ClientContext waiting;
  waiting.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  grpc::Status queued = greedy_manifests->GetManifest(&waiting, request, &answer);
  EXPECT_EQ(queued.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << queued.error_message();
  // ...while another connection is served at once.
  ExpectManifestServed(server);

  // Once a stream ends, the connection serves again.
  open[0].writer->WritesDone();
  open[0].writer->Finish();
  ExpectManifestServed(server, greedy_manifests.get());
  open[1].writer->WritesDone();
  open[1].writer->Finish();
}

// What tests/node/ping_flood.mjs saw after `count` pings in a row (Node's own HTTP/2 client).
google::protobuf::Struct PingFlood(TestServer& server, int count, const ScratchDir& dir) {
  const std::string out = dir.Join("ping.json");
  const std::string command = absl::StrCat(
      "node ", MODELDIST_SOURCE_DIR,
      "/tests/node/ping_flood.mjs 127.0.0.1:", server.server().port(), " ", count, " > ", out);
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  google::protobuf::Struct result;
  const std::string json = ReadFileToString(out).value_or("");
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &result).ok()) << json;
  return result;
}

TEST(UploadLimitsTest, APingFloodIsCutOffAndOthersAreServed) {
  TestServer server;
  server.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                     RandomBytes(1000));
  server.SetTier("llama8b", "", "models/llama/versions/1");
  ScratchDir dir;
  // One ping is fine: answered, the connection stays.
  google::protobuf::Struct calm = PingFlood(server, 1, dir);
  EXPECT_FALSE(calm.fields().at("goaway").bool_value());
  EXPECT_EQ(calm.fields().at("acked").number_value(), 1);
  // Twenty in a row, no data between: GOAWAY ENHANCE_YOUR_CALM (0xb), "too_many_pings".
  google::protobuf::Struct flood = PingFlood(server, 20, dir);
  EXPECT_TRUE(flood.fields().at("goaway").bool_value());
  EXPECT_EQ(flood.fields().at("errorCode").number_value(), 11);
  EXPECT_EQ(flood.fields().at("debug").string_value(), "too_many_pings");
  ExpectManifestServed(server);
}

}  // namespace
}  // namespace modeldist::testing
