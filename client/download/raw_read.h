// File: raw_read.h
//
// ArtifactService.Read without the protobuf parse copy.
//
// The generated stub parses every ReadResponse into a `std::string data`, copying each byte out
// of gRPC's received slices. RawReadStream instead receives each message as a grpc::ByteBuffer
// and parses the wire format itself (ParseReadResponse), handing out `data` as views into the
// slices gRPC received: no byte is copied between the socket read and the caller.
//
// Example:
//   grpc::ClientContext context;
//   RawReadStream stream(channel, &context, request);
//   ReadChunk chunk;
//   while (stream.Next(&chunk)) {
//     for (absl::string_view piece : chunk.data) Consume(chunk.offset, piece);
//   }
//   absl::Status status = stream.Finish();
#ifndef MODELDIST_CLIENT_DOWNLOAD_RAW_READ_H_
#define MODELDIST_CLIENT_DOWNLOAD_RAW_READ_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>  // SerializationTraits for the ReadRequest

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "modeldist/v1/artifact.pb.h"

namespace modeldist::client {

// The receive limit for a channel that reads ArtifactService.Read: a server sends at most its
// --chunk-size (<= 4 MiB) of data per message, which with its framing is more than gRPC's
// default 4 MiB limit would take. Bounded, so that a hostile server still cannot make the reader
// buffer more than this per message.
inline constexpr int kMaxReadMessageBytes = 8 * 1024 * 1024;

// Parses one serialized modeldist.v1.ReadResponse, given as `slices` in order (a message may be
// cut anywhere, even inside a varint), without copying it: `*data` receives views into `slices`
// covering the `data` field, one per slice it spans (no empty views). Fields may come in any
// order; as in protobuf, the last occurrence of a field wins. Unknown fields are skipped by
// their wire type.
// Errors: DATA_LOSS, naming the field and byte position, for a truncated or over-long varint, a
// length running past the end, a known field with the wrong wire type, a bad tag or wire type,
// or an unbalanced group. `*offset` and `*data` are then unspecified.
absl::Status ParseReadResponse(absl::Span<const absl::string_view> slices, int64_t* offset,
                               std::vector<absl::string_view>* data);

// One received ReadResponse. `data` points into `slices`, references on gRPC's receive buffers
// that stay valid as long as this object: moving it keeps `data` valid (the slices stay where
// they are in the moved vector's storage), copying is not allowed.
struct ReadChunk {
  ReadChunk() = default;
  ReadChunk(ReadChunk&&) = default;
  ReadChunk& operator=(ReadChunk&&) = default;
  ReadChunk(const ReadChunk&) = delete;
  ReadChunk& operator=(const ReadChunk&) = delete;

  // Total bytes in `data`.
  size_t size() const;
  // Drops the data and the slices it points into.
  void Clear();

  int64_t offset = 0;
  std::vector<absl::string_view> data;
  std::vector<grpc::Slice> slices;
};

// One ArtifactService.Read call driven synchronously on the caller's thread, like the generated
// stub's ClientReader, but delivering ReadChunks. Not thread-safe, except that the context's
// TryCancel may be called from any thread to make a blocked Next return false.
class RawReadStream {
 public:
  // Starts Read(request) on `channel` under `context` (fresh, unused; it must outlive this
  // object; its initial metadata gets corked to go out with the request). The channel's limits
  // (max receive message size, ...) apply as to the generated stub.
  RawReadStream(std::shared_ptr<grpc::ChannelInterface> channel, grpc::ClientContext* context,
                const v1::ReadRequest& request);
  // Cancels and drains the call when Finish was not called.
  ~RawReadStream();
  RawReadStream(const RawReadStream&) = delete;
  RawReadStream& operator=(const RawReadStream&) = delete;

  // Receives the next message into `*chunk` (replacing what it held). false at the end of the
  // stream, on a call error, or when a message does not parse (the call is then cancelled);
  // Finish tells which.
  bool Next(ReadChunk* chunk);
  // Waits for the call's status: OK, the server's code and message, or the DATA_LOSS of a
  // message that did not parse. Call once, after Next returned false (or to abandon the stream
  // early, after TryCancel on the context).
  absl::Status Finish();

 private:
  // Blocks until the one operation in flight completes; returns its `ok`.
  bool Wait();

  grpc::ClientContext* const context_;
  grpc::CompletionQueue cq_;
  grpc::TemplatedGenericStub<v1::ReadRequest, grpc::ByteBuffer> stub_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ReadRequest, grpc::ByteBuffer>> call_;
  grpc::ByteBuffer buffer_;
  // The received slices as views, reused from message to message.
  std::vector<absl::string_view> views_;
  absl::Status parse_error_;
  bool finished_ = false;
};

}  // namespace modeldist::client

#endif  // MODELDIST_CLIENT_DOWNLOAD_RAW_READ_H_
