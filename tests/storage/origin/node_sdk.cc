#include "tests/storage/origin/node_sdk.h"

#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

constexpr char kNode[] = "/usr/bin/node";

std::string NodeDir() { return absl::StrCat(MODELDIST_SOURCE_DIR, "/tests/node"); }

}  // namespace

bool NodeSdkInstalled(const std::string& package) {
  return std::filesystem::exists(kNode) &&
         std::filesystem::exists(absl::StrCat(NodeDir(), "/node_modules/", package));
}

std::string RunNodeScript(const std::string& script, const std::string& json_argument) {
  ScratchDir dir;
  ChildProcess node;
  SpawnOptions options;
  options.stdout_path = dir.Join("out");
  options.stderr_path = dir.Join("err");
  EXPECT_TRUE(node.Start({kNode, absl::StrCat(NodeDir(), "/", script), json_argument}, options));
  const std::optional<int> exit = node.Wait(std::chrono::seconds(60));
  const bool ok = exit.has_value() && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0;
  EXPECT_TRUE(ok) << script << ": " << ReadFileToString(dir.Join("err")).value_or("");
  if (!ok) return "";
  return std::string(absl::StripAsciiWhitespace(ReadFileToString(dir.Join("out")).value_or("")));
}

}  // namespace modeldist::testing
