// A modeldist-server as a pull-through cache in front of another (docs/origins.md): two real
// servers on loopback, the cache's origins file naming the upstream as a `modeldist` origin
// that forwards manifests. Devices (the stubs, and the real agent library) talk only to the
// cache; they get the upstream's signed manifests and bytes, and each blob crosses once. A
// fake upstream ArtifactService that flips a byte is the fault seam for "nothing wrong is
// served or cached".
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/agent/agent.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "storage/origin/modeldist_origin.h"
#include "storage/origin/origin_factory.h"
#include "storage/origin/origin_set.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

constexpr int64_t kMiB = 1 << 20;

// Counts the Gets of the origin it wraps: how often the cache went to the upstream.
class CountingOrigin final : public origin::Origin {
 public:
  CountingOrigin(std::unique_ptr<origin::Origin> inner, std::atomic<int>* gets)
      : inner_(std::move(inner)), gets_(gets) {}
  const std::string& name() const override { return inner_->name(); }
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const origin::PutProgress& progress) override {
    return inner_->Put(key, source, size, sha256_hex, progress);
  }
  absl::StatusOr<origin::ObjectInfo> Head(const std::string& key) override {
    return inner_->Head(key);
  }
  absl::Status Get(const std::string& key, int64_t offset, int64_t length,
                   const origin::ByteSink& sink, const std::atomic<bool>* cancel) override {
    ++*gets_;
    return inner_->Get(key, offset, length, sink, cancel);
  }
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires) override {
    return inner_->DeviceUrl(key, expires);
  }
  absl::Status Delete(const std::string& key) override { return inner_->Delete(key); }

 private:
  std::unique_ptr<origin::Origin> inner_;
  std::atomic<int>* gets_;
};

