// File: model_files.h
//
// Small model files built at test time (a few KiB), valid by default and breakable one rule at a
// time: MakeGguf (llama.cpp's GGUF) and MakeCoreMlZip (a zipped CoreML .mlpackage/.mlmodelc,
// written with libzip). The defaults pass common/model_check as they are.
#ifndef MODELDIST_TESTS_TESTING_MODEL_FILES_H_
#define MODELDIST_TESTS_TESTING_MODEL_FILES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/model_check/model_check.h"

namespace modeldist::testing {

// A ByteSource over bytes in memory that counts what it was asked to read.
class StringSource : public model_check::ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  int64_t size() const override { return static_cast<int64_t>(data_.size()); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override;
  // Bytes asked for by ReadAt calls so far.
  int64_t bytes_requested() const { return bytes_requested_; }

 private:
  std::string data_;
  mutable int64_t bytes_requested_ = 0;
};

// ggml tensor types by number (ggml.h enum ggml_type), the few the tests use.
inline constexpr uint32_t kGgmlF32 = 0;
inline constexpr uint32_t kGgmlF16 = 1;
inline constexpr uint32_t kGgmlQ4_0 = 2;
inline constexpr uint32_t kGgmlQ4_K = 12;
inline constexpr uint32_t kGgmlQ6_K = 14;

struct GgufTensorSpec {
  std::string name;
  uint32_t type = kGgmlF32;
  std::vector<int64_t> dims;  // ne[0] first
};

struct GgufSpec {
  uint32_t version = 3;
  std::string architecture = "llama";
  std::string name = "Tiny Llama";
  int64_t context_length = 2048;
  std::string tokenizer_model = "llama";
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a", "b"};
  std::optional<uint32_t> file_type = 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  // Written as general.alignment when set; the data is padded to it (32 when unset).
  std::optional<uint32_t> alignment;
  std::vector<GgufTensorSpec> tensors = {{"token_embd.weight", kGgmlF16, {64, 5}},
                                         {"blk.0.attn_q.weight", kGgmlQ4_K, {256, 4}},
                                         {"output_norm.weight", kGgmlF32, {64}}};

  // Knobs that break the file.
  bool omit_architecture = false;
  bool omit_tokenizer_model = false;
  bool omit_tokens = false;
  bool omit_context_length = false;
  // Metadata entries appended as they are: a key and its encoded type and value (GgufKv*).
  std::vector<std::string> extra_kvs;
  // Counts written in the header instead of the true ones.
  std::optional<uint64_t> tensor_count_override;
  std::optional<uint64_t> kv_count_override;
  // Data offsets written instead of the computed ones, by tensor name.
  std::map<std::string, uint64_t> offset_override;
  // Tensor data is left out (the file ends at the data section's start): for files whose data
  // is made sparse with ftruncate.
  bool omit_data = false;
};

// The GGUF file `spec` describes.
std::string MakeGguf(const GgufSpec& spec);
// Bytes of tensor data MakeGguf writes (or would, with omit_data) for `spec`.
uint64_t GgufDataBytes(const GgufSpec& spec);

// Encoded metadata entries for GgufSpec::extra_kvs.
std::string GgufString(const std::string& text);  // u64 length + bytes
std::string GgufKvString(const std::string& key, const std::string& value);
std::string GgufKvU32(const std::string& key, uint32_t value);
std::string GgufKvRaw(const std::string& key, uint32_t type, const std::string& value_bytes);

// One file or folder of a zip, as MakeCoreMlZip writes it.
struct ZipEntrySpec {
  std::string name;
  std::string contents;
  bool symlink = false;  // a unix symlink to `contents`
  bool directory = false;
  bool encrypt = false;  // AES-256 with a password
  bool store = false;    // stored, not deflated
};

struct CoreMlZipSpec {
  bool compiled = false;  // .mlmodelc instead of .mlpackage
  std::string package = "TinyLlama";
  // Top-level tokenizer and config files.
  std::vector<std::string> top_level_files = {"tokenizer.json", "tokenizer_config.json"};
  std::string config_model_type = "llama";  // a config.json with this model_type; "" for none

  // Knobs that break the package.
  std::optional<std::string> manifest_json;  // Manifest.json as given, instead of a valid one
  bool omit_manifest = false;
  bool omit_model_file = false;  // the root item / model.mil
  bool empty_model_file = false;
  bool omit_weights = false;     // the weights item's folder / weights file
  bool omit_coremldata = false;  // .mlmodelc only
  std::string metadata_json;     // .mlmodelc: metadata.json as given ("" writes a valid one)
  std::vector<ZipEntrySpec> extra_entries;
};

// The zip `spec` describes.
std::string MakeCoreMlZip(const CoreMlZipSpec& spec);
// A zip of exactly `entries`.
std::string MakeZip(const std::vector<ZipEntrySpec>& entries);

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_MODEL_FILES_H_
