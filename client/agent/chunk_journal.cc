#include "client/agent/chunk_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

constexpr absl::string_view kJournalMagic = "modeldist-chunk-journal-v1";

std::string Serialize(const Journal& journal) {
  return absl::StrCat(kJournalMagic, "\ndigest ", journal.digest, "\nchunk_size ",
                      journal.chunk_size, "\nverified_chunks ", journal.verified_chunks, "\n");
}

std::optional<Journal> Parse(absl::string_view text) {
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

}  // namespace

absl::StatusOr<std::optional<Journal>> ChunkJournal::Read() const {
  MD_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path_));
  return Parse(text);
}

absl::Status ChunkJournal::Replace(const Journal& journal) {
  const std::string temp = path_ + ".tmp";
  const std::string text = Serialize(journal);
  {
    ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus(errno, temp);
    MD_RETURN_IF_ERROR(WriteAll(fd.get(), text.data(), text.size()));
  }
  if (::rename(temp.c_str(), path_.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("renaming ", temp, " to ", path_));
  }
  fd_.Close();  // it named the file just replaced
  return absl::OkStatus();
}

absl::Status ChunkJournal::Advance(const Journal& journal) {
  if (!fd_.valid()) {
    fd_ = ScopedFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!fd_.valid()) return ErrnoStatus(errno, path_);
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus(errno, path_);
    file_bytes_ = st.st_size;
  }
  const std::string text = Serialize(journal);
  MD_RETURN_IF_ERROR(PwriteAll(fd_.get(), text.data(), text.size(), 0, path_));
  const int64_t length = static_cast<int64_t>(text.size());
  // Only when the file held something longer than this record (not one we wrote).
  if (file_bytes_ > length && ::ftruncate(fd_.get(), length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("truncating ", path_));
  }
  file_bytes_ = length;
  return absl::OkStatus();
}

absl::Status ChunkJournal::Remove() {
  fd_.Close();
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("removing ", path_));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::agent
