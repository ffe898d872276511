#include "common/entry_names.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace modeldist {

std::string UnsafeEntryNameProblem(absl::string_view name, size_t max_length,
                                   std::vector<std::string>* components, bool* is_dir) {
  if (name.empty()) return "empty name";
  if (name.size() > max_length) return "name too long";
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "control character in name";
    // Windows separators: an extractor there would treat `..\x` as a parent reference.
    if (c == '\\') return "backslash in name";
  }
  if (name.front() == '/') return "absolute path";
  if (name.size() >= 2 && absl::ascii_isalpha(static_cast<unsigned char>(name[0])) &&
      name[1] == ':') {
    return "drive letter";
  }
  const bool dir = name.back() == '/';
  if (dir) name.remove_suffix(1);
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty()) return "empty path component";
    if (part == "." || part == "..") return "`.` or `..` component";
    if (part.size() > kMaxEntryComponentLength) return "path component too long";
    parts.emplace_back(part);
  }
  *components = std::move(parts);
  *is_dir = dir;
  return "";
}

}  // namespace modeldist
