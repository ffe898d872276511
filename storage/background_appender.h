// File: background_appender.h
//
// Appends the messages of one upload stream to the blob store on a thread of its own, in order,
// so that the gRPC handler that receives the stream takes in (and parses) the next message while
// the store writes and hashes this one. Without it one thread did both, and the disk, the hash
// and the network took turns (docs/benchmarks.md, "Publish").
//
// An append that fails is reported by the next call (Append or Drain), and nothing queued after
// it is appended, so the stream ends with the first error as when appends ran inline.
//
// Example (one upload stream):
//   BackgroundAppender appender([&](int64_t offset, absl::string_view data) {
//     return store->AppendToSession(id, size, offset, data);
//   });
//   while (reader->Read(&request)) {
//     MD_RETURN_IF_ERROR(appender.Append(request.write_offset(), request.mutable_data()));
//   }
//   MD_RETURN_IF_ERROR(appender.Drain());  // before anything that needs the bytes in the store
#ifndef MODELDIST_STORAGE_BACKGROUND_APPENDER_H_
#define MODELDIST_STORAGE_BACKGROUND_APPENDER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace modeldist::storage {

class BackgroundAppender {
 public:
  using AppendFn = std::function<absl::Status(int64_t offset, absl::string_view data)>;

  // Appends queued while one is being appended: enough for the receiving thread to run ahead by
  // a message, and a bound on the memory a stream holds (the messages' size each).
  static constexpr size_t kMaxQueued = 2;

  // `append` runs on the appender's thread, one call at a time, in the order of Append.
  explicit BackgroundAppender(AppendFn append);
  // Waits for what is queued, then stops the thread.
  ~BackgroundAppender();
  BackgroundAppender(const BackgroundAppender&) = delete;
  BackgroundAppender& operator=(const BackgroundAppender&) = delete;

  // Queues the bytes of `*data` to be appended at `offset`, taking them: `*data` is left empty,
  // holding a buffer an earlier append is done with, so that parsing the next message into it
  // needs no new memory. Waits while kMaxQueued appends are queued. Returns the error of an
  // earlier append once one failed (then `*data` is untouched and nothing more is appended).
  absl::Status Append(int64_t offset, std::string* data);

  // Waits until every queued append has run; returns the first error, or OK.
  absl::Status Drain();

 private:
  struct Item {
    int64_t offset = 0;
    std::string data;
  };

  void Run();

  const AppendFn append_;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> spare_ ABSL_GUARDED_BY(mu_);  // appended, kept for their memory
  bool appending_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BACKGROUND_APPENDER_H_
