#include "client/agent/chunk_downloader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

constexpr absl::string_view kJournalMagic = "modeldist-chunk-journal-v1";
// Memory is about two chunks (one being received, one being written), so the chunk size is
// bounded even though the manifest is signed: a bad signer must not make devices run out.
constexpr int64_t kMaxChunkSize = 64 << 20;
// Keeps (k + 1) * chunk_size and size + chunk_size far from overflowing int64.
constexpr int64_t kMaxArtifactSize = int64_t{1} << 56;
// Verified chunks are hashed and written in slices of this size so that each slice is still
// in the CPU cache when write() copies it (see client/download/artifact_download.cc).
constexpr size_t kSliceBytes = 64 * 1024;



absl::Status PreadAll(int fd, char* data, size_t size, int64_t offset, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::pread(fd, data, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("reading ", path));
    if (n == 0) return absl::DataLossError(absl::StrCat(path, " shrank while being read"));
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return absl::OkStatus();
}

// What the journal next to the partial says: the first `verified_chunks` chunks of the
// partial were verified against `digest`'s chunk digests of `chunk_size` and are durable.
struct Journal {
  std::string digest;
  int64_t chunk_size = 0;
  int64_t verified_chunks = 0;
};

std::string SerializeJournal(const Journal& journal) {
  return absl::StrCat(kJournalMagic, "\ndigest ", journal.digest, "\nchunk_size ",
                      journal.chunk_size, "\nverified_chunks ", journal.verified_chunks, "\n");
}

// Anything unexpected (a torn write, another version) reads as "no journal": the partial is
// then not trusted at all, which is always safe.
std::optional<Journal> ParseJournal(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.size() != 4 || lines[0] != kJournalMagic) return std::nullopt;
  Journal journal;
  std::vector<absl::string_view> digest = absl::StrSplit(lines[1], ' ');
  std::vector<absl::string_view> chunk = absl::StrSplit(lines[2], ' ');
  std::vector<absl::string_view> count = absl::StrSplit(lines[3], ' ');
  if (digest.size() != 2 || digest[0] != "digest" || chunk.size() != 2 ||
      chunk[0] != "chunk_size" || count.size() != 2 || count[0] != "verified_chunks" ||
      !absl::SimpleAtoi(chunk[1], &journal.chunk_size) ||
      !absl::SimpleAtoi(count[1], &journal.verified_chunks) || journal.verified_chunks < 0) {
    return std::nullopt;
  }
  journal.digest = std::string(digest[1]);
  return journal;
}

