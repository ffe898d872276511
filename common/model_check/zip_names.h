// File: zip_names.h
//
// The one home of the rules for what a zip entry may be called and be, shared by the device
// agent's extraction (client/agent/unzip.cc) and the publish-time CoreML zip check
// (coreml_zip.cc): an archive the server accepted is one the agent can unpack.
//
// Names are checked as raw bytes (zip_stat_index with ZIP_FL_ENC_RAW): the bytes checked are
// the bytes used. Being strict is cheap: tools that zip a CoreML package never produce the
// refused forms.
#ifndef MODELDIST_COMMON_MODEL_CHECK_ZIP_NAMES_H_
#define MODELDIST_COMMON_MODEL_CHECK_ZIP_NAMES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace modeldist::model_check {

// Longer names are refused rather than left to fail in openat() with an unhelpful errno.
inline constexpr size_t kMaxZipNameLength = 1024;

// The archive entry-name rule of common/entry_names.h (its one home, shared with bundle tars)
// with names of at most kMaxZipNameLength bytes: "" when `name` is safe, else why not; a name
// ending in `/` is a directory (`*is_dir`); `components` is filled only when safe.
std::string UnsafeZipNameProblem(absl::string_view name, std::vector<std::string>* components,
                                 bool* is_dir);

// Checks the file type an entry records in its external attributes (`opsys`, `attributes` from
// zip_file_get_external_attributes): only regular files and directories are accepted, and the
// type must agree with the name's trailing `/` (`is_dir`). Only unix-made archives carry a file
// type (st_mode in the high 16 bits); others have no symlinks. Returns "" when accepted, else
// why not (e.g. "symbolic link").
std::string UnsupportedZipEntryTypeProblem(uint8_t opsys, uint32_t attributes, bool is_dir);

// Whether an entry of `size` bytes stored in `compressed` bytes exceeds `max_ratio` (a zip
// bomb), without overflow. Empty entries never do; a non-empty entry from 0 bytes always does.
bool ZipRatioExceeded(uint64_t size, uint64_t compressed, uint64_t max_ratio);

}  // namespace modeldist::model_check

#endif  // MODELDIST_COMMON_MODEL_CHECK_ZIP_NAMES_H_
