// ByteSource over ArtifactService.Read.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/agent/chunk_downloader.h"
#include "common/status.h"
#include "modeldist/v1/artifact.grpc.pb.h"

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
      : description_(std::move(description)),
        stub_(v1::ArtifactService::NewStub(std::move(channel))) {}

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
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = stub_->Read(context, request);
    // One response for the whole stream, so the parser reuses its data buffer.
    v1::ReadResponse response;
    int64_t next = offset;
    absl::Status local;
    while (reader->Read(&response)) {
      if (response.offset() != next) {
        local = MakeError(absl::StatusCode::kDataLoss, "SOURCE_OUT_OF_ORDER",
                          absl::StrCat(description_, " sent bytes at offset ", response.offset(),
                                       ", expected ", next));
        break;
      }
      next += static_cast<int64_t>(response.data().size());
      if (response.data().empty()) continue;
      local = sink(response.data());
      if (!local.ok()) break;
    }
    if (!local.ok()) context->TryCancel();
    grpc::Status finished = reader->Finish();
    if (!local.ok()) return local;
    if (finished.ok()) return absl::OkStatus();
    return absl::Status(static_cast<absl::StatusCode>(finished.error_code()),
                        absl::StrCat(description_, ": ", finished.error_message()));
  }

  const std::string description_;
  const std::unique_ptr<v1::ArtifactService::Stub> stub_;
  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

std::unique_ptr<ByteSource> NewGrpcSource(const std::string& target,
                                          const std::string& tls_ca_pem) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls_ca_pem.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls_ca_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamWindowBytes);
  auto channel = grpc::CreateCustomChannel(target, credentials, args);
  return std::make_unique<GrpcSource>(
      absl::StrCat(tls_ca_pem.empty() ? "grpc://" : "grpcs://", target), std::move(channel));
}

}  // namespace modeldist::agent
