// model_info_dump --seeds DIR: writes the same GGUF files into DIR/gguf and a few valid CoreML
// zips into DIR/coreml_zip, the seeds of the gguf and coreml_zip fuzz targets (tools/fuzz.sh).
//
// model_info_dump DIR: writes a few GGUF files made by MakeGguf into DIR and prints, as one JSON
// array, each file's path and the v1::ModelInfo CheckGguf reads from it. The files differ in
// architecture, version, alignment, file type (or none) and tensor types, so that
// tests/node/gguf_crosscheck.mjs can compare every extracted field with what the independent
// @huggingface/gguf parser reads. Exit status 1 when a file is refused or cannot be written.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model_check/model_check.h"
#include "google/protobuf/util/json_util.h"
#include "tests/testing/model_files.h"

namespace {

using modeldist::testing::GgufSpec;

std::vector<std::pair<std::string, GgufSpec>> Files() {
  std::vector<std::pair<std::string, GgufSpec>> files;
  files.emplace_back("llama-q4km.gguf", GgufSpec());

  GgufSpec v2;
  v2.version = 2;
  v2.file_type = 7;  // Q8_0
  v2.tensors = {{"token_embd.weight", modeldist::testing::kGgmlQ4_0, {64, 5}},
                {"output.weight", modeldist::testing::kGgmlF32, {64, 5}}};
  files.emplace_back("llama-v2-q8.gguf", v2);

  GgufSpec qwen;
  qwen.architecture = "qwen2";
  qwen.name = "Qwen Tiny";
  qwen.context_length = 32768;
  qwen.tokenizer_model = "gpt2";
  qwen.alignment = 64;
  qwen.file_type = 18;  // Q6_K
  qwen.tokens.clear();
  for (int i = 0; i < 1000; ++i) qwen.tokens.push_back(absl::StrCat("tok", i));
  qwen.tensors = {{"token_embd.weight", modeldist::testing::kGgmlQ6_K, {256, 32}},
                  {"blk.0.attn_k.weight", modeldist::testing::kGgmlQ6_K, {256, 2, 2}},
                  {"output_norm.weight", modeldist::testing::kGgmlF32, {256}}};
  files.emplace_back("qwen2-q6k.gguf", qwen);

  GgufSpec unstated;
  unstated.architecture = "phi3";
  unstated.name = "";
  unstated.file_type.reset();  // the quantization comes from the tensor types
  unstated.tensors = {{"token_embd.weight", modeldist::testing::kGgmlF16, {64, 5}},
                      {"blk.0.ffn_up.weight", modeldist::testing::kGgmlQ4_K, {256, 16, 1, 2}}};
  files.emplace_back("phi3-unstated.gguf", unstated);
  return files;
}

}  // namespace

int WriteSeeds(const std::string& dir) {
  std::filesystem::create_directories(dir + "/gguf");
  std::filesystem::create_directories(dir + "/coreml_zip");
  for (const auto& [name, spec] : Files()) {
    std::ofstream(absl::StrCat(dir, "/gguf/", name), std::ios::binary)
        << modeldist::testing::MakeGguf(spec);
  }
  modeldist::testing::CoreMlZipSpec spec;
  std::ofstream(dir + "/coreml_zip/mlpackage.zip", std::ios::binary)
      << modeldist::testing::MakeCoreMlZip(spec);
  spec.compiled = true;
  std::ofstream(dir + "/coreml_zip/mlmodelc.zip", std::ios::binary)
      << modeldist::testing::MakeCoreMlZip(spec);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--seeds") return WriteSeeds(argv[2]);
  if (argc != 2) {
    std::cerr << "usage: model_info_dump DIR | model_info_dump --seeds DIR\n";
    return 1;
  }
  std::cout << "[";
  bool first = true;
  for (const auto& [name, spec] : Files()) {
    const std::string path = absl::StrCat(argv[1], "/", name);
    std::ofstream(path, std::ios::binary) << modeldist::testing::MakeGguf(spec);
    auto source = modeldist::model_check::OpenFileSource(path);
    if (!source.ok()) {
      std::cerr << source.status() << "\n";
      return 1;
    }
    auto info = modeldist::model_check::CheckGguf(**source, {});
    if (!info.ok()) {
      std::cerr << path << ": " << info.status() << "\n";
      return 1;
    }
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(*info, &json, options).ok()) return 1;
    std::cout << (first ? "" : ",") << "\n  {\"path\": \"" << path << "\", \"info\": " << json
              << "}";
    first = false;
  }
  std::cout << "\n]\n";
  return 0;
}