// An upstream's ArtifactService that serves `bytes` with the byte at `flip` inverted, or that
// goes silent (until the call is cancelled) after `stall_after` bytes.
class FlippingArtifacts final : public v1::ArtifactService::Service {
 public:
  FlippingArtifacts(std::string bytes, int64_t flip, int64_t stall_after = -1)
      : bytes_(std::move(bytes)), stall_after_(stall_after) {
    if (flip >= 0) bytes_[static_cast<size_t>(flip)] ^= 0x5a;
  }
  grpc::Status Read(grpc::ServerContext* context, const v1::ReadRequest* request,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override {
    const int64_t end = request->limit() > 0 ? request->offset() + request->limit()
                                             : static_cast<int64_t>(bytes_.size());
    for (int64_t at = request->offset(); at < end; at += kMiB) {
      if (stall_after_ >= 0 && at >= stall_after_) {
        while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
        return grpc::Status::CANCELLED;
      }
      v1::ReadResponse response;
      response.set_offset(at);
      response.set_data(
          bytes_.substr(static_cast<size_t>(at), static_cast<size_t>(std::min(kMiB, end - at))));
      if (!writer->Write(response)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status Stat(grpc::ServerContext*, const v1::StatRequest* request,
                    v1::StatResponse* response) override {
    response->set_digest(request->digest());
    response->set_size_bytes(static_cast<int64_t>(bytes_.size()));
    return grpc::Status::OK;
  }

  // Serves this on 127.0.0.1; the port, or 0 when it could not start.
  int Start() {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    return server_ != nullptr ? port : 0;
  }
  ~FlippingArtifacts() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

 private:
  std::string bytes_;
  const int64_t stall_after_;
  std::unique_ptr<grpc::Server> server_;
};

class PullThroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = RandomBytes(static_cast<size_t>(9 * kMiB + 123), 11);
    digest_ = upstream_.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                    v1::FORMAT_GGUF, bytes_);
    upstream_.SetTier("llama8b", "stable", "models/llama/versions/1");
    ASSERT_NO_FATAL_FAILURE(WriteRoot(upstream_, root_file_));
  }

  // Root 1 of `server`, as its devices pin it.
  static void WriteRoot(TestServer& server, const std::string& path) {
    v1::GetTrustRootRequest request;
    request.set_version(1);
    v1::SignedTrustRoot root;
    grpc::ClientContext context;
    ASSERT_TRUE(server.manifests().GetTrustRoot(&context, request, &root).ok());
    ASSERT_TRUE(WriteFileAtomically(path, root.SerializeAsString(), 0600).ok());
  }

  static std::string Address(TestServer& server) {
    return absl::StrCat("127.0.0.1:", server.server().port());
  }

  // An origins entry for the modeldist-server at `target`.
  std::string Entry(const std::string& name, const std::string& target, bool forward) const {
    return absl::StrCat(
        "origins { name: \"", name, "\" modeldist { target: \"", target, "\"",
        forward ? absl::StrCat(" forward_manifests: true trust_root_file: \"", root_file_, "\"")
                : "",
        " } }\n");
  }

  // A cache with `origins` (text format), each origin counting its Gets into gets_.
  std::unique_ptr<TestServer> StartCache(const std::string& origins) {
    const std::string file = dir_.Join("origins.textproto");
    EXPECT_TRUE(WriteFileAtomically(file, origins, 0600).ok());
    services::ServerConfig config;
    config.origins_file = file;
    config.origin_factory =
        [this](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
      MD_ASSIGN_OR_RETURN(std::unique_ptr<origin::Origin> made, origin::MakeOrigin(entry));
      return std::make_unique<CountingOrigin>(std::move(made), &gets_[entry.name()]);
    };
    return std::make_unique<TestServer>(config);
  }

  TestServer upstream_;
  ScratchDir dir_;
  const std::string root_file_ = dir_.Join("upstream-root.bin");
  std::string bytes_;
  std::string digest_;
  std::map<std::string, std::atomic<int>> gets_;
};

TEST_F(PullThroughTest, DevicesGetTheUpstreamsSignedAnswersAndEachBlobCrossesOnce) {
  std::unique_ptr<TestServer> cache = StartCache(Entry("hq", Address(upstream_), true));

  v1::SignedManifest direct, cached;
  ASSERT_TRUE(upstream_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &direct).ok());
  const grpc::Status got =
      cache->GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &cached);
  ASSERT_TRUE(got.ok()) << got.error_message();
  // The upstream's signed bytes and signatures, untouched; only the unsigned parts differ.
  EXPECT_EQ(cached.manifest(), direct.manifest());
  ASSERT_EQ(cached.signatures_size(), direct.signatures_size());
  EXPECT_EQ(cached.signatures(0).SerializeAsString(), direct.signatures(0).SerializeAsString());
  EXPECT_TRUE(absl::StartsWith(cached.selection_reason(), "upstream 127.0.0.1:"))
      << cached.selection_reason();
  EXPECT_EQ(cached.mirrors_size(), 0);

  for (int64_t version : {0, 1}) {
    v1::GetTrustRootRequest request;
    request.set_version(version);
    v1::SignedTrustRoot a, b;
    grpc::ClientContext ca, cb;
    ASSERT_TRUE(upstream_.manifests().GetTrustRoot(&ca, request, &a).ok());
    ASSERT_TRUE(cache->manifests().GetTrustRoot(&cb, request, &b).ok());
    EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
  }
  v1::GetSigningKeysResponse keys;
  grpc::ClientContext keys_context;
  ASSERT_TRUE(cache->manifests().GetSigningKeys(&keys_context, {}, &keys).ok());
  ASSERT_EQ(keys.keys_size(), 1);
  EXPECT_EQ(keys.keys(0).key_id(), upstream_.server().signing_key_id());

  // Eight devices read the blob at once: one read of the upstream.
  std::vector<std::string> outs(8);
  std::vector<grpc::Status> statuses(8);
  std::vector<std::thread> readers;
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&, i] { statuses[i] = cache->ReadBlob(digest_, &outs[i]); });
  }
  for (std::thread& t : readers) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    EXPECT_TRUE(outs[i] == bytes_) << i;
  }
  EXPECT_EQ(gets_["hq"].load(), 1);

  // Cached: the upstream may go away.
  upstream_.server().Shutdown();
  std::string again;
  const grpc::Status local = cache->ReadBlob(digest_, &again, 5 * kMiB);
  ASSERT_TRUE(local.ok()) << local.error_message();
  EXPECT_TRUE(again == bytes_.substr(5 * kMiB));
  EXPECT_EQ(gets_["hq"].load(), 1);
}

