#include "services/artifact_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "services/grpc_status.h"

namespace modeldist::services {

absl::Status ArtifactServiceImpl::DoRead(grpc::ServerContext* context,
                                         const v1::ReadRequest& request,
                                         grpc::ServerWriter<v1::ReadResponse>* writer) const {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request.digest()));
  if (request.offset() < 0) {
    return InvalidArgument("offset", "INVALID_OFFSET", "offset must be >= 0");
  }
  if (request.limit() < 0) {
    return InvalidArgument("limit", "INVALID_LIMIT", "limit must be >= 0 (0 = to the end)");
  }
  MD_ASSIGN_OR_RETURN(storage::BlobReader blob, blobs_->OpenBlob(hex));
  if (request.offset() > blob.size()) {
    return MakeError(absl::StatusCode::kOutOfRange, "OFFSET_PAST_END",
                     absl::StrCat("offset ", request.offset(), " is past the end of ",
                                  request.digest(), " (", blob.size(), " bytes)"),
                     {{"field", "offset"}, {"size", absl::StrCat(blob.size())}});
  }
  int64_t end = blob.size();
  if (request.limit() > 0) end = std::min(end, request.offset() + request.limit());

  v1::ReadResponse response;
  for (int64_t offset = request.offset(); offset < end;) {
    if (context->IsCancelled()) return absl::CancelledError("the client cancelled the read");
    const size_t want = static_cast<size_t>(std::min(chunk_size_, end - offset));
    std::string* data = response.mutable_data();
    data->resize(want);
    MD_ASSIGN_OR_RETURN(size_t got, blob.ReadAt(offset, data->data(), want));
    if (got == 0) {
      return MakeError(absl::StatusCode::kDataLoss, "BLOB_TRUNCATED",
                       absl::StrCat("blob ", request.digest(), " is shorter than recorded"));
    }
    data->resize(got);
    response.set_offset(offset);
    if (!writer->Write(response)) return absl::CancelledError("the client went away");
    offset += static_cast<int64_t>(got);
  }
  return absl::OkStatus();
}

grpc::Status ArtifactServiceImpl::Read(grpc::ServerContext* context, const v1::ReadRequest* request,
                                       grpc::ServerWriter<v1::ReadResponse>* writer) {
  return ToGrpcStatus(DoRead(context, *request, writer));
}

grpc::Status ArtifactServiceImpl::Stat(grpc::ServerContext* context, const v1::StatRequest* request,
                                       v1::StatResponse* response) {
  auto hex = ParseDigest("digest", request->digest());
  if (!hex.ok()) return ToGrpcStatus(hex.status());
  auto size = blobs_->Size(*hex);
  if (!size.ok()) return ToGrpcStatus(size.status());
  response->set_digest(request->digest());
  response->set_size_bytes(*size);
  response->set_chunk_size(chunk_size_);
  return grpc::Status::OK;
}

}  // namespace modeldist::services
