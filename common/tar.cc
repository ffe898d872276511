#include "common/tar.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/entry_names.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist {
namespace {

// Field offsets and widths of the ustar header (POSIX.1-1988).
constexpr size_t kNameAt = 0, kNameLen = 100;
constexpr size_t kModeAt = 100, kUidAt = 108, kGidAt = 116;
constexpr size_t kSizeAt = 124, kSizeLen = 12;
constexpr size_t kMtimeAt = 136;
constexpr size_t kChecksumAt = 148, kChecksumLen = 8;
constexpr size_t kTypeAt = 156;
constexpr size_t kMagicAt = 257;
constexpr size_t kPrefixAt = 345, kPrefixLen = 155;
// The largest size the 11 octal digits of the size field hold; larger entries get a pax
// `size` record.
constexpr int64_t kMaxOctalSize = 077777777777;
constexpr int64_t kMaxPaxBytes = 64 * 1024;
constexpr size_t kPieceBytes = 1 << 20;

int64_t Padding(int64_t size) { return (kTarBlockBytes - size % kTarBlockBytes) % kTarBlockBytes; }

void PutOctal(char* field, size_t width, int64_t value) {
  // width - 1 digits and a NUL, zero-filled: what every reader accepts.
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

uint32_t Checksum(const char* block) {
  uint32_t sum = 0;
  for (size_t i = 0; i < kTarBlockBytes; ++i) {
    const bool in_field = i >= kChecksumAt && i < kChecksumAt + kChecksumLen;
    sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
  }
  return sum;
}

// Why `name` cannot be an entry of a bundle ("" when it can): the archive entry-name rule
// (common/entry_names.h), regular files only (no trailing `/`), at most 100 bytes however the
// name arrived (ustar name, prefix, pax path).
std::string NameProblem(absl::string_view name) {
  std::vector<std::string> components;
  bool is_dir = false;
  std::string problem = UnsafeEntryNameProblem(name, kNameLen, &components, &is_dir);
  if (problem.empty() && is_dir) problem = "a folder name";
  return problem;
}

// An octal field (NUL/space terminated, leading spaces allowed) or GNU base-256 (high bit of
// the first byte set, big-endian, non-negative only).
bool ParseNumber(const char* field, size_t width, int64_t* out) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(field);
  int64_t value = 0;
  if (bytes[0] & 0x80) {
    if (bytes[0] != 0x80) return false;  // negative, or more than 63 bits
    for (size_t i = 1; i < width; ++i) {
      if (value > (INT64_MAX >> 8)) return false;
      value = (value << 8) | bytes[i];
    }
    *out = value;
    return true;
  }
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  bool any = false;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (value > (INT64_MAX >> 3)) return false;
    value = (value << 3) | (field[i] - '0');
    any = true;
  }
  for (; i < width; ++i) {
    if (field[i] != '\0' && field[i] != ' ') return false;
  }
  *out = value;
  return any;
}

std::string PaxRecord(absl::string_view key, absl::string_view value) {
  // "<length> <key>=<value>\n", the length counting its own digits.
  const size_t rest = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t length = rest + 1;
  while (absl::StrCat(length).size() + rest != length) length = absl::StrCat(length).size() + rest;
  return absl::StrCat(length, " ", key, "=", value, "\n");
}

}  // namespace

absl::Status TarWriter::WriteHeader(absl::string_view name, int64_t size, char type) {
  char block[kTarBlockBytes] = {};
  std::memcpy(block + kNameAt, name.data(), std::min(name.size(), kNameLen));
  PutOctal(block + kModeAt, 8, 0644);
  PutOctal(block + kUidAt, 8, 0);
  PutOctal(block + kGidAt, 8, 0);
  PutOctal(block + kSizeAt, kSizeLen, std::min(size, kMaxOctalSize));
  PutOctal(block + kMtimeAt, 12, 0);  // reproducible: the same inputs give the same bytes
  block[kTypeAt] = type;
  std::memcpy(block + kMagicAt,
              "ustar\0"
              "00",
              8);
  PutOctal(block + kChecksumAt, 7, Checksum(block));
  block[kChecksumAt + 7] = ' ';
  return WriteAll(fd_, block, sizeof(block));
}

