#include "client/agent/unzip.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/model_check/zip_names.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

constexpr size_t kCopyBufferSize = 1 << 20;

struct ZipDiscarder {
  // The archive is only read: zip_discard frees it without zip_close's write-back logic.
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
using ZipArchive = std::unique_ptr<zip_t, ZipDiscarder>;

struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};
using ZipFile = std::unique_ptr<zip_file_t, ZipFileCloser>;

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// One entry that passed every check, with its name already split into safe components.
struct Entry {
  zip_uint64_t index = 0;
  std::string name;  // raw, for error messages
  std::vector<std::string> components;
  bool is_dir = false;
  uint64_t size = 0;
};

absl::Status EntryError(absl::StatusCode code, absl::string_view reason, absl::string_view name,
                        absl::string_view why) {
  // The metadata is escaped too: ErrorInfo's proto3 strings must be UTF-8, and a raw hostile
  // name would make the whole ErrorInfo, reason included, unparseable.
  return MakeError(code, reason, absl::StrCat("zip entry \"", absl::CHexEscape(name), "\": ", why),
                   {{"entry", absl::CHexEscape(name)}});
}

absl::Status UnsafePath(absl::string_view name, absl::string_view why) {
  return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_UNSAFE_PATH", name, why);
}

// Splits `name` into components that are each safe to create inside the target folder
// (common/model_check/zip_names.h holds the rules the server's publish check uses too).
absl::Status SplitSafeName(absl::string_view name, Entry* entry) {
  const std::string problem =
      model_check::UnsafeZipNameProblem(name, &entry->components, &entry->is_dir);
  if (!problem.empty()) return UnsafePath(name, problem);
  return absl::OkStatus();
}

// Refuses anything but regular files and directories (symlinks, devices, fifos, sockets).
absl::Status CheckEntryType(zip_t* archive, const Entry& entry) {
  zip_uint8_t opsys = 0;
  zip_uint32_t attributes = 0;
  if (zip_file_get_external_attributes(archive, entry.index, 0, &opsys, &attributes) != 0) {
    return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_UNREADABLE", entry.name,
                      zip_strerror(archive));
  }
  const std::string problem =
      model_check::UnsupportedZipEntryTypeProblem(opsys, attributes, entry.is_dir);
  if (!problem.empty()) {
    return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_UNSUPPORTED_ENTRY_TYPE",
                      entry.name, problem);
  }
  return absl::OkStatus();
}

