#include "storage/origin/modeldist_origin.h"

#include <grpcpp/grpcpp.h>

#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/download/raw_read.h"
#include "client/rpc/channel.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "storage/origin/origin_config.h"

namespace modeldist::origin {
namespace {

// How often a Read in progress looks at the caller's cancel flag.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);

absl::Status ReadOnly(const std::string& name, const char* what) {
  return ReadOnlyOriginError(name, "a modeldist origin", what,
                             "publish to the upstream server instead");
}

absl::Status Cancelled() {
  return MakeError(absl::StatusCode::kCancelled, "ORIGIN_READ_CANCELLED", "the read was cancelled");
}

// Cancels `context` soon after `*cancel` turns true, for as long as this lives: a Read blocked
// on the network returns only once its call is cancelled.
class CancelWatch {
 public:
  CancelWatch(const std::atomic<bool>* cancel, grpc::ClientContext* context) {
    if (cancel == nullptr) return;
    thread_ = std::thread([this, cancel, context] {
      while (!done_.WaitForNotificationWithTimeout(kCancelPoll)) {
        if (cancel->load()) {
          context->TryCancel();
          return;
        }
      }
    });
  }
  ~CancelWatch() {
    done_.Notify();
    if (thread_.joinable()) thread_.join();
  }
  CancelWatch(const CancelWatch&) = delete;
  CancelWatch& operator=(const CancelWatch&) = delete;

 private:
  absl::Notification done_;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::string> DigestOfKey(const std::string& key) {
  constexpr char kMark[] = "sha256/";
  const size_t at = key.rfind(kMark);
  if (at != std::string::npos) {
    absl::StatusOr<std::string> hex =
        ParseDigest("key", absl::StrCat("sha256:", key.substr(at + sizeof(kMark) - 1)));
    if (hex.ok()) return FormatDigest(*hex);
  }
  return MakeError(absl::StatusCode::kNotFound, "ORIGIN_KEY_NOT_A_BLOB",
                   absl::StrCat("\"", key,
                                "\" names no blob (a modeldist origin holds only "
                                "sha256/<hex>)"));
}

absl::StatusOr<std::unique_ptr<ModeldistOrigin>> ModeldistOrigin::Create(
    ModeldistOriginOptions options) {
  rpc::ChannelOptions channel;
  channel.target = options.target;
  channel.tls_ca_file = options.ca_file;
  channel.max_receive_message_bytes = client::kMaxReadMessageBytes;
  // A read-through can wait on one long Read; pings find a dead upstream under it.
  channel.keepalive_time = absl::Seconds(30);
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> built, rpc::MakeChannel(channel));
  return std::unique_ptr<ModeldistOrigin>(new ModeldistOrigin(std::move(options), built));
}

absl::Status ModeldistOrigin::Put(const std::string&, const http::BodyReader&, int64_t,
                                  const std::string&, const PutProgress&) {
  return ReadOnly(options_.name, "store objects");
}

absl::Status ModeldistOrigin::Delete(const std::string&) {
  return ReadOnly(options_.name, "delete objects");
}

absl::StatusOr<std::string> ModeldistOrigin::DeviceUrl(const std::string&, int64_t) {
  return MakeError(absl::StatusCode::kFailedPrecondition, "ORIGIN_NO_DEVICE_URL",
                   absl::StrCat(options_.name,
                                " is a modeldist origin: devices read its blobs through this "
                                "server, not by URL"));
}

absl::StatusOr<ObjectInfo> ModeldistOrigin::Head(const std::string& key) {
  absl::StatusOr<std::string> digest = DigestOfKey(key);
  if (!digest.ok()) digest = FormatDigest(Sha256::HexOf(key));
  const std::string where = absl::StrCat(options_.name, ": Stat ", *digest);
  v1::ArtifactService::Stub stub(channel_);
  v1::StatRequest request;
  request.set_digest(*digest);
  return RetryCall(options_.retry, [&]() -> absl::StatusOr<ObjectInfo> {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::StatResponse response;
    const grpc::Status status = stub.Stat(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status, where);
    ObjectInfo info;
    info.size = response.size_bytes();
    info.sha256_hex = digest->substr(digest->find(':') + 1);
    return info;
  });
}

absl::Status ModeldistOrigin::Get(const std::string& key, int64_t offset, int64_t length,
                                  const ByteSink& sink, const std::atomic<bool>* cancel) {
  MD_ASSIGN_OR_RETURN(std::string digest, DigestOfKey(key));
  Retrier retrier(options_.retry);
  for (;;) {
    int64_t delivered = 0;
    absl::Status status = ReadOnce(digest, offset, length, sink, cancel, &delivered);
    offset += delivered;
    if (length >= 0) length -= delivered;
    if (status.ok()) return status;
    if (delivered > 0) retrier.Progressed();
    std::optional<absl::Duration> wait = retrier.NextWait(status);
    if (!wait.has_value()) return status;
    absl::SleepFor(*wait);
    if (cancel != nullptr && cancel->load()) return Cancelled();
  }
}

absl::Status ModeldistOrigin::ReadOnce(const std::string& digest, int64_t offset, int64_t length,
                                       const ByteSink& sink, const std::atomic<bool>* cancel,
                                       int64_t* delivered) {
  const std::string where = absl::StrCat(options_.name, ": Read ", digest);
  if (length == 0) return absl::OkStatus();
  v1::ReadRequest request;
  request.set_digest(digest);
  request.set_offset(offset);
  if (length > 0) request.set_limit(length);
  grpc::ClientContext context;
  client::RawReadStream stream(channel_, &context, request);
  CancelWatch watch(cancel, &context);
  absl::Status stopped;  // the sink's error, or an answer out of order
  client::ReadChunk chunk;
  while (stopped.ok() && stream.Next(&chunk)) {
    if (chunk.offset != offset + *delivered) {
      stopped = MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                          absl::StrCat(where, ": a message starts at byte ", chunk.offset,
                                       ", not at ", offset + *delivered));
      break;
    }
    for (absl::string_view piece : chunk.data) {
      stopped = sink(piece);
      if (!stopped.ok()) break;
      *delivered += static_cast<int64_t>(piece.size());
    }
  }
  if (!stopped.ok()) context.TryCancel();
  absl::Status status = stream.Finish();
  if (!stopped.ok()) return stopped;
  if (cancel != nullptr && cancel->load()) return Cancelled();
  if (!status.ok()) return WithContext(status, where);
  if (length > 0 && *delivered < length) {
    return MakeError(absl::StatusCode::kOutOfRange, "ORIGIN_OBJECT_SHORT",
                     absl::StrCat(where, ": the blob ended at byte ", offset + *delivered,
                                  ", before byte ", offset + length));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::origin
