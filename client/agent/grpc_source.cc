// ByteSource over ArtifactService.Read. The sink gets views into gRPC's receive buffers
// (client/download/raw_read.h), so bytes reach the chunk verifier without a copy.
//
// A second thread receives ahead of the sink, up to kReadAheadBytes: gRPC reads the socket only
// on a thread waiting for the next message, so with one thread the receive (a kernel copy of
// every byte, the HTTP/2 framing) and the sink's hashing ran in turn, and the receive was
// 0.4-0.5 of the ~1.5 CPU-s per GiB on that thread (docs/benchmarks.md, agent).
#include <grpcpp/grpcpp.h>

#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/agent/chunk_downloader.h"
#include "client/download/raw_read.h"
#include "client/rpc/channel.h"
#include "common/status.h"
#include "modeldist/v1/artifact.pb.h"

namespace modeldist::agent {
namespace {

// A fixed HTTP/2 stream window instead of gRPC's BDP-probed one. The probe kept growing the
// window (and the bytes the transport buffers ahead of us) while the agent was busy hashing
// and writing: peak RSS reached 200 MiB in an 8 GiB sync. A fixed 4 MiB window bounds that
// buffering and, measured on loopback, keeps the same throughput (docs/benchmarks.md, agent).
constexpr int kStreamWindowBytes = 4 * 1024 * 1024;
// Bytes received but not yet given to the sink, at most (plus one message). With the window,
// what the transport and this queue hold stays under 8 MiB plus a message.
constexpr int64_t kReadAheadBytes = 4 * 1024 * 1024;

// Messages of one Read stream, received on a thread of their own ahead of the consumer.
class ReadAhead {
 public:
  explicit ReadAhead(client::RawReadStream* stream) : stream_(stream) {}
  ~ReadAhead() { Stop(); }
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // RESOURCE_EXHAUSTED when no thread can be started.
  absl::Status Start() {
    try {
      thread_ = std::thread([this] { Receive(); });
    } catch (const std::exception& e) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot start the receiving thread: ", e.what()));
    }
    return absl::OkStatus();
  }

  // The next message, in order; false at the end of the stream (Finish tells why).
  bool Next(client::ReadChunk* chunk) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ReadAhead::HasMessageOrEnded));
    if (queue_.empty()) return false;
    *chunk = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= static_cast<int64_t>(chunk->size());
    return true;
  }

  // Stops receiving and joins the thread; the caller cancels the call first if it is not over
  // (a receive in progress returns only then). Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool HasMessageOrEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || ended_;
  }
  bool HasRoomOrStopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_bytes_ < kReadAheadBytes || stopped_;
  }

  void Receive() {
    for (;;) {
      client::ReadChunk chunk;
      const bool received = stream_->Next(&chunk);
      absl::MutexLock lock(&mu_);
      if (!received || stopped_) {
        ended_ = true;
        return;
      }
      queued_bytes_ += static_cast<int64_t>(chunk.size());
      queue_.push_back(std::move(chunk));
      mu_.Await(absl::Condition(this, &ReadAhead::HasRoomOrStopped));
      if (stopped_) {
        ended_ = true;
        return;
      }
    }
  }

  client::RawReadStream* const stream_;
  std::thread thread_;
  absl::Mutex mu_;
  std::deque<client::ReadChunk> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

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
    ReadAhead ahead(&stream);
    absl::Status local = ahead.Start();
    client::ReadChunk chunk;
    int64_t next = offset;
    while (local.ok() && ahead.Next(&chunk)) {
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
    ahead.Stop();
    chunk.Clear();
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
                                        .max_receive_message_bytes = client::kMaxReadMessageBytes,
                                        .fixed_stream_window_bytes = kStreamWindowBytes}));
  return std::make_unique<GrpcSource>(
      absl::StrCat(tls_ca_file.empty() ? "grpc://" : "grpcs://", target), std::move(channel));
}

}  // namespace modeldist::agent
