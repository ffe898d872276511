// File: upload_limits.h
//
// Limits on upload streams (RegistryService.WriteArtifact), so that one client cannot hold
// the server's upload capacity: at most `max_per_peer` streams at once per peer address and
// `max_per_credential` per authenticated credential (a leaked or buggy token used from many
// addresses), more being refused at once with RESOURCE_EXHAUSTED, reason TOO_MANY_UPLOADS;
// and a stream that
// sends nothing for `idle_timeout` is cancelled (its committed bytes are kept, so the client
// resumes with QueryUpload): a stalled or slow-loris client frees its slot instead of keeping
// a server thread blocked in Read for ever. CancelIdle does the sweeping; the server runs it
// from a background loop.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_UPLOAD_LIMITS_H_
#define MODELDIST_SERVICES_UPLOAD_LIMITS_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/sync_stream.h>

#include <functional>
#include <list>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modeldist/v1/registry.pb.h"

namespace modeldist::services {

inline constexpr char kReasonTooManyUploads[] = "TOO_MANY_UPLOADS";

class UploadLimiter {
 public:
  struct Options {
    int max_per_peer = 8;
    int max_per_credential = 16;
    absl::Duration idle_timeout = absl::Minutes(2);
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // One admitted stream: released when destroyed. Touch() on every message received.
  class Slot {
   public:
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    void Touch();

   private:
    friend class UploadLimiter;
    struct Stream {
      grpc::ServerContext* context;
      std::string peer;
      std::string credential;
      absl::Time last_activity;
      bool cancelled = false;
    };
    Slot(UploadLimiter* limiter, std::list<Stream>::iterator stream)
        : limiter_(limiter), stream_(stream) {}
    UploadLimiter* const limiter_;
    const std::list<Stream>::iterator stream_;
  };

  UploadLimiter() : UploadLimiter(Options()) {}
  explicit UploadLimiter(Options options) : options_(std::move(options)) {}

  // Admits the stream of `context`, authenticated as `credential` (Caller.name), unless its
  // peer has max_per_peer streams open or the credential max_per_credential:
  // RESOURCE_EXHAUSTED (TOO_MANY_UPLOADS) then, saying which limit and how many are open.
  absl::StatusOr<std::unique_ptr<Slot>> Admit(grpc::ServerContext* context,
                                              absl::string_view credential)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels (grpc TryCancel) every stream idle for idle_timeout or longer; returns how many
  // it cancelled now.
  int CancelIdle() ABSL_LOCKS_EXCLUDED(mu_);

  // Streams open, for tests and metrics.
  int open() const ABSL_LOCKS_EXCLUDED(mu_);

  const Options& options() const { return options_; }

 private:
  using Stream = Slot::Stream;
  void Release(std::list<Stream>::iterator stream) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::list<Stream> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> per_peer_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> per_credential_ ABSL_GUARDED_BY(mu_);
};

// A ServerReaderInterface that touches `slot` on every message read, so the limiter sees
// the stream is alive.
class TouchingReader final : public grpc::ServerReaderInterface<v1::WriteArtifactRequest> {
 public:
  TouchingReader(grpc::ServerReaderInterface<v1::WriteArtifactRequest>* reader,
                 UploadLimiter::Slot* slot)
      : reader_(reader), slot_(slot) {}
  bool Read(v1::WriteArtifactRequest* message) override {
    const bool ok = reader_->Read(message);
    if (ok) slot_->Touch();
    return ok;
  }
  bool NextMessageSize(uint32_t* size) override { return reader_->NextMessageSize(size); }
  void SendInitialMetadata() override { reader_->SendInitialMetadata(); }

 private:
  grpc::ServerReaderInterface<v1::WriteArtifactRequest>* const reader_;
  UploadLimiter::Slot* const slot_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_UPLOAD_LIMITS_H_