TEST_F(PullThroughTest, TheAgentSyncsThroughTheCacheWithTheUpstreamsRoot) {
  std::unique_ptr<TestServer> cache = StartCache(Entry("hq", Address(upstream_), true));
  agent::SyncOptions options;
  options.server = Address(*cache);
  options.tier = "llama8b";
  options.dir = dir_.Join("device");
  options.trust_root_file = root_file_;
  options.platform = v1::PLATFORM_LINUX;
  options.arch = v1::ARCH_X86_64;
  absl::StatusOr<agent::SyncResult> synced = agent::Sync(options);
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(synced->manifest.artifact().digest(), digest_);
  EXPECT_EQ(gets_["hq"].load(), 1);

  // A key rotation upstream: the cache walks to the new root and still hands manifests on.
  v1::RotateSigningKeysRequest rotate;
  v1::SignedTrustRoot rotated;
  ASSERT_TRUE(
      upstream_.registry().RotateSigningKeys(upstream_.Admin().get(), rotate, &rotated).ok());
  v1::SignedManifest after;
  const grpc::Status got =
      cache->GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &after);
  ASSERT_TRUE(got.ok()) << got.error_message();
  absl::StatusOr<agent::SyncResult> again = agent::Sync(options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->action, agent::SyncResult::Action::kUpToDate);
}

TEST_F(PullThroughTest, WrongBytesFromAnOriginAreNeitherServedNorCached) {
  // "bad" is asked first and flips a byte in the second chunk; "hq" is the real upstream.
  FlippingArtifacts flipping(bytes_, 5 * kMiB + 7);
  const int bad_port = flipping.Start();
  ASSERT_GT(bad_port, 0);
  std::unique_ptr<TestServer> cache =
      StartCache(Entry("bad", absl::StrCat("127.0.0.1:", bad_port), false) +
                 Entry("hq", Address(upstream_), true));
  ASSERT_TRUE(cache->GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64).ok());

  std::string out;
  const grpc::Status failed = cache->ReadBlob(digest_, &out);
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::DATA_LOSS) << failed.error_message();
  EXPECT_EQ(ErrorReason(FromGrpcStatus(failed)), "CHUNK_MISMATCH") << failed.error_message();
  // Only the first chunk, which matched, was sent.
  EXPECT_LE(out.size(), static_cast<size_t>(4 * kMiB));
  EXPECT_TRUE(out == bytes_.substr(0, out.size()));

  // Nothing was cached; the next read takes "hq" first and gets the right bytes.
  std::string good;
  const grpc::Status read = cache->ReadBlob(digest_, &good);
  ASSERT_TRUE(read.ok()) << read.error_message();
  EXPECT_TRUE(good == bytes_);
  EXPECT_EQ(gets_["hq"].load(), 1);
}

TEST_F(PullThroughTest, AManifestThePinnedRootDoesNotVerifyIsNotHandedOn) {
  TestServer other;
  ASSERT_NO_FATAL_FAILURE(WriteRoot(other, root_file_));  // another server's root
  std::unique_ptr<TestServer> cache = StartCache(Entry("hq", Address(upstream_), true));
  const grpc::Status got = cache->GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64);
  EXPECT_EQ(got.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ErrorReason(FromGrpcStatus(got)), "UPSTREAM_UNTRUSTED") << got.error_message();
  // Its chain was not recorded: the cache does not read the blob through.
  std::string out;
  const grpc::Status read = cache->ReadBlob(digest_, &out);
  EXPECT_EQ(read.error_code(), grpc::StatusCode::NOT_FOUND) << read.error_message();
  EXPECT_EQ(gets_["hq"].load(), 0);
}

TEST_F(PullThroughTest, UpstreamAnswersAndSilencesReachDevicesAsSuch) {
  std::unique_ptr<TestServer> cache = StartCache(Entry("hq", Address(upstream_), true));
  // The upstream's own error, with its reason.
  const grpc::Status unbound = cache->GetManifest("nosuch", v1::PLATFORM_LINUX, v1::ARCH_X86_64);
  EXPECT_EQ(unbound.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorReason(FromGrpcStatus(unbound)), "TIER_NOT_BOUND") << unbound.error_message();
  // A bad request is refused here, without asking the upstream.
  const grpc::Status bad = cache->GetManifest("", v1::PLATFORM_LINUX, v1::ARCH_X86_64);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  upstream_.server().Shutdown();
  const grpc::Status down = cache->GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ErrorReason(FromGrpcStatus(down)), "UPSTREAM_UNAVAILABLE") << down.error_message();
  v1::GetTrustRootRequest request;
  v1::SignedTrustRoot root;
  grpc::ClientContext context;
  const grpc::Status root_down = cache->manifests().GetTrustRoot(&context, request, &root);
  EXPECT_EQ(ErrorReason(FromGrpcStatus(root_down)), "UPSTREAM_UNAVAILABLE");
}

