#include "services/artifact_service.h"

#include <grpc/slice.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "services/malformed_request.h"
#include "services/request_validation.h"

namespace modeldist::services {
namespace {

// ReadResponse's tags: field number << 3 | wire type.
constexpr char kOffsetTag = (1 << 3) | 0;  // varint
constexpr char kDataTag = (2 << 3) | 2;    // length-delimited

size_t PutVarint(uint64_t value, char* out) {
  size_t n = 0;
  while (value >= 0x80) {
    out[n++] = static_cast<char>(value | 0x80);
    value >>= 7;
  }
  out[n++] = static_cast<char>(value);
  return n;
}

// The client cancelled or went away: nobody reads the answer, but it carries a reason as every
// error does.
absl::Status ReadCancelled(absl::string_view why) {
  return MakeError(absl::StatusCode::kCancelled, "READ_CANCELLED", why);
}

}  // namespace

size_t ReadResponseHeader(int64_t offset, size_t data_size, char* out) {
  size_t n = 0;
  if (offset != 0) {
    out[n++] = kOffsetTag;
    n += PutVarint(static_cast<uint64_t>(offset), out + n);  // int64: two's complement
  }
  if (data_size != 0) {
    out[n++] = kDataTag;
    n += PutVarint(data_size, out + n);
  }
  return n;
}

absl::StatusOr<ArtifactServiceImpl::ReadPlan> ArtifactServiceImpl::PlanRead(
    const v1::ReadRequest& request) const {
  std::string hex;
  MD_RETURN_IF_ERROR(
      RequestCheck()
          .Digest("digest", request.digest(), &hex)
          .NotNegative("offset", request.offset(), "INVALID_OFFSET")
          .NotNegative("limit", request.limit(), "INVALID_LIMIT", " (0 means to the end)")
          .status());
  ReadPlan plan;
  absl::StatusOr<storage::BlobReader> blob = blobs_->OpenBlob(hex);
  if (storage::IsNotStored(blob.status()) && read_through_ != nullptr) {
    MD_ASSIGN_OR_RETURN(plan.fetch, read_through_->Fetch(hex));
    if (plan.fetch == nullptr) blob = blobs_->OpenBlob(hex);  // stored meanwhile
  }
  int64_t size = 0;
  if (plan.fetch != nullptr) {
    size = plan.fetch->size();
  } else {
    MD_RETURN_IF_ERROR(blob.status());
    size = blob->size();
    plan.blob.emplace(*std::move(blob));
  }
  if (metrics_ != nullptr) metrics_->BlobRead(read_through_ != nullptr, plan.fetch != nullptr);
  if (request.offset() > size) {
    return MakeError(absl::StatusCode::kOutOfRange, "OFFSET_PAST_END",
                     absl::StrCat("offset ", request.offset(), " is past the end of ",
                                  request.digest(), " (", size, " bytes)"),
                     {{"field", "offset"}, {"size", absl::StrCat(size)}});
  }
  plan.offset = request.offset();
  plan.end = size;
  if (request.limit() > 0) plan.end = std::min(plan.end, request.offset() + request.limit());
  return plan;
}

// One Read stream. Its steps run on the read pool (parse, validate, blocking pread) or on gRPC's
// threads (OnWriteDone, and preads the page cache can serve at once); exactly one step is
// pending at any time, and it either continues the stream or Finishes it, so Finish is called
// once and nothing touches the reactor after OnDone.
class ArtifactServiceImpl::ReadReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  ReadReactor(ArtifactServiceImpl* service, grpc::CallbackServerContext* context,
              const grpc::ByteBuffer& request)
      : service_(service), context_(context), request_(request) {
    // Validation opens the blob file, so it runs on the pool. StartWrite and Finish may be
    // called before gRPC gets the reactor back from Read; gRPC queues them.
    service_->read_pool_.Run([this] { Start(); });
  }

  void OnWriteDone(bool ok) override {
    message_.Clear();  // the transport is done with the slice
    if (!ok) {
      Finish(ToGrpcStatus(ReadCancelled("the client went away")));
    } else if (plan_->offset >= plan_->end) {
      Finish(grpc::Status::OK);
    } else if (plan_->fetch != nullptr) {
      NextFetched();
    } else {
      NextMessage(/*may_block=*/false);
    }
  }

  void OnDone() override { delete this; }

