// File: read_ahead_body.h
//
// A request body read ahead of the transfer on a thread of its own. curl asks for a body in
// small pieces on the thread that sends; when producing a piece costs CPU (the replicator's
// source checks every chunk against the chain; an S3 part is hashed with MD5 as it goes), that
// work and the sending run one after the other. ReadAheadBody moves the reading (and a
// per-block hook, such as a hash) to a second thread, up to `depth` blocks ahead, so the two
// overlap. Blocks are recycled: memory stays at depth * block_bytes, with no allocation per
// block.
//
// Reads must be in order from 0, as curl makes them; a read anywhere else (curl rewinding for
// a redirect or an auth retry) fails, and the caller sends the body again with a new
// ReadAheadBody.
#ifndef MODELDIST_COMMON_HTTP_READ_AHEAD_BODY_H_
#define MODELDIST_COMMON_HTTP_READ_AHEAD_BODY_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/http/http.h"

namespace modeldist::http {

struct ReadAheadOptions {
  size_t block_bytes = 1 << 20;
  size_t depth = 4;
};

class ReadAheadBody {
 public:
  using Options = ReadAheadOptions;
  // Reads [0, length) of `source` ahead. `on_block` (may be empty) sees each block, in order,
  // on the reading thread, before the block is handed out: once every byte was read through
  // Read, it has seen them all.
  ReadAheadBody(BodyReader source, int64_t length,
                std::function<void(absl::string_view block)> on_block = nullptr,
                Options options = {});
  // Stops the reading thread (a transfer that failed midway leaves blocks unread).
  ~ReadAheadBody();
  ReadAheadBody(const ReadAheadBody&) = delete;
  ReadAheadBody& operator=(const ReadAheadBody&) = delete;

  // A BodyReader over this object (which must outlive it), for HttpRequest::body_reader.
  BodyReader Reader();
  // The next bytes, at `offset`, which must be where the previous read ended; the source's
  // error when reading them failed.
  absl::StatusOr<size_t> Read(int64_t offset, char* buf, size_t size) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  const BodyReader source_;
  const int64_t length_;
  const std::function<void(absl::string_view)> on_block_;
  const Options options_;

  absl::Mutex mu_;
  std::deque<std::string> ready_ ABSL_GUARDED_BY(mu_);   // read, not yet handed out
  std::vector<std::string> spare_ ABSL_GUARDED_BY(mu_);  // handed out, for reuse
  size_t blocks_ ABSL_GUARDED_BY(mu_) = 0;               // allocated so far, at most depth
  size_t front_used_ ABSL_GUARDED_BY(mu_) = 0;           // bytes of ready_.front() handed out
  int64_t position_ ABSL_GUARDED_BY(mu_) = 0;            // the next Read's offset
  absl::Status error_ ABSL_GUARDED_BY(mu_);              // the source's, when it failed
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once the rest is set
};

}  // namespace modeldist::http

#endif  // MODELDIST_COMMON_HTTP_READ_AHEAD_BODY_H_