// Reads the central directory and checks every entry before anything is written, so a hostile
// archive is refused without leaving a trace and the limits hold for the archive as a whole.
absl::StatusOr<std::vector<Entry>> CheckEntries(zip_t* archive, const UnzipLimits& limits) {
  const zip_int64_t count = zip_get_num_entries(archive, 0);
  if (count < 0) {
    return MakeError(absl::StatusCode::kInvalidArgument, "ZIP_UNREADABLE", zip_strerror(archive));
  }
  if (count > limits.max_entries) {
    return MakeError(absl::StatusCode::kResourceExhausted, "ZIP_TOO_MANY_ENTRIES",
                     absl::StrCat("zip has ", count, " entries, the limit is ", limits.max_entries),
                     {{"entries", absl::StrCat(count)}});
  }
  const uint64_t max_total = static_cast<uint64_t>(std::max<int64_t>(limits.max_total_bytes, 0));
  const uint64_t max_ratio = static_cast<uint64_t>(std::max<int64_t>(limits.max_ratio, 0));
  uint64_t total = 0;
  std::vector<Entry> entries;
  entries.reserve(static_cast<size_t>(count));
  // Every path created so far, to refuse collisions (`a` twice, or file `a` and `a/b`) here
  // rather than half-way through extraction.
  std::set<std::string> files;
  std::set<std::string> dirs;
  for (zip_int64_t i = 0; i < count; ++i) {
    Entry entry;
    entry.index = static_cast<zip_uint64_t>(i);
    zip_stat_t st;
    zip_stat_init(&st);
    // Raw names: the bytes checked are the bytes used. Decoded names (CP437 guessing, the
    // Info-ZIP Unicode extra field) could differ from what another tool shows.
    if (zip_stat_index(archive, entry.index, ZIP_FL_ENC_RAW, &st) != 0) {
      return MakeError(absl::StatusCode::kInvalidArgument, "ZIP_UNREADABLE", zip_strerror(archive));
    }
    constexpr zip_uint64_t kNeeded = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                                     ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
    if ((st.valid & kNeeded) != kNeeded) {
      return MakeError(absl::StatusCode::kInvalidArgument, "ZIP_UNREADABLE",
                       absl::StrCat("zip entry ", i, " lacks its name, sizes or method"));
    }
    entry.name = st.name;
    MD_RETURN_IF_ERROR(SplitSafeName(entry.name, &entry));
    MD_RETURN_IF_ERROR(CheckEntryType(archive, entry));
    if (st.encryption_method != ZIP_EM_NONE) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_UNSUPPORTED_ENTRY", entry.name,
                        "encrypted");
    }
    if (!zip_compression_method_supported(st.comp_method, /*compress=*/0)) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_UNSUPPORTED_ENTRY", entry.name,
                        absl::StrCat("compression method ", st.comp_method));
    }
    entry.size = st.size;
    if (entry.is_dir && entry.size != 0) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_CORRUPT", entry.name,
                        "directory with data");
    }
    if (entry.size > max_total - total) {
      return EntryError(absl::StatusCode::kResourceExhausted, "ZIP_TOO_LARGE", entry.name,
                        absl::StrCat("the zip unpacks to more than ", max_total, " bytes"));
    }
    total += entry.size;
    if (model_check::ZipRatioExceeded(st.size, st.comp_size, max_ratio)) {
      return EntryError(absl::StatusCode::kResourceExhausted, "ZIP_RATIO_EXCEEDED", entry.name,
                        absl::StrCat(st.size, " bytes from ", st.comp_size,
                                     " compressed exceeds the ratio limit ", max_ratio));
    }

    std::string path;
    for (size_t c = 0; c + 1 < entry.components.size(); ++c) {
      if (c > 0) path += '/';
      path += entry.components[c];
      if (files.count(path)) {
        return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_DUPLICATE_ENTRY", entry.name,
                          absl::StrCat("`", path, "` is a file"));
      }
      dirs.insert(path);
    }
    path = absl::StrJoin(entry.components, "/");
    if (files.count(path) || (!entry.is_dir && dirs.count(path))) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_DUPLICATE_ENTRY", entry.name,
                        "appears twice");
    }
    (entry.is_dir ? dirs : files).insert(std::move(path));
    entries.push_back(std::move(entry));
  }
  return entries;
}

// Opens (creating with 0755 when missing) the first `depth` components of `entry` under
// `root_fd`, never following a symlink. Records directories it created in `created`.
absl::StatusOr<Fd> OpenDirs(int root_fd, const Entry& entry, size_t depth,
                            std::vector<std::string>* created) {
  Fd current(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (current.get() < 0) return ErrnoStatus(errno, "dup");
  std::string relative;
  for (size_t i = 0; i < depth; ++i) {
    const std::string& part = entry.components[i];
    if (!relative.empty()) relative += '/';
    relative += part;
    bool made = ::mkdirat(current.get(), part.c_str(), 0755) == 0;
    if (!made && errno != EEXIST) return ErrnoStatus(errno, absl::StrCat("mkdir ", relative));
    Fd next(::openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) {
      if (errno == ENOTDIR || errno == ELOOP) {
        // Only reachable when names collide in a way the pre-check cannot see (e.g. a
        // case-insensitive file system).
        return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_DUPLICATE_ENTRY", entry.name,
                          absl::StrCat("`", relative, "` is not a directory"));
      }
      return ErrnoStatus(errno, absl::StrCat("open ", relative));
    }
    // mkdirat's mode is filtered by the umask; the layout promises exactly 0755.
    if (made) {
      if (::fchmod(next.get(), 0755) != 0) return ErrnoStatus(errno, relative);
      created->push_back(relative);
    }
    current = std::move(next);
  }
  return current;
}

absl::Status ReadError(zip_file_t* file, const Entry& entry) {
  zip_error_t* error = zip_file_get_error(file);
  const int code = zip_error_code_zip(error);
  if (code == ZIP_ER_READ || code == ZIP_ER_SEEK) {
    return EntryError(absl::StatusCode::kUnavailable, "ZIP_READ_FAILED", entry.name,
                      zip_error_strerror(error));
  }
  return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_CORRUPT", entry.name,
                    zip_error_strerror(error));
}

