// CheckCoreMlZip on zips MakeCoreMlZip builds with libzip: what a valid .mlpackage and
// .mlmodelc say about themselves, and each way of breaking one refused as COREML_ZIP_INVALID
// with a message that names the entry.
#include <functional>
#include <string>

#include "common/model_check/model_check.h"
#include "gtest/gtest.h"
#include "tests/common/model_check/model_check_matchers.h"
#include "tests/testing/model_files.h"
#include "tests/testing/test_util.h"

namespace modeldist::model_check {
namespace {

using ::modeldist::testing::CoreMlZipSpec;
using ::modeldist::testing::IsStorableModelInfo;
using ::modeldist::testing::MakeCoreMlZip;
using ::modeldist::testing::MakeZip;
using ::modeldist::testing::RefusedWith;
using ::modeldist::testing::StringSource;
using ::modeldist::testing::ZipEntrySpec;

constexpr char kZip[] = "COREML_ZIP_INVALID";
constexpr char kPackage[] = "TinyLlama.mlpackage";
constexpr char kData[] = "TinyLlama.mlpackage/Data/com.apple.CoreML/";

absl::StatusOr<v1::ModelInfo> Check(const std::string& bytes, const CheckOptions& options = {}) {
  StringSource source(bytes);
  return CheckModel(v1::FORMAT_COREML_ZIP, source, options);
}

std::string Manifest(const std::string& root, const std::string& model_path,
                     const std::string& version = "1.0.0") {
  return R"({"fileFormatVersion": ")" + version + R"(", "itemInfoEntries": {"A": {"author": "a",
      "description": "d", "name": "model.mlmodel", "path": ")" +
         model_path + R"("}}, "rootModelIdentifier": ")" + root + R"("})";
}

TEST(CoreMlZipTest, ValidMlPackageSaysWhatItIs) {
  absl::StatusOr<v1::ModelInfo> info = Check(MakeCoreMlZip(CoreMlZipSpec()));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->name(), "TinyLlama");
  EXPECT_EQ(info->container(), "mlpackage");
  EXPECT_EQ(info->architecture(), "llama");  // config.json model_type
  // Manifest, model, weight.bin, tokenizer.json, tokenizer_config.json, config.json.
  EXPECT_EQ(info->item_count(), 6);
  EXPECT_EQ(info->tokenizer(), "tokenizer.json,tokenizer_config.json");
  EXPECT_EQ(DescribeModelInfo(*info),
            "  architecture: llama\n  name: TinyLlama\n  tokenizer: "
            "tokenizer.json,tokenizer_config.json\n  container: mlpackage\n  files: 6\n");
}

TEST(CoreMlZipTest, ValidMlModelcSaysWhatItIs) {
  CoreMlZipSpec spec;
  spec.compiled = true;
  spec.config_model_type = "";
  absl::StatusOr<v1::ModelInfo> info = Check(MakeCoreMlZip(spec));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->container(), "mlmodelc");
  EXPECT_EQ(info->architecture(), "mlProgram");  // metadata.json modelType
  EXPECT_EQ(info->item_count(), 6);
}

TEST(CoreMlZipTest, RequiredFilesReplaceTheTokenizerDefault) {
  CoreMlZipSpec spec;
  spec.top_level_files = {"tokenizer.model"};
  CheckOptions options;
  options.required_files = {"tokenizer.model"};
  absl::StatusOr<v1::ModelInfo> info = Check(MakeCoreMlZip(spec), options);
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->tokenizer(), "tokenizer.model");

  options.required_files = {"tokenizer.model", "merges.txt"};
  EXPECT_THAT(Check(MakeCoreMlZip(spec), options),
              RefusedWith(kZip, "required file merges.txt is not in the archive"));
  // Anywhere in the archive counts, inside the package too.
  spec.extra_entries = {{std::string(kPackage) + "/merges.txt", "a b"}};
  MD_EXPECT_OK(Check(MakeCoreMlZip(spec), options));
}

