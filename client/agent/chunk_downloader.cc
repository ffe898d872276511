#include "client/agent/chunk_downloader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/agent/chunk_journal.h"
#include "client/download/block_writer.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::agent {

RetryPolicy DownloadRetryPolicy() {
  RetryPolicy policy;
  policy.max_attempts = 8;
  policy.initial_backoff = absl::Milliseconds(200);
  policy.max_backoff = absl::Seconds(10);
  policy.jitter = 1.0;  // full jitter: spreads a fleet that failed at the same moment
  policy.retryable_codes = {absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded,
                            absl::StatusCode::kDataLoss,    absl::StatusCode::kAborted,
                            absl::StatusCode::kInternal,    absl::StatusCode::kUnknown,
                            absl::StatusCode::kCancelled,   absl::StatusCode::kResourceExhausted};
  return policy;
}

namespace {

// Received bytes are hashed and queued in slices of at most this size, so that each slice is
// still in the CPU cache when it is copied into the block writer's block.
constexpr size_t kSliceBytes = 64 * 1024;
// Read size when re-verifying the partial on resume.
constexpr int64_t kResumeReadBytes = 1 << 20;

// Reads exactly `size` bytes of the partial at `offset` (see common/file_util.h PreadAll).
absl::Status ReadPartial(int fd, char* data, size_t size, int64_t offset, const std::string& path) {
  MD_ASSIGN_OR_RETURN(size_t n, PreadAll(fd, data, size, offset, path));
  if (n < size) return absl::DataLossError(absl::StrCat(path, " shrank while being read"));
  return absl::OkStatus();
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
    Touch();
  }
  // Returns whether the watchdog cancelled this Read. After it returns, Cancel is never called
  // for this Read: the watchdog only cancels while holding mu_ and with source_ set.
  bool EndRead() {
    absl::MutexLock lock(&mu_);
    source_ = nullptr;
    return fired_;
  }
  // Touch, Pause and Resume run for every piece received (tens of thousands per GiB), so they
  // take no lock.
  void Touch() { last_byte_nanos_.store(absl::GetCurrentTimeNanos()); }
  void Pause() { paused_.fetch_add(1); }
  void Resume() {
    Touch();  // first: once paused_ is 0, the watchdog must see a fresh time
    paused_.fetch_sub(1);
  }

 private:
  void Run() {
    const absl::Duration period =
        std::clamp(timeout_ / 4, absl::Milliseconds(5), absl::Milliseconds(500));
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      cv_.WaitWithTimeout(&mu_, period);
      if (stop_ || source_ == nullptr || paused_.load() > 0) continue;
      const int64_t now = absl::GetCurrentTimeNanos();
      if (absl::Nanoseconds(now - last_byte_nanos_.load()) < timeout_) continue;
      fired_ = true;
      // Again after another period of silence, in case this call came before the source had
      // registered the Read (ByteSource::Cancel may drop such a call).
      last_byte_nanos_.store(now);
      source_->Cancel();
    }
  }

  const absl::Duration timeout_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  ByteSource* source_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> paused_{0};
  std::atomic<int64_t> last_byte_nanos_{0};
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

// One DownloadChunks call.
//
// Bytes go straight from the source into the partial at their offset (no chunk buffer), hashed
// on the way with the chunk's chain hash; a chunk counts once its last byte matched the chain,
// and only then does the journal move past it. A chunk that fails is rewritten in place by its
// refetch. So the partial may hold unverified bytes beyond the journal, which nothing trusts:
// a resume re-verifies and truncates, and only a fully verified partial is returned.
class Download {
 public:
  Download(const v1::ManifestArtifact& artifact, const std::vector<ByteSource*>& sources,
           const std::string& partial_path, const ChunkDownloadOptions& options)
      : artifact_(artifact),
        sources_(sources),
        partial_(partial_path),
        journal_(partial_path + ".journal"),
        options_(options),
        size_(artifact.size_bytes()),
        chunk_size_(artifact.chunk_size()),
        chunks_(artifact.chunk_chain_size()),
        sleep_(options.sleep ? options.sleep
                             : std::function<void(absl::Duration)>(
                                   [](absl::Duration d) { absl::SleepFor(d); })),
        throttle_(options.max_bytes_per_second, sleep_),
        watchdog_(options.stall_timeout),
        retrier_(options_.retry) {
    stats_.chunks_total = chunks_;
  }