absl::Status TarWriter::Begin(absl::string_view name, int64_t size) {
  if (declared_ >= 0) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "TAR_BAD_ENTRY",
                     absl::StrCat(path_, ": entry ", name, " begun before the last one ended"));
  }
  if (const std::string problem = NameProblem(name);
      !problem.empty() || size < 0 || size > kMaxTarEntryBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, "TAR_BAD_ENTRY",
                     absl::StrCat(path_, ": cannot write entry \"", name, "\" of ", size,
                                  " bytes (", problem.empty() ? "bad size" : problem,
                                  "; names are plain relative paths of at most 100 bytes)"));
  }
  if (size > kMaxOctalSize) {
    const std::string records = PaxRecord("size", absl::StrCat(size));
    MD_RETURN_IF_ERROR(WriteHeader(absl::StrCat("PaxHeaders/", name).substr(0, kNameLen),
                                   static_cast<int64_t>(records.size()), 'x'));
    std::string body = records;
    body.resize(records.size() + Padding(static_cast<int64_t>(records.size())), '\0');
    MD_RETURN_IF_ERROR(WriteAll(fd_, body.data(), body.size()));
  }
  MD_RETURN_IF_ERROR(WriteHeader(name, size, '0'));
  declared_ = size;
  written_ = 0;
  return absl::OkStatus();
}

absl::Status TarWriter::Write(absl::string_view data) {
  if (declared_ < 0 || static_cast<int64_t>(data.size()) > declared_ - written_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "TAR_BAD_ENTRY",
                     absl::StrCat(path_, ": more bytes than the entry declared"));
  }
  written_ += static_cast<int64_t>(data.size());
  return WriteAll(fd_, data.data(), data.size());
}

absl::Status TarWriter::End() {
  if (declared_ < 0 || written_ != declared_) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "TAR_BAD_ENTRY",
        absl::StrCat(path_, ": an entry got ", written_, " of its ", declared_, " bytes"));
  }
  const char zeros[kTarBlockBytes] = {};
  declared_ = -1;
  return WriteAll(fd_, zeros, static_cast<size_t>(Padding(written_)));
}

absl::Status TarWriter::Add(absl::string_view name, absl::string_view data) {
  MD_RETURN_IF_ERROR(Begin(name, static_cast<int64_t>(data.size())));
  MD_RETURN_IF_ERROR(Write(data));
  return End();
}

absl::Status TarWriter::Finish() {
  const char zeros[2 * kTarBlockBytes] = {};
  return WriteAll(fd_, zeros, sizeof(zeros));
}

absl::Status TarReader::BadHeader(absl::string_view what) const {
  return MakeError(
      absl::StatusCode::kInvalidArgument, "TAR_BAD_HEADER",
      absl::StrCat(path_, ": not a valid tar at byte ", position_ - kTarBlockBytes, ": ", what),
      {{"path", path_}});
}

absl::Status TarReader::ReadExactly(char* buf, size_t size) {
  MD_ASSIGN_OR_RETURN(size_t got, ReadAll(fd_, buf, size, path_));
  position_ += static_cast<int64_t>(got);
  if (got != size) {
    return MakeError(absl::StatusCode::kDataLoss, "TAR_TRUNCATED",
                     absl::StrCat(path_, " ends at byte ", position_,
                                  " inside an entry or before its end-of-archive blocks: the "
                                  "file is truncated; copy it again"),
                     {{"path", path_}});
  }
  return absl::OkStatus();
}