absl::Status ExtractFile(zip_t* archive, int root_fd, const Entry& entry,
                         std::vector<std::string>* created, std::vector<char>* buffer) {
  MD_ASSIGN_OR_RETURN(Fd parent, OpenDirs(root_fd, entry, entry.components.size() - 1, created));
  const std::string& leaf = entry.components.back();
  Fd out(::openat(parent.get(), leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644));
  if (out.get() < 0) {
    if (errno == EEXIST) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_DUPLICATE_ENTRY", entry.name,
                        "already extracted");
    }
    return ErrnoStatus(errno, absl::StrCat("create ", entry.name));
  }
  if (::fchmod(out.get(), 0644) != 0) return ErrnoStatus(errno, entry.name);

  ZipFile in(zip_fopen_index(archive, entry.index, 0));
  if (in == nullptr) {
    return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_CORRUPT", entry.name,
                      zip_strerror(archive));
  }
  uint64_t written = 0;
  for (;;) {
    const zip_int64_t n = zip_fread(in.get(), buffer->data(), buffer->size());
    if (n < 0) return ReadError(in.get(), entry);
    if (n == 0) break;
    // The limits were checked against the declared size: one byte more is a lie, and
    // writing it would let a crafted archive fill the disk.
    if (static_cast<uint64_t>(n) > entry.size - written) {
      return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_CORRUPT", entry.name,
                        absl::StrCat("more data than its declared ", entry.size, " bytes"));
    }
    MD_RETURN_IF_ERROR(WriteAll(out.get(), buffer->data(), static_cast<size_t>(n)));
    written += static_cast<uint64_t>(n);
  }
  if (written != entry.size) {
    return EntryError(absl::StatusCode::kInvalidArgument, "ZIP_CORRUPT", entry.name,
                      absl::StrCat(written, " bytes instead of the declared ", entry.size));
  }
  // Once fsync succeeded the data is on disk; an error from the close that follows in ~Fd
  // could not mean lost data.
  if (::fsync(out.get()) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", entry.name));
  return absl::OkStatus();
}

absl::Status ExtractAll(zip_t* archive, const std::vector<Entry>& entries,
                        const std::string& dest_dir) {
  Fd root(::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (root.get() < 0) return ErrnoStatus(errno, dest_dir);
  std::vector<std::string> created;
  std::vector<char> buffer(kCopyBufferSize);
  for (const Entry& entry : entries) {
    if (entry.is_dir) {
      MD_ASSIGN_OR_RETURN(Fd dir, OpenDirs(root.get(), entry, entry.components.size(), &created));
    } else {
      MD_RETURN_IF_ERROR(ExtractFile(archive, root.get(), entry, &created, &buffer));
    }
  }
  // Each directory's entries become durable only when the directory itself is fsynced.
  for (const std::string& relative : created) {
    Fd dir(::openat(root.get(), relative.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.get() < 0) return ErrnoStatus(errno, relative);
    if (::fsync(dir.get()) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", relative));
  }
  if (::fsync(root.get()) != 0) return ErrnoStatus(errno, absl::StrCat("fsync ", dest_dir));
  return absl::OkStatus();
}

}  // namespace

absl::Status UnzipSafely(const std::string& zip_path, const std::string& dest_dir,
                         const UnzipLimits& limits) {
  int error_code = 0;
  ZipArchive archive(zip_open(zip_path.c_str(), ZIP_RDONLY, &error_code));
  if (archive == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, error_code);
    std::string message = absl::StrCat(zip_path, ": ", zip_error_strerror(&error));
    zip_error_fini(&error);
    // libzip also answers ZIP_ER_NOENT for some corrupt archives (a central directory whose
    // offsets point nowhere, found by tests/fuzz/unzip): only a missing file is NOT_FOUND.
    if (error_code == ZIP_ER_NOENT && ::access(zip_path.c_str(), F_OK) != 0) {
      return absl::NotFoundError(message);
    }
    return MakeError(absl::StatusCode::kInvalidArgument, "ZIP_UNREADABLE", message);
  }
  MD_ASSIGN_OR_RETURN(std::vector<Entry> entries, CheckEntries(archive.get(), limits));

  if (::mkdir(dest_dir.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", dest_dir));
  }
  absl::Status status;
  if (::chmod(dest_dir.c_str(), 0755) != 0) status = ErrnoStatus(errno, dest_dir);
  if (status.ok()) status = ExtractAll(archive.get(), entries, dest_dir);
  if (!status.ok()) {
    std::error_code ignored;
    std::filesystem::remove_all(dest_dir, ignored);
  }
  return status;
}

}  // namespace modeldist::agent