  absl::StatusOr<ChunkDownloadStats> Run() {
    file_ = ScopedFd(io_.Open(partial_, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!file_.valid()) return ErrnoStatus(errno, partial_);
    MD_RETURN_IF_ERROR(Resume());

    if (next_chunk_ < chunks_) {
      MD_ASSIGN_OR_RETURN(writer_,
                          client::BlockWriter::Start(file_.get(), partial_, options_.fsync, io_));
      MD_RETURN_IF_ERROR(StartChunk());
      absl::Status fetched = FetchRemaining();
      absl::Status written = writer_->Drain();
      if (!fetched.ok() || !written.ok()) {
        // Bytes past the verified chunks are no use to a later call (the chunk hash state is
        // gone with this one), so the partial keeps exactly what the journal vouches for.
        // Not next_chunk_: a chunk verifies as it arrives, before its blocks are written, so
        // a failed write may have left a hole in a verified chunk that the journal never got.
        io_.Ftruncate(file_.get(), ChunkOffset(journaled_chunks_.load()));
      }
      MD_RETURN_IF_ERROR(written);
      MD_RETURN_IF_ERROR(fetched);
    }

    // Verifying the last chunk computed the whole file's SHA-256 and matched it against the
    // chain's last entry, which CheckManifestArtifact checked is `digest`; the size is the file's.
    struct stat st;
    if (::fstat(file_.get(), &st) != 0) return ErrnoStatus(errno, partial_);
    if (st.st_size != size_) {
      return MakeError(absl::StatusCode::kDataLoss, "SIZE_MISMATCH",
                       absl::StrCat(partial_, " holds ", st.st_size,
                                    " bytes after every chunk verified, the manifest says ", size_),
                       {{"digest", artifact_.digest()}});
    }
    if (options_.fsync && io_.Fdatasync(file_.get()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fsync ", partial_));
    }
    MD_RETURN_IF_ERROR(journal_.Remove());
    return stats_;
  }

 private:
  int64_t ChunkOffset(int64_t index) const { return std::min(size_, index * chunk_size_); }
  int64_t ChunkLength(int64_t index) const {
    return std::min(size_, (index + 1) * chunk_size_) - index * chunk_size_;
  }
  int64_t ChunkEnd(int64_t index) const { return ChunkOffset(index) + ChunkLength(index); }
  void ReportProgress() {
    if (options_.on_progress) options_.on_progress(ChunkOffset(next_chunk_), size_);
  }

  // The chain hash for chunk `index` (common/chunk_chain.h).
  absl::StatusOr<Sha256> ChunkHash(int64_t index) const {
    return StartChunkHash(index == 0 ? "" : artifact_.chunk_chain(static_cast<int>(index - 1)),
                          index, chunk_size_);
  }
  // Ends `hash` over all of chunk `index` and says whether it matches the chain.
  bool ChunkMatches(int64_t index, Sha256* hash, std::string* got) const {
    *got = EndChunkHash(hash, index == chunks_ - 1);
    return *got == artifact_.chunk_chain(static_cast<int>(index));
  }

  // Begins receiving chunk `next_chunk_` from its first byte.
  absl::Status StartChunk() {
    chunk_fill_ = 0;
    MD_ASSIGN_OR_RETURN(chunk_hash_, ChunkHash(next_chunk_));
    return absl::OkStatus();
  }

  // Re-verifies the journaled prefix of the partial from disk and cuts the partial at the
  // first chunk that fails (or that the journal does not cover).
  absl::Status Resume() {
    struct stat st;
    if (::fstat(file_.get(), &st) != 0) return ErrnoStatus(errno, partial_);
    int64_t claimed = 0;
    absl::StatusOr<std::optional<Journal>> read = journal_.Read();
    if (!read.ok() && !absl::IsNotFound(read.status())) return read.status();
    const std::optional<Journal> journal = read.ok() ? *read : std::nullopt;
    if (journal.has_value() && journal->digest == artifact_.digest() &&
        journal->chunk_size == chunk_size_) {
      claimed = std::min<int64_t>(journal->verified_chunks, chunks_);
    } else if (!read.ok() && st.st_size == size_) {
      // No journal and every byte present: what a finished download leaves (the journal is
      // removed last), e.g. when the agent was killed before or during activation. Each chunk
      // is re-verified below, so this trusts nothing unverified.
      claimed = chunks_;
    }
    // A chunk counts only if the file really holds all of it.
    while (claimed > 0 && ChunkEnd(claimed - 1) > st.st_size) --claimed;

    std::string buffer(static_cast<size_t>(std::min<int64_t>(kResumeReadBytes, size_)), '\0');
    int64_t good = 0;
    for (; good < claimed; ++good) {
      MD_ASSIGN_OR_RETURN(Sha256 hash, ChunkHash(good));
      for (int64_t at = ChunkOffset(good); at < ChunkEnd(good);) {
        const size_t n = static_cast<size_t>(
            std::min<int64_t>(static_cast<int64_t>(buffer.size()), ChunkEnd(good) - at));
        MD_RETURN_IF_ERROR(ReadPartial(file_.get(), buffer.data(), n, at, partial_));
        hash.Update(buffer.data(), n);
        at += static_cast<int64_t>(n);
      }
      std::string got;
      if (!ChunkMatches(good, &hash, &got)) break;
    }
    next_chunk_ = good;
    journaled_chunks_ = good;
    stats_.chunks_reused = good;
    if (good > 0) ReportProgress();

    // A partial with other names is a hard link of an installed copy: a kill between activation
    // and the partial's removal leaves one (model_store.h, the crash cases), which a later
    // sync of the same digest finds. Its
    // verified bytes are good, but writing in place would change the installed copy too.
    if (st.st_nlink > 1 && (good < chunks_ || st.st_size != ChunkOffset(good))) {
      MD_RETURN_IF_ERROR(Unshare(ChunkOffset(good)));
    }
    // Journal first, then truncate: a crash in between leaves a journal that claims no more
    // than the file holds.
    if (!journal.has_value() || journal->digest != artifact_.digest() ||
        journal->chunk_size != chunk_size_ || journal->verified_chunks != good) {
      MD_RETURN_IF_ERROR(journal_.Replace(Journal{artifact_.digest(), chunk_size_, good}));
    }
    const int64_t keep = ChunkOffset(good);
    if (st.st_size != keep && ::ftruncate(file_.get(), keep) != 0) {
      return ErrnoStatus(errno, absl::StrCat("truncating ", partial_));
    }
    return absl::OkStatus();
  }

  // Replaces the partial with a file of its own holding its first `keep` bytes (a copy, or a
  // copy-on-write clone where the file system has them) and continues with that.
  absl::Status Unshare(int64_t keep) {
    const std::string temp = partial_ + ".unshare";
    ScopedFd out(::open(temp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out.valid()) return ErrnoStatus(errno, temp);
    std::string buffer;
    for (int64_t at = 0; at < keep;) {
      loff_t in_offset = at;
      loff_t out_offset = at;
      ssize_t n = ::copy_file_range(file_.get(), &in_offset, out.get(), &out_offset,
                                    static_cast<size_t>(keep - at), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // no copy_file_range across these files: read and write
        buffer.resize(static_cast<size_t>(std::min<int64_t>(kResumeReadBytes, keep - at)));
        MD_RETURN_IF_ERROR(ReadPartial(file_.get(), buffer.data(), buffer.size(), at, partial_));
        MD_RETURN_IF_ERROR(PwriteAll(out.get(), buffer.data(), buffer.size(), at, temp));
        n = static_cast<ssize_t>(buffer.size());
      }
      at += n;
    }
    if (::rename(temp.c_str(), partial_.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("renaming ", temp, " to ", partial_));
    }
    file_ = std::move(out);
    return absl::OkStatus();
  }

  // Reads from the first source that has not given up (the preferred one) until every chunk
  // is verified or all gave up. When an attempt on it fails (an error, a stall, a corrupt
  // chunk) and a later source exists, the chunk it stopped in is fetched from the next source
  // at once, without a backoff, and then the preferred source goes on: a mirror that fails one
  // chunk costs that chunk. Its failures still count toward its retry policy (a fallback's
  // success does not reset them), so a source that keeps failing gives up and the next one
  // becomes the preferred.
  absl::Status FetchRemaining() {
    size_t preferred = 0;
    bool fallback = false;        // the next attempt is one chunk from preferred + 1
    absl::Duration pending_wait;  // the preferred source's backoff, slept only if needed
    bool single_chunk = false;
    std::vector<std::string> errors(sources_.size());
    while (next_chunk_ < chunks_) {
      const size_t source = fallback ? preferred + 1 : preferred;
      const int64_t begin = ChunkOffset(next_chunk_) + chunk_fill_;
      const int64_t end = single_chunk || fallback ? ChunkEnd(next_chunk_) : size_;
      bool progressed = false;
      bool corrupt = false;
      absl::Status status = Attempt(sources_[source], begin, end, &progressed, &corrupt);
      if (!local_error_.ok()) return local_error_;
      if (progressed) {
        if (!fallback) retrier_.Progressed();
        single_chunk = false;
      }
      if (corrupt) {
        // Refetch just that chunk, so a source that corrupts one chunk costs one chunk.
        single_chunk = true;
        ++stats_.chunks_refetched;
      }
      if (!status.ok() && next_chunk_ < chunks_) {
        errors[source] = absl::StrCat(sources_[source]->Describe(), ": ", status.ToString());
        last_error_ = status;
        ++stats_.retries;  // another attempt follows, on this source or another
      }
      if (fallback) {
        // Back to the preferred source; after its wait when the fallback did not help either.
        fallback = false;
        if (!status.ok() && next_chunk_ < chunks_) sleep_(pending_wait);
        continue;
      }
      if (status.ok() || next_chunk_ == chunks_) continue;

      std::optional<absl::Duration> wait = retrier_.NextWait(status);
      if (!wait.has_value()) {  // this source gave up: the next one starts at once
        if (++preferred == sources_.size()) {
          --stats_.retries;  // none follows
          return AllSourcesFailed(errors);
        }
        retrier_.Reset();
      } else if (preferred + 1 < sources_.size()) {
        fallback = true;
        pending_wait = *wait;
      } else {
        sleep_(*wait);
      }
    }
    return absl::OkStatus();
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

  // The sink: writes each piece at its place in the partial while hashing it into the current
  // chunk, and counts the chunk when its last byte matches the chain.
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
      // Hash and copy in slices small enough to still be in the CPU cache for the copy.
      const size_t n =
          std::min({piece.size(), static_cast<size_t>(length - chunk_fill_), kSliceBytes});
      chunk_hash_.Update(piece.data(), n);
      absl::Status queued;
      {
        ScopedPause pause(&watchdog_);  // a full queue waits for the disk, not the source
        queued = writer_->Append(ChunkOffset(next_chunk_) + chunk_fill_, piece.substr(0, n));
      }
      if (!queued.ok()) {
        local_error_ = queued;
        return queued;
      }
      chunk_fill_ += static_cast<int64_t>(n);
      piece.remove_prefix(n);
      if (chunk_fill_ < length) continue;

      ++stats_.chunks_fetched;
      std::string got;
      if (!ChunkMatches(next_chunk_, &chunk_hash_, &got)) {
        *corrupt = true;
        absl::Status bad = MakeError(
            absl::StatusCode::kDataLoss, "CHUNK_DIGEST_MISMATCH",
            absl::StrCat("chunk ", next_chunk_, " at offset ", ChunkOffset(next_chunk_),
                         " hashes to ", HexEncode(got), ", the manifest's chunk chain says ",
                         HexEncode(artifact_.chunk_chain(static_cast<int>(next_chunk_)))),
            {{"chunk", absl::StrCat(next_chunk_)}});
        // The refetch writes the chunk's range again: the bad bytes must be on disk first, or
        // a writer thread could put them over the good ones.
        if (absl::Status flushed = writer_->Flush(); !flushed.ok()) {
          local_error_ = flushed;
        } else if (absl::Status started = StartChunk(); !started.ok()) {
          local_error_ = started;
        }
        return bad;
      }
      if (absl::Status counted = ChunkVerified(); !counted.ok()) {
        local_error_ = counted;
        return counted;
      }
    }
    if (too_much) {
      return MakeError(absl::StatusCode::kDataLoss, "SOURCE_SENT_TOO_MUCH",
                       absl::StrCat("the source sent more than the ", limit, " bytes asked for"));
    }
    return absl::OkStatus();
  }

  // Chunk `next_chunk_` matched: record it and move on to the next one.
  absl::Status ChunkVerified() {
    ++next_chunk_;
    // On the writer's thread once the chunk's bytes are written, so the journal never claims
    // bytes that are not in the file.
    writer_->Checkpoint([this, journal = Journal{artifact_.digest(), chunk_size_, next_chunk_}] {
      MD_RETURN_IF_ERROR(journal_.Advance(journal));
      journaled_chunks_ = journal.verified_chunks;
      return absl::OkStatus();
    });
    ReportProgress();
    if (next_chunk_ < chunks_) return StartChunk();
    return absl::OkStatus();
  }

  const v1::ManifestArtifact& artifact_;
  const std::vector<ByteSource*>& sources_;
  const std::string partial_;
  // Replaced by Resume on the calling thread, advanced by the writer's checkpoints (which run
  // one at a time) while the writer runs, removed once it has drained.
  ChunkJournal journal_;
  const ChunkDownloadOptions& options_;
  Fs& io_ = options_.fs != nullptr ? *options_.fs : RealFs();
  const int64_t size_;
  const int64_t chunk_size_;
  const int64_t chunks_;
  std::function<void(absl::Duration)> sleep_;
  Throttle throttle_;
  StallWatchdog watchdog_;
  // Failed attempts in a row on the current source, and the wait before the next one.
  Retrier retrier_;

  ScopedFd file_;  // the partial
  std::unique_ptr<client::BlockWriter> writer_;
  ChunkDownloadStats stats_;
  int64_t next_chunk_ = 0;    // the first chunk not yet verified
  // The chunks the journal claims: written and verified (set by the writer's checkpoints).
  std::atomic<int64_t> journaled_chunks_{0};
  int64_t chunk_fill_ = 0;    // bytes of chunk `next_chunk_` written and hashed so far
  Sha256 chunk_hash_;         // the chain hash over those bytes
  absl::Status local_error_;  // a disk error: no source can fix it
  absl::Status last_error_;
};

}  // namespace

absl::StatusOr<ChunkDownloadStats> DownloadChunks(const v1::ManifestArtifact& artifact,
                                                  const std::vector<ByteSource*>& sources,
                                                  const std::string& partial_path,
                                                  const ChunkDownloadOptions& options) {
  MD_ASSIGN_OR_RETURN(std::string digest_hex, ParseDigest("digest", artifact.digest()));
  MD_RETURN_IF_ERROR(CheckManifestArtifact(artifact));
  if (sources.empty() || std::find(sources.begin(), sources.end(), nullptr) != sources.end()) {
    return InvalidArgument("sources", "NO_SOURCE", "at least one non-null source is required");
  }
  if (partial_path.empty()) {
    return InvalidArgument("partial_path", "EMPTY_PATH", "partial_path is required");
  }
  if (options.retry.max_attempts < 1) {
    return InvalidArgument("retry.max_attempts", "INVALID_ATTEMPTS",
                           "retry.max_attempts must be >= 1");
  }
  Download download(artifact, sources, partial_path, options);
  return download.Run();
}

}  // namespace modeldist::agent
