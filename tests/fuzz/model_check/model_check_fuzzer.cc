// libFuzzer target for the model file checks (tools/fuzz-model-check.sh builds it): the fuzzer's
// bytes are checked in memory as a GGUF file, or as a CoreML zip when built with
// -DMODEL_CHECK_FUZZ_COREML_ZIP. Any result but OK or INVALID_ARGUMENT with the parser's reason
// aborts (as do the sanitizers' findings).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/model_check/model_check.h"
#include "common/status.h"

namespace {

class MemorySource : public modeldist::model_check::ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  int64_t size() const override { return static_cast<int64_t>(size_); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override {
    if (offset < 0 || static_cast<size_t>(offset) > size_) abort();  // a parser bug
    const size_t n = std::min(size, size_ - static_cast<size_t>(offset));
    if (n > 0) std::memcpy(buf, data_ + offset, n);
    return n;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MemorySource source(data, size);
  modeldist::model_check::CheckOptions options;
#ifdef MODEL_CHECK_FUZZ_COREML_ZIP
  const char* reason = "COREML_ZIP_INVALID";
  const auto result = modeldist::model_check::CheckCoreMlZip(source, options);
#else
  const char* reason = "GGUF_INVALID";
  const auto result = modeldist::model_check::CheckGguf(source, options);
#endif
  if (!result.ok() && (result.status().code() != absl::StatusCode::kInvalidArgument ||
                       modeldist::ErrorReason(result.status()) != reason)) {
    std::fprintf(stderr, "unexpected result: %s\n", result.status().ToString().c_str());
    abort();
  }
  return 0;
}