// temp + (fsync) + rename. The directory is not fsynced: if a crash loses the rename, the
// previous journal comes back, which claims fewer chunks than are durable; that only costs a
// refetch, never trusts a byte that was not verified.
absl::Status WriteJournal(const std::string& path, const Journal& journal, bool fsync) {
  const std::string temp = path + ".tmp";
  const std::string text = SerializeJournal(journal);
  {
    ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus(errno, temp);
    MD_RETURN_IF_ERROR(WriteAll(fd.get(), text.data(), text.size()));
    if (fsync && ::fsync(fd.get()) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", temp));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("renaming ", temp, " to ", path));
  }
  return absl::OkStatus();
}

// Codes after which trying the same source again may help. The others (NOT_FOUND,
// PERMISSION_DENIED, FAILED_PRECONDITION such as an ignored Range, ...) say this source will
// not serve the artifact, so the next source is tried at once.
bool IsRetryable(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// Cancels a Read that has delivered no byte for `timeout`. Local waits (the bandwidth cap,
// a slow disk behind the pipeline) pause it: they are not the source's fault.
class StallWatchdog {
 public:
  explicit StallWatchdog(absl::Duration timeout) : timeout_(timeout) {
    if (timeout_ > absl::ZeroDuration() && timeout_ != absl::InfiniteDuration()) {
      thread_ = std::thread([this] { Run(); });
    }
  }
  ~StallWatchdog() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      cv_.Signal();
    }
    if (thread_.joinable()) thread_.join();
  }
  StallWatchdog(const StallWatchdog&) = delete;
  StallWatchdog& operator=(const StallWatchdog&) = delete;

  void BeginRead(ByteSource* source) {
    absl::MutexLock lock(&mu_);
    source_ = source;
    fired_ = false;
    last_byte_ = absl::Now();
  }
  // Returns whether the watchdog cancelled this Read. After it returns, Cancel is never called
  // for this Read: the watchdog only cancels while holding mu_ and with source_ set.
  bool EndRead() {
    absl::MutexLock lock(&mu_);
    source_ = nullptr;
    return fired_;
  }
  void Touch() {
    absl::MutexLock lock(&mu_);
    last_byte_ = absl::Now();
  }
  void Pause() {
    absl::MutexLock lock(&mu_);
    ++paused_;
  }
  void Resume() {
    absl::MutexLock lock(&mu_);
    --paused_;
    last_byte_ = absl::Now();
  }

 private:
  void Run() {
    const absl::Duration period =
        std::clamp(timeout_ / 4, absl::Milliseconds(5), absl::Milliseconds(500));
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      cv_.WaitWithTimeout(&mu_, period);
      if (stop_ || source_ == nullptr || paused_ > 0) continue;
      const absl::Time now = absl::Now();
      if (now - last_byte_ < timeout_) continue;
      fired_ = true;
      // Again after another period of silence, in case this call came before the source had
      // registered the Read (ByteSource::Cancel may drop such a call).
      last_byte_ = now;
      source_->Cancel();
    }
  }

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  ByteSource* source_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int paused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_byte_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class ScopedPause {
 public:
  explicit ScopedPause(StallWatchdog* watchdog) : watchdog_(watchdog) { watchdog_->Pause(); }
  ~ScopedPause() { watchdog_->Resume(); }
  ScopedPause(const ScopedPause&) = delete;
  ScopedPause& operator=(const ScopedPause&) = delete;

 private:
  StallWatchdog* const watchdog_;
};

// A token bucket holding 100 ms worth of bytes. Its clock is the real one plus whatever an
// injected sleep claimed but did not spend, so pacing is right both with absl::SleepFor and
// with a test's sleep that returns at once (total requested sleep ≈ bytes / rate).
class Throttle {
 public:
  Throttle(int64_t bytes_per_second, std::function<void(absl::Duration)> sleep)
      : rate_(static_cast<double>(bytes_per_second)),
        capacity_(rate_ / 10),
        tokens_(capacity_),
        sleep_(std::move(sleep)),
        last_(absl::Now()) {}

  void Consume(int64_t bytes) {
    if (rate_ <= 0) return;
    const absl::Time now = absl::Now() + skew_;
    tokens_ = std::min(capacity_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
    last_ = now;
    tokens_ -= static_cast<double>(bytes);
    if (tokens_ >= 0) return;
    const absl::Duration wait = absl::Seconds(-tokens_ / rate_);
    const absl::Time before = absl::Now();
    sleep_(wait);
    const absl::Duration slept = absl::Now() - before;
    if (slept < wait) skew_ += wait - slept;
  }

 private:
  const double rate_;
  const double capacity_;
  double tokens_;
  std::function<void(absl::Duration)> sleep_;
  absl::Time last_;
  absl::Duration skew_;
};

// Hashes (whole-file SHA-256) and writes verified chunks on a second thread, then makes them
// durable and advances the journal, so that receiving chunk k+1 overlaps with the disk work
// of chunk k. Push waits while the worker is busy: memory stays at two chunk buffers.
class ChunkWriter {
 public:
  ChunkWriter(int fd, std::string partial, std::string journal_path, Journal journal, bool fsync,
              Sha256* whole, int64_t chunk_size)
      : fd_(fd),
        partial_(std::move(partial)),
        journal_path_(std::move(journal_path)),
        journal_(std::move(journal)),
        fsync_(fsync),
        whole_(whole),
        chunk_size_(chunk_size) {
    worker_ = std::thread([this] { Run(); });
  }
  ~ChunkWriter() { (void)Drain(); }
  ChunkWriter(const ChunkWriter&) = delete;
  ChunkWriter& operator=(const ChunkWriter&) = delete;

