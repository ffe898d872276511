#include "tests/testing/model_files.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace modeldist::testing {
namespace {

constexpr uint32_t kTypeUint32 = 4;
constexpr uint32_t kTypeString = 8;
constexpr uint32_t kTypeArray = 9;
constexpr uint32_t kTypeUint64 = 10;

void PutLe(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Block size and bytes per block of the types MakeGguf computes sizes for (ggml-common.h).
void TypeSize(uint32_t type, uint64_t* block, uint64_t* bytes) {
  switch (type) {
    case kGgmlF32:
      *block = 1, *bytes = 4;
      return;
    case kGgmlF16:
      *block = 1, *bytes = 2;
      return;
    case kGgmlQ4_0:
      *block = 32, *bytes = 18;
      return;
    case kGgmlQ4_K:
      *block = 256, *bytes = 144;
      return;
    case kGgmlQ6_K:
      *block = 256, *bytes = 210;
      return;
    default:  // an unknown type: one byte an element, so broken files still have a layout
      *block = 1, *bytes = 1;
  }
}

uint64_t TensorBytes(const GgufTensorSpec& tensor) {
  uint64_t elements = 1;
  for (int64_t d : tensor.dims) elements *= static_cast<uint64_t>(d);
  uint64_t block = 1, bytes = 1;
  TypeSize(tensor.type, &block, &bytes);
  return elements / block * bytes;
}

uint64_t Pad(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

}  // namespace

absl::StatusOr<size_t> StringSource::ReadAt(int64_t offset, char* buf, size_t size) const {
  bytes_requested_ += static_cast<int64_t>(size);
  if (offset < 0 || offset > this->size()) return absl::OutOfRangeError("read past the end");
  const size_t n = std::min(size, data_.size() - static_cast<size_t>(offset));
  std::copy_n(data_.data() + offset, n, buf);
  return n;
}

std::string GgufString(const std::string& text) {
  std::string out;
  PutLe(out, text.size(), 8);
  return out + text;
}

std::string GgufKvRaw(const std::string& key, uint32_t type, const std::string& value_bytes) {
  std::string out = GgufString(key);
  PutLe(out, type, 4);
  return out + value_bytes;
}

std::string GgufKvString(const std::string& key, const std::string& value) {
  return GgufKvRaw(key, kTypeString, GgufString(value));
}

std::string GgufKvU32(const std::string& key, uint32_t value) {
  std::string bytes;
  PutLe(bytes, value, 4);
  return GgufKvRaw(key, kTypeUint32, bytes);
}

uint64_t GgufDataBytes(const GgufSpec& spec) {
  const uint64_t alignment = spec.alignment.value_or(32);
  uint64_t total = 0;
  for (const GgufTensorSpec& t : spec.tensors) total += Pad(TensorBytes(t), alignment);
  return total;
}

std::string MakeGguf(const GgufSpec& spec) {
  std::vector<std::string> kvs;
  if (!spec.omit_architecture)
    kvs.push_back(GgufKvString("general.architecture", spec.architecture));
  if (!spec.name.empty()) kvs.push_back(GgufKvString("general.name", spec.name));
  if (spec.alignment) kvs.push_back(GgufKvU32("general.alignment", *spec.alignment));
  if (spec.file_type) kvs.push_back(GgufKvU32("general.file_type", *spec.file_type));
  if (!spec.omit_context_length) {
    std::string value;
    PutLe(value, static_cast<uint64_t>(spec.context_length), 8);
    kvs.push_back(GgufKvRaw(spec.architecture + ".context_length", kTypeUint64, value));
  }
  if (!spec.omit_tokenizer_model) {
    kvs.push_back(GgufKvString("tokenizer.ggml.model", spec.tokenizer_model));
  }
  if (!spec.omit_tokens) {
    std::string value;
    PutLe(value, kTypeString, 4);
    PutLe(value, spec.tokens.size(), 8);
    for (const std::string& token : spec.tokens) value += GgufString(token);
    kvs.push_back(GgufKvRaw("tokenizer.ggml.tokens", kTypeArray, value));
  }
  for (const std::string& kv : spec.extra_kvs) kvs.push_back(kv);

  std::string out = "GGUF";
  PutLe(out, spec.version, 4);
  PutLe(out, spec.tensor_count_override.value_or(spec.tensors.size()), 8);
  PutLe(out, spec.kv_count_override.value_or(kvs.size()), 8);
  for (const std::string& kv : kvs) out += kv;
  const uint64_t alignment = spec.alignment.value_or(32);
  uint64_t offset = 0;
  for (const GgufTensorSpec& t : spec.tensors) {
    out += GgufString(t.name);
    PutLe(out, t.dims.size(), 4);
    for (int64_t d : t.dims) PutLe(out, static_cast<uint64_t>(d), 8);
    PutLe(out, t.type, 4);
    const auto it = spec.offset_override.find(t.name);
    PutLe(out, it != spec.offset_override.end() ? it->second : offset, 8);
    offset += Pad(TensorBytes(t), alignment);
  }
  out.resize(Pad(out.size(), alignment), '\0');
  if (spec.omit_data) return out;
  // Tensor data: a deterministic pattern, never read by the check. Tensors past 16 MiB (or
  // with shapes no real file has) are left out: tests make such files sparse or expect them
  // refused.
  for (const GgufTensorSpec& t : spec.tensors) {
    const uint64_t bytes = TensorBytes(t);
    if (bytes > (uint64_t{16} << 20)) continue;
    for (uint64_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>(i * 31 + 7));
    out.resize(Pad(out.size(), alignment), '\0');
  }
  return out;
}

std::string MakeZip(const std::vector<ZipEntrySpec>& entries) {
  char path[] = "/tmp/modeldist-zip-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp failed";
    return "";
  }
  ::close(fd);
  int error = 0;
  zip_t* archive = zip_open(path, ZIP_TRUNCATE, &error);
  if (archive == nullptr) {
    ADD_FAILURE() << "zip_open failed: " << error;
    ::unlink(path);
    return "";
  }
  for (const ZipEntrySpec& e : entries) {
    zip_int64_t index = -1;
    if (e.directory) {
      index = zip_dir_add(archive, e.name.c_str(), 0);
    } else {
      // libzip reads the buffer at zip_close, so the source owns a copy (freep) that lives
      // that long. An empty entry has no buffer: libzip does not free one of size 0.
      char* copy = nullptr;
      if (!e.contents.empty()) {
        copy = static_cast<char*>(std::malloc(e.contents.size()));
        std::copy(e.contents.begin(), e.contents.end(), copy);
      }
      zip_source_t* source =
          zip_source_buffer(archive, copy, e.contents.size(), /*freep=*/copy != nullptr ? 1 : 0);
      index = zip_file_add(archive, e.name.c_str(), source, 0);
      if (index < 0) zip_source_free(source);
    }
    if (index < 0) {
      ADD_FAILURE() << "adding " << e.name << ": " << zip_strerror(archive);
      continue;
    }
    const auto i = static_cast<zip_uint64_t>(index);
    if (e.symlink) {
      zip_file_set_external_attributes(archive, i, 0, ZIP_OPSYS_UNIX,
                                       static_cast<zip_uint32_t>(S_IFLNK | 0777) << 16);
    } else {
      const mode_t mode = e.directory ? (S_IFDIR | 0755) : (S_IFREG | 0644);
      zip_file_set_external_attributes(archive, i, 0, ZIP_OPSYS_UNIX,
                                       static_cast<zip_uint32_t>(mode) << 16);
    }
    if (e.store) zip_set_file_compression(archive, i, ZIP_CM_STORE, 0);
    if (e.encrypt && zip_file_set_encryption(archive, i, ZIP_EM_AES_256, "secret") != 0) {
      ADD_FAILURE() << "encrypting " << e.name << ": " << zip_strerror(archive);
    }
  }
  if (zip_close(archive) != 0) {
    ADD_FAILURE() << "zip_close: " << zip_strerror(archive);
    zip_discard(archive);
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  ::unlink(path);
  return bytes.str();
}

std::string MakeCoreMlZip(const CoreMlZipSpec& spec) {
  std::vector<ZipEntrySpec> entries;
  const std::string pkg = spec.package + (spec.compiled ? ".mlmodelc" : ".mlpackage");
  // Incompressible, like real weights, so that ratio limits see a realistic entry.
  std::string weights(4096, '\0');
  uint32_t state = 12345;
  for (char& c : weights) {
    state = state * 1103515245 + 12345;
    c = static_cast<char>(state >> 24);
  }
  if (!spec.compiled) {
    const std::string data = pkg + "/Data/com.apple.CoreML/";
    if (!spec.omit_manifest) {
      const std::string manifest = spec.manifest_json.value_or(R"({
  "fileFormatVersion": "1.0.0",
  "itemInfoEntries": {
    "0D4F1C2E-0000-4000-8000-000000000001": {
      "author": "com.apple.CoreML",
      "description": "CoreML Model Specification",
      "name": "model.mlmodel",
      "path": "com.apple.CoreML/model.mlmodel"
    },
    "0D4F1C2E-0000-4000-8000-000000000002": {
      "author": "com.apple.CoreML",
      "description": "CoreML Model Weights",
      "name": "weights",
      "path": "com.apple.CoreML/weights"
    }
  },
  "rootModelIdentifier": "0D4F1C2E-0000-4000-8000-000000000001"
})");
      entries.push_back({pkg + "/Manifest.json", manifest});
    }
    if (!spec.omit_model_file) {
      entries.push_back({data + "model.mlmodel", spec.empty_model_file ? "" : "\x08\x08\x12\x00"});
    }
    if (!spec.omit_weights) entries.push_back({data + "weights/weight.bin", weights});
  } else {
    if (!spec.omit_coremldata) entries.push_back({pkg + "/coremldata.bin", "coremldata"});
    if (!spec.omit_model_file) {
      entries.push_back({pkg + "/model.mil", spec.empty_model_file ? "" : "program(1.0)\n"});
    }
    if (!spec.omit_weights) entries.push_back({pkg + "/weights/weight.bin", weights});
    entries.push_back(
        {pkg + "/metadata.json",
         spec.metadata_json.empty()
             ? R"([{"modelType": {"name": "MLModelType_mlProgram"}, "specificationVersion": 8}])"
             : spec.metadata_json});
  }
  for (const std::string& name : spec.top_level_files) {
    entries.push_back({name, absl::StrCat("{\"file\": \"", name, "\"}")});
  }
  if (!spec.config_model_type.empty()) {
    entries.push_back(
        {"config.json", absl::StrCat("{\"model_type\": \"", spec.config_model_type, "\"}")});
  }
  for (const ZipEntrySpec& e : spec.extra_entries) entries.push_back(e);
  return MakeZip(entries);
}

}  // namespace modeldist::testing
