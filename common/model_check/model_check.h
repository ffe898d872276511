// File: model_check.h
//
// Checks that a model file is what its format says before any device sees it, and reads what
// people want to know about it (architecture, name, parameters, quantization, context length,
// tokenizer) into a v1::ModelInfo. The server runs it on every GGUF and CoreML zip artifact when
// a version is published; `modeldistctl inspect` and `publish --check` run it on local files.
//
// The file is hostile: every length, count and offset is checked against the file's size and
// the limits below before it is used, and only the header and metadata region is read (a
// 16 GiB GGUF costs a few MiB of reads, never a read of its weights).
//
// Errors: INVALID_ARGUMENT with reason GGUF_INVALID or COREML_ZIP_INVALID; the message says
// what is wrong and where (a byte offset, or an archive entry's name). Read errors of the
// source are passed on.
#ifndef MODELDIST_COMMON_MODEL_CHECK_MODEL_CHECK_H_
#define MODELDIST_COMMON_MODEL_CHECK_MODEL_CHECK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::model_check {

// Random access to the bytes being checked: a local file, or a blob in the server's store.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // The file's size in bytes.
  virtual int64_t size() const = 0;
  // Reads up to `size` bytes at `offset` into `buf`; returns the count, which is less than
  // `size` only at the end of the file.
  virtual absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const = 0;
};

// A local file opened for checking.
absl::StatusOr<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path);

struct CheckOptions {
  // CoreML zip: file names (basenames) that must be somewhere in the archive besides the
  // package, e.g. a tokenizer. Empty: at least one of kKnownTokenizerFiles must be present.
  // They only add requirements: one at the top of the archive must still be a
  // kFilesNextToPackage, like any file there.
  std::vector<std::string> required_files;
  // GGUF: the most bytes of header and metadata read; larger metadata is refused.
  int64_t max_metadata_bytes = int64_t{256} << 20;
  // CoreML zip: the most entries, and the most uncompressed bytes in all.
  int64_t max_zip_entries = 100000;
  int64_t max_zip_total_bytes = int64_t{64} << 30;
  // CoreML zip: the most uncompressed bytes per compressed byte of one entry (zip bombs); the
  // device agent's extraction refuses the same (client/agent/unzip.h UnzipLimits).
  int64_t max_zip_ratio = 1000;
};

// Tokenizer files a CoreML zip is expected to carry when CheckOptions::required_files is empty.
inline constexpr const char* kKnownTokenizerFiles[] = {"tokenizer.json", "tokenizer.model",
                                                       "tokenizer_config.json", "vocab.json"};

// The only files that may sit next to the package at the top of a CoreML zip: the
// kKnownTokenizerFiles, the other files of common tokenizers (BPE merges, WordPiece and
// SentencePiece vocabularies, added and special tokens) and the Hugging Face configs. The set is
// fixed: CheckOptions::required_files only adds requirements, so `publish --check
// --require-file X` never accepts a file next to the package that the server refuses there.
inline constexpr const char* kFilesNextToPackage[] = {"tokenizer.json",
                                                      "tokenizer.model",
                                                      "tokenizer_config.json",
                                                      "vocab.json",
                                                      "merges.txt",
                                                      "vocab.txt",
                                                      "spiece.model",
                                                      "sentencepiece.bpe.model",
                                                      "added_tokens.json",
                                                      "config.json",
                                                      "special_tokens_map.json",
                                                      "generation_config.json"};

// The most bytes of a ModelInfo text field (architecture, name, tokenizer) kept: they are
// display names, and the file is hostile.
inline constexpr size_t kMaxDisplayTextBytes = 256;

// `raw`, text a model file says about itself, made fit for a ModelInfo string field: proto3
// strings must be UTF-8 (else the ModelInfo does not serialize, parse or print as JSON), and
// `inspect` and `show` print it to terminals. Valid UTF-8 without control characters (C0, DEL,
// C1) is kept as it is; anything else is C-escaped whole (absl::CHexEscape, the escaping of
// entry names in error metadata), so it is shown rather than refused. The result is at most
// `max_bytes` (>= 4) long: a longer one is cut at a character boundary and ends in "...".
std::string DisplayText(absl::string_view raw, size_t max_bytes = kMaxDisplayTextBytes);

// Whether `format` has a check (GGUF and CoreML zip); other formats are accepted unread.
bool HasCheck(v1::Format format);

// Checks `source` as a file of `format` and returns what it says about itself. Formats without
// a check return an empty ModelInfo.
absl::StatusOr<v1::ModelInfo> CheckModel(v1::Format format, const ByteSource& source,
                                         const CheckOptions& options);

// The format-specific checks CheckModel dispatches to.
//
// CheckGguf (GGUF_INVALID) accepts what llama.cpp loads: versions 2 and 3 (little-endian); counts
// the file can hold; the 13 value types, arrays of arrays refused; unique keys; a uint32
// `general.alignment` that is a power of two; `general.architecture`, `tokenizer.ggml.model`, a
// non-empty `tokenizer.ggml.tokens` and `<architecture>.context_length` > 0; at least one
// tensor; unique tensor names of at most 63 bytes, 1-4 positive dimensions, a known ggml type
// whose block size divides each row; data aligned, inside the file, overlapping no other, and
// laid out as llama.cpp reads it (in the order of the infos, each padded to the alignment).
// The error's ErrorInfo metadata has the byte "offset" it is about.
absl::StatusOr<v1::ModelInfo> CheckGguf(const ByteSource& source, const CheckOptions& options);
// CheckCoreMlZip (COREML_ZIP_INVALID) accepts a zip of exactly one top-level `*.mlpackage` or
// `*.mlmodelc` folder, next to which only kFilesNextToPackage may sit; entries with safe
// names (zip_names.h), regular files and folders only, unencrypted, within the limits of
// `options`. An .mlpackage needs a Manifest.json (fileFormatVersion 1.x.y) whose every item
// exists under Data/, whose root model item is a non-empty file and whose weights item holds
// data; an .mlmodelc needs a non-empty coremldata.bin and model.mil or model.espresso.net, and
// its metadata.json, like a top-level config.json, must parse. The error's ErrorInfo metadata
// has the "entry" it is about (C-escaped), when it is about one.
absl::StatusOr<v1::ModelInfo> CheckCoreMlZip(const ByteSource& source, const CheckOptions& options);

// One line per known field of `info`, "  architecture: llama", for people (`inspect`, `show`).
std::string DescribeModelInfo(const v1::ModelInfo& info);

}  // namespace modeldist::model_check

#endif  // MODELDIST_COMMON_MODEL_CHECK_MODEL_CHECK_H_