TEST(CoreMlZipTest, RequiredFilesDoNotWidenWhatMaySitNextToThePackage) {
  CoreMlZipSpec spec;
  spec.top_level_files = {"tokenizer.json", "labels.txt"};
  const std::string zip = MakeCoreMlZip(spec);
  CheckOptions required;
  required.required_files = {"labels.txt"};
  // `publish --check --require-file labels.txt` refuses it as the server's defaults do.
  for (const CheckOptions& options : {CheckOptions(), required}) {
    absl::StatusOr<v1::ModelInfo> info = Check(zip, options);
    EXPECT_THAT(info, RefusedWith(kZip,
                                  "entry \"labels.txt\": outside the package; only "
                                  "tokenizer and config files (tokenizer.json, "));
    EXPECT_EQ(ErrorMetadataValue(info.status(), "entry"), "labels.txt");
  }
  // Inside the package, the required file is found.
  spec.top_level_files = {"tokenizer.json"};
  spec.extra_entries = {{std::string(kPackage) + "/labels.txt", "cat"}};
  MD_EXPECT_OK(Check(MakeCoreMlZip(spec), required));
}

TEST(CoreMlZipTest, TokenizerAndConfigFilesMaySitNextToThePackageWhateverIsRequired) {
  CheckOptions required;
  required.required_files = {"tokenizer.json"};
  for (const std::string name : kFilesNextToPackage) {
    CoreMlZipSpec spec;
    spec.config_model_type = "";
    spec.top_level_files = {"tokenizer.json"};
    if (name != "tokenizer.json") spec.top_level_files.push_back(name);
    const std::string zip = MakeCoreMlZip(spec);
    MD_EXPECT_OK(Check(zip)) << name;
    MD_EXPECT_OK(Check(zip, required)) << name;
  }
}

// The package folder's name is raw zip bytes and config.json's model_type any JSON string: what
// is not printable UTF-8 is kept escaped, so the ModelInfo stores, parses and prints.
TEST(CoreMlZipTest, TextThatIsNotPrintableUtf8IsKeptEscaped) {
  CoreMlZipSpec spec;
  spec.package = "Tiny\xe9\x9bLlama";  // Latin-1 e-acute and a lone 8-bit CSI: not UTF-8
  spec.config_model_type = "llama\\u001b[2J";
  absl::StatusOr<v1::ModelInfo> info = Check(MakeCoreMlZip(spec));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->name(), "Tiny\\xe9\\x9bLlama");
  EXPECT_EQ(info->architecture(), "llama\\x1b[2J");
  EXPECT_THAT(*info, IsStorableModelInfo());

  CoreMlZipSpec compiled;
  compiled.compiled = true;
  compiled.config_model_type = "";
  compiled.package = "Tiny\xc2\x9bLlama";  // UTF-8, but C1 CSI
  compiled.metadata_json = R"([{"modelType": {"name": "MLModelType_\u009b[2J"}}])";
  info = Check(MakeCoreMlZip(compiled));
  MD_ASSERT_OK(info);
  EXPECT_EQ(info->name(), "Tiny\\xc2\\x9bLlama");
  EXPECT_EQ(info->architecture(), "\\xc2\\x9b[2J");
  EXPECT_THAT(*info, IsStorableModelInfo());

  // Messages name such a package escaped too.
  spec.omit_manifest = true;
  EXPECT_THAT(Check(MakeCoreMlZip(spec)),
              RefusedWith(kZip, "Tiny\\xe9\\x9bLlama.mlpackage/Manifest.json is missing"));
}

struct Breakage {
  std::string name;
  std::function<void(CoreMlZipSpec&, CheckOptions&)> change;
  std::string message;
  std::string entry;  // the ErrorInfo "entry" (C-escaped), when the refusal is about one
};

class CoreMlZipBrokenTest : public ::testing::TestWithParam<Breakage> {};

