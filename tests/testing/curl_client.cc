#include "tests/testing/curl_client.h"

#include <sys/wait.h>

#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

// The header lines of the last response in `dump` (curl -D: every response, 1xx included).
std::vector<std::string> LastBlock(const std::string& dump) {
  std::vector<std::string> block;
  for (absl::string_view line : absl::StrSplit(dump, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (absl::StartsWith(line, "HTTP/")) block.clear();
    if (!line.empty()) block.emplace_back(line);
  }
  return block;
}

}  // namespace

std::optional<std::string> CurlResult::Find(const std::string& name) const {
  for (const std::string& line : LastBlock(headers)) {
    const size_t colon = line.find(':');
    if (colon != std::string::npos &&
        absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return std::nullopt;
}

CurlResult Curl(const std::string& url, const std::vector<std::string>& args) {
  ScratchDir dir;
  std::vector<std::string> argv = {
      "/usr/bin/curl",     "-sS", "--max-time",     "60", "-D",
      dir.Join("headers"), "-o",  dir.Join("body"), "-w", "%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  CurlResult result;
  ChildProcess curl;
  SpawnOptions options;
  options.stdout_path = dir.Join("code");
  options.stderr_path = dir.Join("stderr");
  if (!curl.Start(argv, options)) return result;
  const std::optional<int> status = curl.Wait(std::chrono::seconds(90));
  if (status.has_value() && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
  int code = 0;
  if (absl::SimpleAtoi(ReadFileToString(dir.Join("code")).value_or(""), &code)) {
    result.status = code;
  }
  result.headers = ReadFileToString(dir.Join("headers")).value_or("");
  result.body = ReadFileToString(dir.Join("body")).value_or("");
  result.stderr_text = ReadFileToString(dir.Join("stderr")).value_or("");
  return result;
}

}  // namespace modeldist::testing
