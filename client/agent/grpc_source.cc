// ByteSource over ArtifactService.Read. The sink gets views into gRPC's receive buffers
// (client/download/raw_read.h), so bytes reach the chunk verifier without a copy.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/agent/chunk_downloader.h"
#include "client/download/raw_read.h"
#include "client/rpc/channel.h"
#include "common/status.h"
#include "modeldist/v1/artifact.pb.h"

namespace modeldist::agent {
namespace {

// The server sends at most its chunk size (<= 4 MiB) per message; gRPC's default 4 MiB
// receive limit would refuse a full 4 MiB chunk with its framing. Bounded, so a hostile server
// still cannot make us buffer more than this per message.
constexpr int kMaxMessageBytes = 8 * 1024 * 1024;
// A fixed HTTP/2 stream window instead of gRPC's BDP-probed one. The probe kept growing the
// window (and the bytes the transport buffers ahead of us) while the agent was busy hashing
// and writing: peak RSS reached 200 MiB in an 8 GiB sync. A fixed 4 MiB window bounds that
// buffering and, measured on loopback, keeps the same throughput (docs/benchmarks.md, agent).
constexpr int kStreamWindowBytes = 4 * 1024 * 1024;

class GrpcSource final : public ByteSource {
 public:
  GrpcSource(std::string description, std::shared_ptr<grpc::Channel> channel)
      : description_(std::move(description)), channel_(std::move(channel)) {}

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      context_ = &context;
    }
    absl::Status status = ReadWith(&context, digest, offset, limit, sink);
    absl::MutexLock lock(&mu_);
    context_ = nullptr;  // before `context` goes away, so Cancel never touches a dead one
    return status;
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    // TryCancel is thread-safe, and latches if the call has not started yet.
    if (context_ != nullptr) context_->TryCancel();
  }

  std::string Describe() const override { return description_; }

 private:
  absl::Status ReadWith(grpc::ClientContext* context, const std::string& digest, int64_t offset,
                        int64_t limit, const std::function<absl::Status(absl::string_view)>& sink) {
    v1::ReadRequest request;
    request.set_digest(digest);
    request.set_offset(offset);
    request.set_limit(limit);
    client::RawReadStream stream(channel_, context, request);
    // One chunk for the whole stream, so its vectors keep their capacity.
    client::ReadChunk chunk;
    int64_t next = offset;
    absl::Status local;
    while (local.ok() && stream.Next(&chunk)) {
      if (chunk.offset != next) {
        local = MakeError(absl::StatusCode::kDataLoss, "SOURCE_OUT_OF_ORDER",
                          absl::StrCat(description_, " sent bytes at offset ", chunk.offset,
                                       ", expected ", next));
        break;
      }
      next += static_cast<int64_t>(chunk.size());
      // The pieces point into gRPC's buffers, which `chunk` keeps alive until the next Next.
      for (absl::string_view piece : chunk.data) {
        local = sink(piece);
        if (!local.ok()) break;
      }
    }
    if (!local.ok()) context->TryCancel();
    absl::Status finished = stream.Finish();
    if (!local.ok()) return local;
    // The server's reason stays on the status: the agent's exit code and JSON report use it.
    return WithContext(finished, description_);
  }

  const std::string description_;
  const std::shared_ptr<grpc::Channel> channel_;
  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ByteSource>> NewGrpcSource(const std::string& target,
                                                          const std::string& tls_ca_file) {
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                      rpc::MakeChannel({.target = target,
                                        .tls_ca_file = tls_ca_file,
                                        .max_receive_message_bytes = kMaxMessageBytes,
                                        .fixed_stream_window_bytes = kStreamWindowBytes}));
  return std::make_unique<GrpcSource>(
      absl::StrCat(tls_ca_file.empty() ? "grpc://" : "grpcs://", target), std::move(channel));
}

}  // namespace modeldist::agent