 private:
  void Start() {
    v1::ReadRequest request;
    // The same parse as a generated handler's; on failure the answer every method gives to
    // bytes that are not its request (malformed_request.h), not gRPC's empty INTERNAL.
    if (!grpc::SerializationTraits<v1::ReadRequest>::Deserialize(&request_, &request).ok()) {
      Finish(ToGrpcStatus(MalformedRequestError(v1::ReadRequest::descriptor()->full_name())));
      return;
    }
    request_digest_ = request.digest();
    absl::StatusOr<ReadPlan> plan = service_->PlanRead(request);
    if (!plan.ok()) {
      // The digest parsed if the failure can be damage (INVALID_ARGUMENT is not).
      if (absl::StatusOr<std::string> hex = ParseDigest("digest", request.digest()); hex.ok()) {
        service_->ReportDamage(*hex, plan.status());
      }
      Finish(ToGrpcStatus(plan.status()));
      return;
    }
    plan_.emplace(*std::move(plan));
    if (plan_->offset >= plan_->end) {
      Finish(grpc::Status::OK);  // offset == size: an empty read
      return;
    }
    if (plan_->fetch != nullptr) {
      NextFetched();
      return;
    }
    check_.emplace(&*plan_->blob);
    NextMessage(/*may_block=*/true);
  }

  // Read-through: the next message, once the fetch verified its bytes (read_through.h). It
  // ends at a chain chunk's end at the latest, as from a stored blob.
  void NextFetched() {
    if (context_->IsCancelled()) {
      Finish(ToGrpcStatus(ReadCancelled("the client cancelled the read")));
      return;
    }
    const int64_t chunk_end =
        (plan_->offset / storage::kChunkDigestBytes + 1) * storage::kChunkDigestBytes;
    const int64_t end =
        std::min({plan_->end, plan_->offset + service_->read_message_bytes_, chunk_end});
    StartSlice(static_cast<size_t>(end - plan_->offset));
    plan_->fetch->WhenReady(end, [this] { service_->read_pool_.Run([this] { FillFetched(); }); });
  }

  // On the pool: the message's bytes are verified (or the fetch failed).
  void FillFetched() {
    const BlobFetch::Progress progress = plan_->fetch->progress();
    if (progress.verified < plan_->offset + static_cast<int64_t>(want_)) {
      Finish(ToGrpcStatus(progress.error));
      return;
    }
    absl::StatusOr<size_t> got = plan_->fetch->ReadAt(plan_->offset, data_, want_);
    if (!got.ok()) {
      Finish(ToGrpcStatus(got.status()));
      return;
    }
    if (*got != want_) {
      Finish(ToGrpcStatus(
          MakeError(absl::StatusCode::kUnavailable, "IO_ERROR",
                    absl::StrCat("the fetched file of ", request_digest_, " ended early; retry"))));
      return;
    }
    filled_ = want_;
    SendMessage();
  }

  // A fresh slice for a message of `want` bytes.
  void StartSlice(size_t want) {
    want_ = want;
    // The header's length varint depends on how many bytes the reads return, so the bytes go
    // at a fixed distance from the slice's start and the header is written right before them
    // (SendMessage). _large: always a heap slice, never inlined in the grpc_slice struct, so
    // `data_` stays valid once the struct is handed to `slice_`.
    grpc_slice raw = grpc_slice_malloc_large(kMaxReadResponseHeaderBytes + want_);
    data_ = reinterpret_cast<char*>(GRPC_SLICE_START_PTR(raw)) + kMaxReadResponseHeaderBytes;
    slice_ = grpc::Slice(raw, grpc::Slice::STEAL_REF);
    filled_ = 0;
  }

