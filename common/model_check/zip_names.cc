#include "common/model_check/zip_names.h"

#include <sys/stat.h>
#include <zip.h>

#include <limits>

#include "common/entry_names.h"

namespace modeldist::model_check {

std::string UnsafeZipNameProblem(absl::string_view name, std::vector<std::string>* components,
                                 bool* is_dir) {
  return UnsafeEntryNameProblem(name, kMaxZipNameLength, components, is_dir);
}

std::string UnsupportedZipEntryTypeProblem(uint8_t opsys, uint32_t attributes, bool is_dir) {
  if (opsys != ZIP_OPSYS_UNIX && opsys != ZIP_OPSYS_OS_X) return "";
  const mode_t type = static_cast<mode_t>(attributes >> 16) & S_IFMT;
  switch (type) {
    case 0:  // no type recorded: the trailing slash decides
      return "";
    case S_IFREG:
      return is_dir ? "file with a `/` name" : "";
    case S_IFDIR:
      return is_dir ? "" : "directory without `/`";
    case S_IFLNK:
      return "symbolic link";
    default:
      return "device, fifo or socket";
  }
}

bool ZipRatioExceeded(uint64_t size, uint64_t compressed, uint64_t max_ratio) {
  if (size == 0) return false;
  if (compressed == 0 || max_ratio == 0) return true;
  if (compressed > std::numeric_limits<uint64_t>::max() / max_ratio) return false;
  return size > compressed * max_ratio;
}

}  // namespace modeldist::model_check