  // Hands verified chunk `index` (the bytes of `*data`) to the worker and gives `*data` the
  // buffer of the chunk written before (empty, capacity kept). Blocks while the worker is
  // still busy with that chunk. Returns the worker's first error; nothing is queued after one.
  absl::Status Push(int64_t index, std::string* data) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ChunkWriter::IdleOrFailed));
    if (!error_.ok()) return error_;
    std::swap(slot_, *data);
    data->clear();
    slot_index_ = index;
    busy_ = true;
    return absl::OkStatus();
  }

  // The worker's first error so far, without waiting.
  absl::Status error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

  // Waits for the chunk in hand, stops the worker and returns the first error. Idempotent.
  absl::Status Drain() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    if (worker_.joinable()) worker_.join();
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  bool IdleOrFailed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !busy_ || !error_.ok(); }
  bool BusyOrClosed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_ || closed_; }

  void Run() {
    std::string chunk;
    for (;;) {
      int64_t index;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &ChunkWriter::BusyOrClosed));
        if (!busy_) return;  // closed, nothing in hand
        std::swap(chunk, slot_);
        index = slot_index_;
      }
      absl::Status status = WriteChunk(index, chunk);
      chunk.clear();  // keeps its capacity for the next chunk
      absl::MutexLock lock(&mu_);
      if (!status.ok() && error_.ok()) error_ = status;
      std::swap(chunk, slot_);
      busy_ = false;
    }
  }

  absl::Status WriteChunk(int64_t index, const std::string& chunk) {
    const int64_t offset = index * chunk_size_;
    for (size_t pos = 0; pos < chunk.size(); pos += kSliceBytes) {
      const size_t n = std::min(kSliceBytes, chunk.size() - pos);
      whole_->Update(chunk.data() + pos, n);
      MD_RETURN_IF_ERROR(
          PwriteAll(fd_, chunk.data() + pos, n, offset + static_cast<int64_t>(pos), partial_));
    }
    // The data must be durable before the journal says it is verified.
    if (fsync_ && ::fdatasync(fd_) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fsync ", partial_));
    }
    journal_.verified_chunks = index + 1;
    return WriteJournal(journal_path_, journal_, fsync_);
  }

  const int fd_;
  const std::string partial_;
  const std::string journal_path_;
  Journal journal_;  // worker thread only
  const bool fsync_;
  Sha256* const whole_;  // worker thread only while it runs
  const int64_t chunk_size_;

  absl::Mutex mu_;
  // While busy_, the chunk being written; otherwise the recycled buffer of the last one.
  std::string slot_ ABSL_GUARDED_BY(mu_);
  int64_t slot_index_ ABSL_GUARDED_BY(mu_) = 0;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

// One DownloadChunks call.
class Download {
 public:
  Download(const v1::ManifestArtifact& artifact, std::string digest_hex,
           const std::vector<ByteSource*>& sources, const std::string& partial_path,
           const ChunkDownloadOptions& options)
      : artifact_(artifact),
        digest_hex_(std::move(digest_hex)),
        sources_(sources),
        partial_(partial_path),
        journal_path_(partial_path + ".journal"),
        options_(options),
        size_(artifact.size_bytes()),
        chunk_size_(artifact.chunk_size()),
        chunks_(artifact.chunk_sha256_size()),
        sleep_(options.sleep ? options.sleep
                             : std::function<void(absl::Duration)>(
                                   [](absl::Duration d) { absl::SleepFor(d); })),
        throttle_(options.max_bytes_per_second, sleep_),
        watchdog_(options.stall_timeout),
        rng_(std::random_device{}()) {
    stats_.chunks_total = chunks_;
  }

