// libFuzzer target for the model file check of a zipped CoreML model (.mlpackage / .mlmodelc)
// (common/model_check): the fuzzer's bytes are checked in memory. Any result but OK or
// INVALID_ARGUMENT with reason COREML_ZIP_INVALID aborts (as do the sanitizers' findings). The
// seeds are small real files, as the test generators make them (model_info_dump --seeds).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/model_check/model_check.h"
#include "common/status.h"
#include "tests/fuzz/memory_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  modeldist::fuzz::MemorySource source(data, size);
  modeldist::model_check::CheckOptions options;
  const auto result = modeldist::model_check::CheckCoreMlZip(source, options);
  if (!result.ok() && (result.status().code() != absl::StatusCode::kInvalidArgument ||
                       modeldist::ErrorReason(result.status()) != "COREML_ZIP_INVALID")) {
    std::fprintf(stderr, "unexpected result: %s\n", result.status().ToString().c_str());
    abort();
  }
  return 0;
}