TEST_P(CoreMlZipBrokenTest, IsRefusedNamingTheEntry) {
  CoreMlZipSpec spec;
  CheckOptions options;
  GetParam().change(spec, options);
  absl::StatusOr<v1::ModelInfo> info = Check(MakeCoreMlZip(spec), options);
  EXPECT_THAT(info, RefusedWith(kZip, GetParam().message));
  EXPECT_EQ(ErrorMetadataValue(info.status(), "entry"), GetParam().entry);
}

std::string Data(const std::string& name) { return kData + name; }

INSTANTIATE_TEST_SUITE_P(
    Rules, CoreMlZipBrokenTest,
    ::testing::Values(
        Breakage{"TwoPackages",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"Other.mlmodelc/coremldata.bin", "x"}};
                 },
                 "more than one package at the top of the archive (Other.mlmodelc, "
                 "TinyLlama.mlpackage)",
                 ""},
        Breakage{"StrayTopLevelFile",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"notes.txt", "x"}};
                 },
                 "entry \"notes.txt\": outside the package", "notes.txt"},
        Breakage{"StrayTopLevelFolder",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"__MACOSX/._x", "x"}};
                 },
                 "outside the package", "__MACOSX/._x"},
        Breakage{"DotDot",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"TinyLlama.mlpackage/../../evil", "x"}};
                 },
                 "`.` or `..` component", "TinyLlama.mlpackage/../../evil"},
        Breakage{"AbsolutePath",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"/etc/evil", "x"}};
                 },
                 "absolute path", "/etc/evil"},
        Breakage{"Backslash",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{"TinyLlama.mlpackage\\..\\evil", "x"}};
                 },
                 "backslash in name", "TinyLlama.mlpackage\\\\..\\\\evil"},
        Breakage{"Symlink",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{Data("link"), "/etc/passwd", /*symlink=*/true}};
                 },
                 "symbolic link", Data("link")},
        Breakage{"Encrypted",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{Data("secret.bin"), "x", false, false, /*encrypt=*/true}};
                 },
                 "encrypted", Data("secret.bin")},
        Breakage{"FileUnderAFile",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.extra_entries = {{Data("model.mlmodel/x"), "x"}};
                 },
                 "is a file", Data("model.mlmodel/x")},
        Breakage{"TooManyEntries", [](CoreMlZipSpec&, CheckOptions& o) { o.max_zip_entries = 3; },
                 "the archive has 6 entries; at most 3 are allowed", ""},
        Breakage{"TooLarge", [](CoreMlZipSpec&, CheckOptions& o) { o.max_zip_total_bytes = 1000; },
                 "unpacks to more than 1000 bytes", Data("weights/weight.bin")},
        Breakage{"RatioBomb",
                 [](CoreMlZipSpec& s, CheckOptions& o) {
                   s.extra_entries = {{Data("zeros.bin"), std::string(200000, '\0')}};
                   o.max_zip_ratio = 50;
                 },
                 "exceeds the ratio limit 50", Data("zeros.bin")},
        Breakage{"NoManifest", [](CoreMlZipSpec& s, CheckOptions&) { s.omit_manifest = true; },
                 "TinyLlama.mlpackage/Manifest.json is missing", ""},
        Breakage{"ManifestNotJson",
                 [](CoreMlZipSpec& s, CheckOptions&) { s.manifest_json = "{\"fileFormat"; },
                 "not valid JSON", "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"ManifestNotObject",
                 [](CoreMlZipSpec& s, CheckOptions&) { s.manifest_json = "[1, 2]"; },
                 "not a JSON object", "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"ManifestNewerVersion",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.manifest_json = Manifest("A", "com.apple.CoreML/model.mlmodel", "2.0.0");
                 },
                 "fileFormatVersion \"2.0.0\" is not 1.x.y", "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"ManifestWithoutItems",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.manifest_json = R"({"fileFormatVersion": "1.0.0", "itemInfoEntries": {}})";
                 },
                 "no \"itemInfoEntries\"", "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"RootNamesNoItem",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.manifest_json = Manifest("B", "com.apple.CoreML/model.mlmodel");
                 },
                 "rootModelIdentifier \"B\" names no item", "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"ItemPathEscapes",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.manifest_json = Manifest("A", "../../Manifest.json");
                 },
                 "path \"../../Manifest.json\": `.` or `..` component",
                 "TinyLlama.mlpackage/Manifest.json"},
        Breakage{"ItemMissing", [](CoreMlZipSpec& s, CheckOptions&) { s.omit_weights = true; },
                 "TinyLlama.mlpackage/Data/com.apple.CoreML/weights is missing", Data("weights")},
        Breakage{"RootModelMissing",
                 [](CoreMlZipSpec& s, CheckOptions&) { s.omit_model_file = true; },
                 "com.apple.CoreML/model.mlmodel is missing", Data("model.mlmodel")},
        Breakage{"RootModelEmpty",
                 [](CoreMlZipSpec& s, CheckOptions&) { s.empty_model_file = true; },
                 "the root model, is empty", Data("model.mlmodel")},
        Breakage{"WeightsEmpty",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.omit_weights = true;
                   s.extra_entries = {{Data("weights/weight.bin"), ""}};
                 },
                 "the model's weights, holds no data", Data("weights")},
        Breakage{"NoTokenizer", [](CoreMlZipSpec& s, CheckOptions&) { s.top_level_files.clear(); },
                 "no tokenizer file (tokenizer.json, tokenizer.model", ""},
        Breakage{"ConfigNotJson",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.config_model_type = "";
                   s.extra_entries = {{"config.json", "{model_type"}};
                 },
                 "not valid JSON", "config.json"},
        Breakage{"CompiledWithoutCoremldata",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.compiled = true;
                   s.omit_coremldata = true;
                 },
                 "TinyLlama.mlmodelc/coremldata.bin is missing or empty",
                 "TinyLlama.mlmodelc/coremldata.bin"},
        Breakage{"CompiledWithoutModel",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.compiled = true;
                   s.omit_model_file = true;
                 },
                 "TinyLlama.mlmodelc holds no model", ""},
        Breakage{"CompiledMetadataNotJson",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.compiled = true;
                   s.metadata_json = "[{";
                 },
                 "not valid JSON", "TinyLlama.mlmodelc/metadata.json"},
        Breakage{"CompiledMetadataNotArray",
                 [](CoreMlZipSpec& s, CheckOptions&) {
                   s.compiled = true;
                   s.metadata_json = "{}";
                 },
                 "not a JSON array", "TinyLlama.mlmodelc/metadata.json"}),
    [](const ::testing::TestParamInfo<Breakage>& param) { return param.param.name; });