absl::Status TarReader::SkipBytes(int64_t size) {
  buffer_.resize(kPieceBytes);
  while (size > 0) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(size, kPieceBytes));
    MD_RETURN_IF_ERROR(ReadExactly(buffer_.data(), n));
    size -= static_cast<int64_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TarReader::Next(TarEntry* entry) {
  MD_RETURN_IF_ERROR(SkipBytes(remaining_ + padding_));
  remaining_ = padding_ = 0;
  int64_t pax_size = -1;
  std::string pax_path;
  for (;;) {
    char block[kTarBlockBytes];
    const int64_t header_at = position_;
    MD_RETURN_IF_ERROR(ReadExactly(block, sizeof(block)));
    if (std::all_of(block, block + sizeof(block), [](char c) { return c == '\0'; })) {
      // End of archive: a second zero block must follow (a first one alone is a cut file).
      MD_RETURN_IF_ERROR(ReadExactly(block, sizeof(block)));
      if (!std::all_of(block, block + sizeof(block), [](char c) { return c == '\0'; })) {
        return BadHeader("a zero block followed by data");
      }
      return false;
    }
    int64_t checksum = 0;
    if (!ParseNumber(block + kChecksumAt, kChecksumLen, &checksum) || checksum != Checksum(block)) {
      return BadHeader("header checksum mismatch");
    }
    if (std::memcmp(block + kMagicAt, "ustar", 5) != 0) return BadHeader("no ustar magic");
    int64_t size = 0;
    if (!ParseNumber(block + kSizeAt, kSizeLen, &size)) return BadHeader("bad size field");
    const char type = block[kTypeAt];
    if (type == 'x') {
      if (size > kMaxPaxBytes) return BadHeader("pax header over 64 KiB");
      std::string records(static_cast<size_t>(size + Padding(size)), '\0');
      MD_RETURN_IF_ERROR(ReadExactly(records.data(), records.size()));
      records.resize(static_cast<size_t>(size));
      absl::string_view rest = records;
      while (!rest.empty()) {
        const size_t space = rest.find(' ');
        size_t length = 0;
        if (space == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, space), &length) ||
            length <= space + 1 || length > rest.size() || rest[length - 1] != '\n') {
          return BadHeader("malformed pax record");
        }
        absl::string_view record = rest.substr(space + 1, length - space - 2);
        rest.remove_prefix(length);
        const size_t eq = record.find('=');
        if (eq == absl::string_view::npos) return BadHeader("malformed pax record");
        absl::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
        if (key == "size") {
          if (!absl::SimpleAtoi(value, &pax_size) || pax_size < 0) {
            return BadHeader("bad pax size");
          }
        } else if (key == "path") {
          pax_path = std::string(value);
        }  // mtime, uid, ... say nothing a bundle reader needs
      }
      continue;
    }
    if (type != '0' && type != '\0') {
      return BadHeader(absl::StrCat("entry of type '", std::string(1, type),
                                    "' (only regular files are allowed)"));
    }
    std::string name(block + kNameAt, strnlen(block + kNameAt, kNameLen));
    const std::string prefix(block + kPrefixAt, strnlen(block + kPrefixAt, kPrefixLen));
    if (!prefix.empty()) name = absl::StrCat(prefix, "/", name);
    if (!pax_path.empty()) name = pax_path;
    if (pax_size >= 0) size = pax_size;
    if (const std::string problem = NameProblem(name); !problem.empty()) {
      return BadHeader(
          absl::StrCat("unsafe entry name \"", absl::CHexEscape(name), "\" (", problem, ")"));
    }
    // Bounded so that no offset or padding sum can overflow further on.
    if (size > kMaxTarEntryBytes) return BadHeader(absl::StrCat("entry size ", size, " too large"));
    entry->name = std::move(name);
    entry->size = size;
    entry->offset = header_at;
    remaining_ = size;
    padding_ = Padding(size);
    return true;
  }
}

absl::Status TarReader::Read(int64_t limit,
                             const std::function<absl::Status(absl::string_view)>& sink) {
  if (limit < 0 || limit > remaining_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "TAR_BAD_ENTRY",
                     absl::StrCat(path_, ": read past the end of an entry"));
  }
  buffer_.resize(kPieceBytes);
  while (limit > 0) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(limit, kPieceBytes));
    MD_RETURN_IF_ERROR(ReadExactly(buffer_.data(), n));
    remaining_ -= static_cast<int64_t>(n);
    limit -= static_cast<int64_t>(n);
    MD_RETURN_IF_ERROR(sink(absl::string_view(buffer_.data(), n)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TarReader::ReadSmall(int64_t max_bytes) {
  if (remaining_ > max_bytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, "TAR_ENTRY_TOO_LARGE",
                     absl::StrCat(path_, ": an entry of ", remaining_, " bytes where at most ",
                                  max_bytes, " are expected"));
  }
  std::string out(static_cast<size_t>(remaining_), '\0');
  MD_RETURN_IF_ERROR(ReadExactly(out.data(), out.size()));
  remaining_ = 0;
  return out;
}

}  // namespace modeldist
