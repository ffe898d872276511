// File: artifact_service.h
//
// ArtifactService: streams verified blobs by digest. Each chunk is pread straight into the
// response's bytes field (one copy, measured as fast as zero-copy once the client hashes; see
// docs/benchmarks.md), and the sync writer's flow control keeps memory at a few chunks per
// stream whatever the blob size.
#ifndef MODELDIST_SERVICES_ARTIFACT_SERVICE_H_
#define MODELDIST_SERVICES_ARTIFACT_SERVICE_H_

#include "modeldist/v1/artifact.grpc.pb.h"
#include "storage/blob_store.h"

namespace modeldist::services {

class ArtifactServiceImpl final : public v1::ArtifactService::Service {
 public:
  ArtifactServiceImpl(const storage::BlobStore* blobs, int64_t chunk_size)
      : blobs_(blobs), chunk_size_(chunk_size) {}

  grpc::Status Read(grpc::ServerContext* context, const v1::ReadRequest* request,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override;
  grpc::Status Stat(grpc::ServerContext* context, const v1::StatRequest* request,
                    v1::StatResponse* response) override;

 private:
  absl::Status DoRead(grpc::ServerContext* context, const v1::ReadRequest& request,
                      grpc::ServerWriter<v1::ReadResponse>* writer) const;

  const storage::BlobStore* blobs_;
  int64_t chunk_size_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ARTIFACT_SERVICE_H_