  // Starts the next message, which ends at the end of its chain chunk at the latest (so each
  // is checked against one chain entry). Off the pool (`may_block` false) only what the page
  // cache holds is read here, and sent at once when its chunk needs no hashing
  // (ServedBytesCheck::CanSkip), so a warm, verified blob streams without a thread hop per
  // message; anything else (a disk read, hashing) is done on the pool.
  void NextMessage(bool may_block) {
    if (context_->IsCancelled()) {
      Finish(ToGrpcStatus(ReadCancelled("the client cancelled the read")));
      return;
    }
    const int64_t end =
        std::min(plan_->end, check_->MessageEnd(plan_->offset, service_->read_message_bytes_));
    StartSlice(static_cast<size_t>(end - plan_->offset));
    if (!may_block) {
      absl::StatusOr<size_t> got = plan_->blob->ReadCachedAt(plan_->offset, data_, want_);
      if (!got.ok()) {
        Finish(ToGrpcStatus(got.status()));
        return;
      }
      filled_ = *got;
      if (filled_ == want_ && check_->CanSkip(plan_->offset, /*from_cache=*/true)) {
        CheckAndSend(/*from_cache=*/true);
        return;
      }
      service_->read_pool_.Run([this] { FillAndSend(); });
      return;
    }
    FillAndSend();
  }

  // On the pool: reads the rest of the message's bytes, from the page cache if it has them,
  // else blocking, then checks and sends them.
  void FillAndSend() {
    const absl::Status checked =
        check_->FillAndCheck(plan_->offset, data_, want_, filled_, plan_->end);
    if (!checked.ok()) {
      FinishDamaged(checked);  // what is not damage (an I/O error) only ends the call
      return;
    }
    filled_ = want_;
    SendMessage();
  }

  // Lets the `filled_` bytes out only when the check passes; a mismatch ends the stream.
  void CheckAndSend(bool from_cache) {
    absl::Status checked =
        check_->Check(plan_->offset, absl::string_view(data_, filled_), from_cache, plan_->end);
    if (!checked.ok()) {
      FinishDamaged(checked);
      return;
    }
    SendMessage();
  }

  // Runs on the pool (CanSkip never lets a failing check run inline).
  void FinishDamaged(const absl::Status& status) {
    service_->ReportDamage(plan_->blob->record().hex(), status);
    Finish(ToGrpcStatus(status));
  }

  // Writes the header before the `filled_` bytes and hands the message to gRPC.
  void SendMessage() {
    char header[kMaxReadResponseHeaderBytes];
    const size_t header_size = ReadResponseHeader(plan_->offset, filled_, header);
    std::memcpy(data_ - header_size, header, header_size);
    grpc::Slice message = slice_.sub(kMaxReadResponseHeaderBytes - header_size,
                                     kMaxReadResponseHeaderBytes + filled_);
    slice_ = grpc::Slice();
    message_ = grpc::ByteBuffer(&message, 1);
    plan_->offset += static_cast<int64_t>(filled_);
    if (service_->metrics_ != nullptr) {
      service_->metrics_->served(/*http=*/false, plan_->fetch != nullptr)
          ->Add(static_cast<int64_t>(filled_));
    }
    StartWrite(&message_);
  }

  ArtifactServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer request_;
  std::string request_digest_;
  std::optional<ReadPlan> plan_;                    // set once the request is valid
  std::optional<storage::ServedBytesCheck> check_;  // of plan_->blob
  // The message being read: `want_` bytes go to `data_` in `slice_`; `filled_` are there.
  grpc::Slice slice_;
  char* data_ = nullptr;
  size_t want_ = 0;
  size_t filled_ = 0;
  grpc::ByteBuffer message_;  // the one message in flight
};

void ArtifactServiceImpl::ReportDamage(absl::string_view hex, const absl::Status& problem) {
  if (health_ != nullptr) health_->Report(hex, problem);  // it ignores what is not damage
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* ArtifactServiceImpl::Read(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new ReadReactor(this, context, *request);
}

grpc::Status ArtifactServiceImpl::Stat(grpc::ServerContext* context, const v1::StatRequest* request,
                                       v1::StatResponse* response) {
  auto hex = ParseDigest("digest", request->digest());
  if (!hex.ok()) return ToGrpcStatus(hex.status());
  absl::StatusOr<int64_t> size = blobs_->Size(*hex);
  if (storage::IsNotStored(size.status()) && read_through_ != nullptr) {
    // A Read would fetch it from the origins; its size is known without fetching.
    absl::StatusOr<RemoteBlob> remote = read_through_->Lookup(*hex);
    if (remote.ok()) size = remote->size;
  }
  if (!size.ok()) {
    ReportDamage(*hex, size.status());
    return ToGrpcStatus(size.status());
  }
  response->set_digest(request->digest());
  response->set_size_bytes(*size);
  response->set_read_message_bytes(read_message_bytes_);
  return grpc::Status::OK;
}

}  // namespace modeldist::services
