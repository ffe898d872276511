// File: entry_names.h
//
// The one home of the rule for what a path inside an archive may be called: shared by the zip
// entries of CoreML models (common/model_check/zip_names.h, the agent's extraction and the
// publish-time check) and the tar entries of model bundles (common/tar.h). It lives in common/
// because model_check depends on common, not the other way round.
//
// Being strict is cheap: the tools that write these archives never produce the refused forms,
// and a name that passes is one every file system and extractor treats as the same plain
// relative path.
#ifndef MODELDIST_COMMON_ENTRY_NAMES_H_
#define MODELDIST_COMMON_ENTRY_NAMES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace modeldist {

// 255 is the component limit of every file system the agent runs on.
inline constexpr size_t kMaxEntryComponentLength = 255;

// Splits `name` into components that are each safe to create inside a target folder: a
// relative path of at most `max_length` bytes made of plain components (no `.` or `..`, no
// empty component, no leading `/`, no drive letter, no backslash, no control character or NUL,
// each within kMaxEntryComponentLength). A name ending in `/` is a directory (`*is_dir`).
// Returns "" when the name is safe, else why not (e.g. "`.` or `..` component");
// `components` and `is_dir` are set only when safe.
std::string UnsafeEntryNameProblem(absl::string_view name, size_t max_length,
                                   std::vector<std::string>* components, bool* is_dir);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_ENTRY_NAMES_H_
