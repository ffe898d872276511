// File: artifact_service.h
//
// ArtifactService: streams verified blobs by digest.
//
// Read is served as a raw callback method: each message is built by hand as one grpc_slice
// holding the ReadResponse's protobuf header (field tags and varints, ReadResponseHeader) and
// the chunk's bytes, pread straight into the slice after it. gRPC sends that slice as is, so
// every byte is copied once (page cache to slice) instead of twice (page cache to the
// protobuf's `data`, then into the serialized message). The bytes on the wire are exactly what
// protobuf would write, so generated clients, grpcurl and `buf curl` see a normal ReadResponse,
// and reflection still describes the method.
//
// One write is in flight per stream: the next message is read only when the previous one was
// handed to the transport (OnWriteDone), so HTTP/2 flow control bounds memory at about one
// chunk per stream whatever the blob size. gRPC runs OnWriteDone on threads that also poll the
// network, so there only what the page cache holds is read (BlobReader::ReadCachedAt, never
// waiting for the disk); the rest, and the request's validation, run on a BlockingPool. A warm
// blob thus streams without a thread hop per message, and a cold disk never stalls the other
// calls. (download_bench, 1 MiB chunks: with every pread on the pool the server's CPU per GB
// stayed where the copying sync server was, ~0.47 s; reading cached bytes inline cut it to
// ~0.38 s.)
//
// Every byte is checked before it is all out (storage/served_bytes_check.h): messages end at
// chain chunk boundaries, and the one that completes a chunk goes only after the chunk matched
// its recorded chain entry; Stat and the start of a Read compare the file's size with the
// recorded one. A mismatch ends the call with DATA_LOSS and goes to BlobHealth, which
// quarantines the blob. Hashing is skipped only for chunks this process verified whose bytes
// come from the page cache (download_bench measures the cost, docs/benchmarks.md).
#ifndef MODELDIST_SERVICES_ARTIFACT_SERVICE_H_
#define MODELDIST_SERVICES_ARTIFACT_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "modeldist/v1/artifact.grpc.pb.h"
#include "services/blob_health.h"
#include "services/blocking_pool.h"
#include "services/read_through.h"
#include "services/server_metrics.h"
#include "storage/blob_store.h"
#include "storage/served_bytes_check.h"

namespace modeldist::services {

// The longest ReadResponseHeader: two one-byte tags and two 10-byte varints.
inline constexpr size_t kMaxReadResponseHeaderBytes = 22;

// Writes to `out` (room for kMaxReadResponseHeaderBytes) the bytes protobuf puts before the
// data of a ReadResponse{offset, data of `data_size` bytes}: `offset` (field 1, omitted when 0,
// as proto3 does) and the tag and length of `data` (field 2, omitted when empty). Returns how
// many bytes it wrote. Header followed by the data is byte for byte protobuf's serialization.
size_t ReadResponseHeader(int64_t offset, size_t data_size, char* out);

class ArtifactServiceImpl final
    : public v1::ArtifactService::WithRawCallbackMethod_Read<v1::ArtifactService::Service> {
 public:
  // `read_message_bytes`: the most bytes of data one ReadResponse carries
  // (StatResponse.read_message_bytes). `read_threads`: the BlockingPool that runs the preads
  // of every Read stream. `health` (may be null) is told of every blob found damaged or
  // missing. `read_through` (may be null: no origins) fetches blobs that are not stored here;
  // it must be stopped before this is destroyed. `metrics` (may be null) counts the bytes sent.
  ArtifactServiceImpl(const storage::BlobStore* blobs, BlobHealth* health,
                      int64_t read_message_bytes, int read_threads = 4,
                      ReadThrough* read_through = nullptr, const ServerMetrics* metrics = nullptr)
      : blobs_(blobs),
        health_(health),
        read_through_(read_through),
        metrics_(metrics),
        read_message_bytes_(read_message_bytes),
        read_pool_(read_threads) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Read(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request) override;
  grpc::Status Stat(grpc::ServerContext* context, const v1::StatRequest* request,
                    v1::StatResponse* response) override;

 private:
  class ReadReactor;

  // What a valid Read sends: bytes [offset, end) of `blob`, or of `fetch` when the blob is
  // read through from the origins.
  struct ReadPlan {
    std::optional<storage::BlobReader> blob;
    std::shared_ptr<BlobFetch> fetch;
    int64_t offset = 0;
    int64_t end = 0;
  };
  absl::StatusOr<ReadPlan> PlanRead(const v1::ReadRequest& request) const;
  // Hands a failed check of blob `hex` to health_. Blocks: pool or sync handler only.
  void ReportDamage(absl::string_view hex, const absl::Status& problem);

  const storage::BlobStore* blobs_;
  BlobHealth* health_;
  ReadThrough* read_through_;
  const ServerMetrics* metrics_;
  int64_t read_message_bytes_;
  // Last member: destroyed (its threads joined) first, while what its tasks use still exists.
  BlockingPool read_pool_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ARTIFACT_SERVICE_H_