TEST(CoreMlZipTest, NoPackageIsRefused) {
  EXPECT_THAT(Check(MakeZip({{"tokenizer.json", "{}"}})),
              RefusedWith(kZip, "no .mlpackage or .mlmodelc folder at the top"));
}

TEST(CoreMlZipTest, NotAZipIsRefused) {
  EXPECT_THAT(Check("definitely not a zip archive"),
              RefusedWith(kZip, "not a readable zip archive"));
}

TEST(CoreMlZipTest, EveryTruncationIsRefused) {
  const std::string bytes = MakeCoreMlZip(CoreMlZipSpec());
  for (size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_THAT(Check(bytes.substr(0, n)), RefusedWith(kZip, "CoreML zip: ")) << "cut at " << n;
  }
}

TEST(CoreMlZipTest, WeightsAreNotRead) {
  CoreMlZipSpec spec;
  spec.extra_entries = {{Data("weights/big.bin"), testing::RandomBytes(2 << 20), false, false,
                         false, /*store=*/true}};
  const std::string bytes = MakeCoreMlZip(spec);
  StringSource source(bytes);
  MD_ASSERT_OK(CheckCoreMlZip(source, {}));
  EXPECT_LT(source.bytes_requested(), 1 << 20) << "of " << bytes.size();
}

}  // namespace
}  // namespace modeldist::model_check