TEST_F(PullThroughTest, TheOriginReadsRangesAndStatsBlobsOfTheUpstream) {
  absl::StatusOr<std::unique_ptr<origin::ModeldistOrigin>> made =
      origin::ModeldistOrigin::Create({.name = "hq", .target = Address(upstream_)});
  ASSERT_TRUE(made.ok()) << made.status();
  origin::ModeldistOrigin& hq = **made;
  const std::string key = "sha256/" + digest_.substr(7);
  absl::StatusOr<origin::ObjectInfo> info = hq.Head(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, static_cast<int64_t>(bytes_.size()));
  std::string got;
  ASSERT_TRUE(hq.Get(
                    key, 3 * kMiB + 5, 2 * kMiB,
                    [&](absl::string_view piece) {
                      got.append(piece.data(), piece.size());
                      return absl::OkStatus();
                    },
                    nullptr)
                  .ok());
  EXPECT_TRUE(got == bytes_.substr(3 * kMiB + 5, 2 * kMiB));
  // The access check: any answer shows the upstream is there.
  origin::ConfiguredOrigin entry;
  entry.config.set_name("hq");
  entry.config.mutable_modeldist()->set_target(Address(upstream_));
  entry.origin = std::move(*made);
  absl::StatusOr<std::vector<origin::CheckStep>> steps = origin::CheckOrigin(entry);
  ASSERT_TRUE(steps.ok()) << steps.status();
  ASSERT_EQ(steps->size(), 1u);
  EXPECT_TRUE((*steps)[0].status.ok()) << (*steps)[0].status;
  // Never written through, no device URL.
  EXPECT_EQ(entry.origin->Delete(key).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(entry.origin->DeviceUrl(key, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(origin::DigestOfKey("models/sha256/" + digest_.substr(7)).value_or(""), digest_);
  EXPECT_EQ(origin::DigestOfKey("modeldist-check/abc").status().code(),
            absl::StatusCode::kNotFound);
}

// A Read the upstream stopped answering ends soon after the read-through cancels it (its stall
// watchdog, or the server stopping), with what arrived before kept by the caller.
TEST_F(PullThroughTest, ACancelEndsAReadTheUpstreamStoppedAnswering) {
  FlippingArtifacts silent(bytes_, -1, 2 * kMiB);
  const int port = silent.Start();
  ASSERT_GT(port, 0);
  absl::StatusOr<std::unique_ptr<origin::ModeldistOrigin>> made =
      origin::ModeldistOrigin::Create({.name = "hq", .target = absl::StrCat("127.0.0.1:", port)});
  ASSERT_TRUE(made.ok()) << made.status();
  std::atomic<bool> cancel{false};
  std::atomic<int64_t> got{0};
  std::thread canceller([&] {
    while (got.load() < 2 * kMiB) absl::SleepFor(absl::Milliseconds(5));
    absl::SleepFor(absl::Milliseconds(100));
    cancel = true;
  });
  const absl::Time start = absl::Now();
  const absl::Status status = (*made)->Get(
      "sha256/" + digest_.substr(7), 0, -1,
      [&](absl::string_view piece) {
        got += static_cast<int64_t>(piece.size());
        return absl::OkStatus();
      },
      &cancel);
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(got.load(), 2 * kMiB);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(PullThroughTest, ADownUpstreamFailsTheCheck) {
  absl::StatusOr<std::unique_ptr<origin::ModeldistOrigin>> made = origin::ModeldistOrigin::Create(
      {.name = "hq",
       .target = absl::StrCat("127.0.0.1:", FreePort()),
       .retry = RetryPolicy{.max_attempts = 2, .initial_backoff = absl::Milliseconds(1)}});
  ASSERT_TRUE(made.ok()) << made.status();
  absl::StatusOr<origin::ObjectInfo> info = (*made)->Head("sha256/" + digest_.substr(7));
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable) << info.status();
}

}  // namespace
}  // namespace modeldist::testing