  absl::StatusOr<ChunkDownloadStats> Run() {
    ScopedFd fd(::open(partial_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus(errno, partial_);
    MD_RETURN_IF_ERROR(Resume(fd.get()));

    if (next_chunk_ < chunks_) {
      buffer_.reserve(static_cast<size_t>(ChunkLength(next_chunk_)));
      writer_.emplace(fd.get(), partial_, journal_path_,
                      Journal{artifact_.digest(), chunk_size_, next_chunk_}, options_.fsync,
                      &whole_, chunk_size_);
      absl::Status fetched = FetchRemaining();
      absl::Status written = writer_->Drain();
      MD_RETURN_IF_ERROR(written);
      MD_RETURN_IF_ERROR(fetched);
    }

    // Every chunk matched; the whole-file digest still has to, since only it is what the
    // manifest's signer vouches for as the file.
    const std::string got = whole_.FinishHex();
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, partial_);
    if (got != digest_hex_ || st.st_size != size_) {
      // The chunk digests and the file digest of the manifest disagree: no refetch can help.
      ::unlink(partial_.c_str());
      ::unlink(journal_path_.c_str());
      return MakeError(
          absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
          absl::StrCat("the verified chunks hash to sha256:", got, " (", st.st_size,
                       " bytes), the manifest says ", artifact_.digest(), " (", size_, " bytes)"),
          {{"digest", artifact_.digest()}});
    }
    if (options_.fsync && ::fsync(fd.get()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fsync ", partial_));
    }
    if (::unlink(journal_path_.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("removing ", journal_path_));
    }
    return stats_;
  }

 private:
  int64_t ChunkOffset(int64_t index) const { return std::min(size_, index * chunk_size_); }
  int64_t ChunkLength(int64_t index) const {
    return std::min(size_, (index + 1) * chunk_size_) - index * chunk_size_;
  }
  int64_t ChunkEnd(int64_t index) const { return ChunkOffset(index) + ChunkLength(index); }
  bool ChunkMatches(int64_t index, const std::string& hex) const {
    return hex == HexEncode(artifact_.chunk_sha256(static_cast<int>(index)));
  }
  void ReportProgress() {
    if (options_.on_progress) options_.on_progress(ChunkOffset(next_chunk_), size_);
  }

  // Re-verifies the journaled prefix of the partial from disk, feeding the whole-file hash,
  // and cuts the partial at the first chunk that fails (or that the journal does not cover).
  absl::Status Resume(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, partial_);
    int64_t claimed = 0;
    std::optional<Journal> journal;
    absl::StatusOr<std::string> text = ReadFileToString(journal_path_);
    if (text.ok()) {
      journal = ParseJournal(*text);
    } else if (!absl::IsNotFound(text.status())) {
      return text.status();
    }
    if (journal.has_value() && journal->digest == artifact_.digest() &&
        journal->chunk_size == chunk_size_) {
      claimed = std::min<int64_t>(journal->verified_chunks, chunks_);
    } else if (!text.ok() && st.st_size == size_) {
      // No journal and every byte present: what a finished download leaves (the journal is
      // removed last), e.g. when the agent was killed before or during activation. Each chunk
      // is re-hashed below and the whole file at the end, so this trusts nothing unverified.
      claimed = chunks_;
    }
    // A chunk counts only if the file really holds all of it.
    while (claimed > 0 && ChunkEnd(claimed - 1) > st.st_size) --claimed;

    std::string chunk;
    int64_t good = 0;
    for (; good < claimed; ++good) {
      chunk.resize(static_cast<size_t>(ChunkLength(good)));
      MD_RETURN_IF_ERROR(PreadAll(fd, chunk.data(), chunk.size(), ChunkOffset(good), partial_));
      if (!ChunkMatches(good, Sha256::HexOf(chunk))) break;
      whole_.Update(chunk);
    }
    next_chunk_ = good;
    stats_.chunks_reused = good;
    if (good > 0) ReportProgress();

    // Journal first, then truncate: a crash in between leaves a journal that claims no more
    // than the file holds.
    if (!journal.has_value() || journal->digest != artifact_.digest() ||
        journal->chunk_size != chunk_size_ || journal->verified_chunks != good) {
      MD_RETURN_IF_ERROR(WriteJournal(journal_path_, Journal{artifact_.digest(), chunk_size_, good},
                                      options_.fsync));
    }
    const int64_t keep = ChunkOffset(good);
    if (st.st_size != keep && ::ftruncate(fd, keep) != 0) {
      return ErrnoStatus(errno, absl::StrCat("truncating ", partial_));
    }
    return absl::OkStatus();
  }

  // Reads from the sources in order until every chunk is verified or all gave up.
  absl::Status FetchRemaining() {
    size_t source = 0;
    int failures = 0;  // consecutive failed attempts on `source` without a verified chunk
    bool single_chunk = false;
    std::vector<std::string> errors(sources_.size());
    while (next_chunk_ < chunks_) {
      const int64_t begin = ChunkOffset(next_chunk_) + static_cast<int64_t>(buffer_.size());
      const int64_t end = single_chunk ? ChunkEnd(next_chunk_) : size_;
      bool progressed = false;
      bool corrupt = false;
      absl::Status status = Attempt(sources_[source], begin, end, &progressed, &corrupt);
      if (!local_error_.ok()) return local_error_;
      if (progressed) {
        failures = 0;
        single_chunk = false;
      }
      if (corrupt) {
        // Refetch just that chunk, so a source that corrupts one chunk costs one chunk.
        single_chunk = true;
        ++stats_.chunks_refetched;
      }
      if (status.ok() || next_chunk_ == chunks_) continue;

      errors[source] = absl::StrCat(sources_[source]->Describe(), ": ", status.ToString());
      last_error_ = status;
      ++failures;
      if (!IsRetryable(status.code()) || failures >= options_.max_attempts) {
        ++source;
        failures = 0;
        if (source == sources_.size()) return AllSourcesFailed(errors);
        ++stats_.retries;
        continue;
      }
      ++stats_.retries;
      sleep_(Backoff(failures));
    }
    return absl::OkStatus();
  }

  absl::Duration Backoff(int failures) {
    absl::Duration cap = options_.initial_backoff;
    for (int i = 1; i < failures && cap < options_.max_backoff; ++i) cap *= 2;
    cap = std::min(cap, options_.max_backoff);
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    return cap * jitter(rng_);  // full jitter: spreads a fleet that failed at the same moment
  }

  absl::Status AllSourcesFailed(const std::vector<std::string>& errors) {
    std::string reason = ErrorReason(last_error_);
    if (reason.empty()) reason = "ALL_SOURCES_FAILED";
    std::vector<std::string> parts;
    for (const std::string& e : errors) {
      if (!e.empty()) parts.push_back(e);
    }
    return MakeError(
        last_error_.code(), reason,
        absl::StrCat("downloading ", artifact_.digest(), " failed on every source (", next_chunk_,
                     " of ", chunks_,
                     " chunks verified, kept for a resume): ", absl::StrJoin(parts, "; ")),
        {{"digest", artifact_.digest()}});
  }

  // One Read of [begin, end). OK only when all of it arrived and nothing went wrong.
  absl::Status Attempt(ByteSource* source, int64_t begin, int64_t end, bool* progressed,
                       bool* corrupt) {
    const int64_t limit = end - begin;
    int64_t received = 0;
    const int64_t chunks_before = next_chunk_;
    absl::Status sink_error;  // what the sink last told the source
    auto sink = [&](absl::string_view piece) -> absl::Status {
      if (!sink_error.ok()) return sink_error;
      sink_error = Accept(piece, limit, &received, corrupt);
      return sink_error;
    };
    watchdog_.BeginRead(source);
    absl::Status status = source->Read(artifact_.digest(), begin, limit, sink);
    const bool stalled = watchdog_.EndRead();
    *progressed = next_chunk_ > chunks_before;

    if (!sink_error.ok()) return sink_error;
    // Everything asked for arrived and was checked; a late error (a connection reset after
    // the last byte, a watchdog that fired just as the stream ended) changes nothing.
    if (received == limit) return absl::OkStatus();
    if (stalled) {
      return MakeError(absl::StatusCode::kDeadlineExceeded, "SOURCE_STALLED",
                       absl::StrCat("no byte for ", absl::FormatDuration(options_.stall_timeout),
                                    " after ", received, " of ", limit, " bytes"));
    }
    if (absl::IsResourceExhausted(status)) {
      // An overloaded server. RESOURCE_EXHAUSTED from DownloadChunks means a full disk.
      return absl::UnavailableError(status.message());
    }
    if (!status.ok()) return status;
    if (received < limit) {
      return MakeError(absl::StatusCode::kDataLoss, "SOURCE_ENDED_EARLY",
                       absl::StrCat("the source ended after ", received, " of the ", limit,
                                    " bytes asked for at offset ", begin, " (the manifest says ",
                                    size_, " bytes)"));
    }
    return absl::OkStatus();
  }

  // The sink: appends to the current chunk, verifies it when complete, hands it to the writer.
  absl::Status Accept(absl::string_view piece, int64_t limit, int64_t* received, bool* corrupt) {
    watchdog_.Touch();
    const bool too_much = static_cast<int64_t>(piece.size()) > limit - *received;
    if (too_much) piece = piece.substr(0, static_cast<size_t>(limit - *received));
    *received += static_cast<int64_t>(piece.size());
    stats_.bytes_received += static_cast<int64_t>(piece.size());
    if (options_.max_bytes_per_second > 0) {
      ScopedPause pause(&watchdog_);
      throttle_.Consume(static_cast<int64_t>(piece.size()));
    }
    while (!piece.empty() && next_chunk_ < chunks_) {
      const int64_t length = ChunkLength(next_chunk_);
      const size_t n = std::min(piece.size(), static_cast<size_t>(length) - buffer_.size());
      buffer_.append(piece.data(), n);
      chunk_hash_.Update(piece.data(), n);
      piece.remove_prefix(n);
      if (static_cast<int64_t>(buffer_.size()) < length) break;

      ++stats_.chunks_fetched;
      const std::string got = chunk_hash_.FinishHex();
      chunk_hash_ = Sha256();
      if (!ChunkMatches(next_chunk_, got)) {
        buffer_.clear();
        *corrupt = true;
        return MakeError(
            absl::StatusCode::kDataLoss, "CHUNK_DIGEST_MISMATCH",
            absl::StrCat("chunk ", next_chunk_, " at offset ", ChunkOffset(next_chunk_),
                         " hashes to sha256:", got, ", the manifest says ",
                         HexEncode(artifact_.chunk_sha256(static_cast<int>(next_chunk_)))),
            {{"chunk", absl::StrCat(next_chunk_)}});
      }
      absl::Status pushed;
      {
        ScopedPause pause(&watchdog_);
        pushed = writer_->Push(next_chunk_, &buffer_);
      }
      if (!pushed.ok()) {
        local_error_ = pushed;
        return pushed;
      }
      ++next_chunk_;
      if (next_chunk_ < chunks_) buffer_.reserve(static_cast<size_t>(ChunkLength(next_chunk_)));
      ReportProgress();
    }
    if (absl::Status disk = writer_->error(); !disk.ok()) {
      local_error_ = disk;
      return disk;
    }
    if (too_much) {
      return MakeError(absl::StatusCode::kDataLoss, "SOURCE_SENT_TOO_MUCH",
                       absl::StrCat("the source sent more than the ", limit, " bytes asked for"));
    }
    return absl::OkStatus();
  }

  const v1::ManifestArtifact& artifact_;
  const std::string digest_hex_;
  const std::vector<ByteSource*>& sources_;
  const std::string partial_;
  const std::string journal_path_;
  const ChunkDownloadOptions& options_;
  const int64_t size_;
  const int64_t chunk_size_;
  const int64_t chunks_;
  std::function<void(absl::Duration)> sleep_;
  Throttle throttle_;
  StallWatchdog watchdog_;
  std::mt19937_64 rng_;

  ChunkDownloadStats stats_;
  int64_t next_chunk_ = 0;  // the first chunk not yet verified
  std::string buffer_;      // the bytes of chunk `next_chunk_` received so far
  Sha256 chunk_hash_;       // over `buffer_`
  Sha256 whole_;            // over verified chunks 0..k, in order
  std::optional<ChunkWriter> writer_;
  absl::Status local_error_;  // a disk error: no source can fix it
  absl::Status last_error_;
};

absl::Status ValidateArtifact(const v1::ManifestArtifact& artifact) {
  if (artifact.size_bytes() < 0 || artifact.size_bytes() > kMaxArtifactSize) {
    return InvalidArgument("size_bytes", "INVALID_SIZE",
                           absl::StrCat("size_bytes ", artifact.size_bytes(), " is out of range"));
  }
  if (artifact.chunk_size() <= 0 || artifact.chunk_size() > kMaxChunkSize) {
    return InvalidArgument(
        "chunk_size", "INVALID_CHUNK_SIZE",
        absl::StrCat("chunk_size ", artifact.chunk_size(), " must be in (0, ", kMaxChunkSize, "]"));
  }
  const int64_t want = artifact.size_bytes() / artifact.chunk_size() +
                       (artifact.size_bytes() % artifact.chunk_size() != 0 ? 1 : 0);
  if (artifact.chunk_sha256_size() != want) {
    return InvalidArgument("chunk_sha256", "CHUNK_COUNT_MISMATCH",
                           absl::StrCat("the manifest lists ", artifact.chunk_sha256_size(),
                                        " chunk digests; ", artifact.size_bytes(), " bytes in ",
                                        artifact.chunk_size(), "-byte chunks need ", want));
  }
  for (int i = 0; i < artifact.chunk_sha256_size(); ++i) {
    if (artifact.chunk_sha256(i).size() != 32) {
      return InvalidArgument("chunk_sha256", "INVALID_CHUNK_DIGEST",
                             absl::StrCat("chunk digest ", i, " has ",
                                          artifact.chunk_sha256(i).size(), " bytes, not 32"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChunkDownloadStats> DownloadChunks(const v1::ManifestArtifact& artifact,
                                                  const std::vector<ByteSource*>& sources,
                                                  const std::string& partial_path,
                                                  const ChunkDownloadOptions& options) {
  MD_ASSIGN_OR_RETURN(std::string digest_hex, ParseDigest("digest", artifact.digest()));
  MD_RETURN_IF_ERROR(ValidateArtifact(artifact));
  if (sources.empty() || std::find(sources.begin(), sources.end(), nullptr) != sources.end()) {
    return InvalidArgument("sources", "NO_SOURCE", "at least one non-null source is required");
  }
  if (partial_path.empty()) {
    return InvalidArgument("partial_path", "EMPTY_PATH", "partial_path is required");
  }
  if (options.max_attempts < 1) {
    return InvalidArgument("max_attempts", "INVALID_ATTEMPTS", "max_attempts must be >= 1");
  }
  Download download(artifact, std::move(digest_hex), sources, partial_path, options);
  return download.Run();
}

}  // namespace modeldist::agent
