// File: chunk_journal.h
//
// The journal next to a partial download (client/agent/chunk_downloader.h): how many leading
// chunks of the partial were verified, against which digest's chunk chain of which chunk size.
//
// It is a claim, never a proof: every resume re-verifies the journaled chunks from disk before
// trusting them. So it is never fsynced, and a journal that a power loss let run ahead of the
// data, a torn one, or one of another format only costs a refetch: anything that does not parse
// reads as "no journal".
//
// Format (text, one field a line; older agents write and read the same):
//   modeldist-chunk-journal-v1
//   digest sha256:<hex>
//   chunk_size <bytes>
//   verified_chunks <count>
#ifndef MODELDIST_CLIENT_AGENT_CHUNK_JOURNAL_H_
#define MODELDIST_CLIENT_AGENT_CHUNK_JOURNAL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/file_util.h"

namespace modeldist::agent {

struct Journal {
  std::string digest;
  int64_t chunk_size = 0;
  int64_t verified_chunks = 0;
};

// One partial's journal file at `path`. Not thread-safe: one caller at a time (the downloader
// calls Advance from the block writer's checkpoints, which never run two at once).
class ChunkJournal {
 public:
  explicit ChunkJournal(std::string path) : path_(std::move(path)) {}

  const std::string& path() const { return path_; }

  // NOT_FOUND when there is no journal; nullopt when there is one that does not parse.
  absl::StatusOr<std::optional<Journal>> Read() const;

  // Replaces the journal with `journal` by writing a temporary file and renaming it over the
  // journal: a crash leaves the old claim or the new one. For claims that may go down (a
  // resume that found bad chunks).
  absl::Status Replace(const Journal& journal);

  // Records `journal`, which extends the journal last written or read (same digest and chunk
  // size, no fewer chunks), by rewriting the file in place: one pwrite through a descriptor
  // kept open, no rename and no new file per chunk. The record never gets shorter as the count
  // grows, so the write covers the old one whole; a kill mid-write leaves the old record or
  // the new one. (Per 4 MiB chunk, the temporary file and rename cost 0.6-1 s per GiB on a
  // loaded disk: docs/benchmarks.md, agent.)
  absl::Status Advance(const Journal& journal);

  // Removes the journal (a missing one is fine).
  absl::Status Remove();

 private:
  const std::string path_;
  ScopedFd fd_;             // open for Advance
  int64_t file_bytes_ = 0;  // what the file holds, as far as Advance knows
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_CHUNK_JOURNAL_H_
