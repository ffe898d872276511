// libFuzzer target for the command line and config file parser (common/flags.h).
//
// Input: 2-byte length, the command line (arguments separated by NUL bytes), the config file.
// The flags are those a server declares: values, a size, a boolean and `config` (refused in
// the file). Parse, then ParseFile on the file's bytes (written to a scratch file on tmpfs),
// then the getters; ParsePrefix on the same command line with fresh flags.
// Properties: no crash or sanitizer finding (UBSan sees an overflow in ParseSize); errors are
// INVALID_ARGUMENT, or the file's INVALID_CONFIG_FILE naming a line; a flag given on the
// command line keeps its value after ParseFile; GetInt agrees with ParseSize; ParsePrefix
// stops at or before argc.
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

Flags ServerFlags() {
  Flags flags;
  flags.Add("port", "PORT", "0", "gRPC port");
  flags.Add("data-dir", "DIR", "", "where the data lives");
  flags.Add("max-upload", "BYTES", "4GiB", "largest upload");
  flags.Add("config", "FILE", "", "config file");
  flags.AddBool("verbose", "log more");
  return flags;
}

const std::string& ConfigPath() {
  static const std::string* path = [] {
    const std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    return new std::string(base + "/modeldist-fuzz-flags-" + std::to_string(getpid()) + ".conf");
  }();
  return *path;
}

void CheckFlags(absl::string_view command_line, absl::string_view file) {
  std::vector<std::string> args = {"modeldist-server"};
  if (!command_line.empty()) {
    for (absl::string_view arg : absl::StrSplit(command_line, '\0')) args.emplace_back(arg);
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  const int argc = static_cast<int>(argv.size());

  Flags prefix = ServerFlags();
  const auto end = prefix.ParsePrefix(argc, argv.data());
  Require(end.ok() || end.status().code() == absl::StatusCode::kInvalidArgument, "ParsePrefix");
  if (end.ok()) Require(*end >= 1 && *end <= argc, "ParsePrefix index out of range");

  Flags flags = ServerFlags();
  const absl::Status parsed = flags.Parse(argc, argv.data());
  Require(parsed.ok() || parsed.code() == absl::StatusCode::kInvalidArgument, "Parse error");
  if (!parsed.ok()) return;
  const bool port_set = flags.IsSet("port");
  const std::string port = flags.Get("port");

  Require(WriteFileAtomically(ConfigPath(), file, 0600).ok(), "write config");
  const absl::Status from_file = flags.ParseFile(ConfigPath(), {"config"});
  Require(from_file.ok() || (from_file.code() == absl::StatusCode::kInvalidArgument &&
                             ErrorReason(from_file) == "INVALID_CONFIG_FILE" &&
                             !ErrorMetadataValue(from_file, "line").empty()),
          "ParseFile error");
  if (port_set) Require(flags.Get("port") == port, "the file overrode the command line");

  const auto size = flags.GetInt("max-upload");
  const auto direct = ParseSize(flags.Get("max-upload"));
  Require(size.ok() == direct.ok() && (!size.ok() || *size == *direct), "GetInt != ParseSize");
  flags.GetBool("verbose");
  flags.Get("data-dir");
}

void WriteSeeds(const std::string& dir) {
  using std::string_literals::operator""s;
  fuzz::WriteSeed(dir, "command-line",
                  fuzz::Join("--port\x00"
                             "8443\x00--verbose\x00--max-upload=2GiB\x00serve"s,
                             ""));
  fuzz::WriteSeed(dir, "file",
                  fuzz::Join("--port=1",
                             "# comment\nport = 9\ndata-dir /srv/md\n"
                             "verbose = true\nmax-upload 512M\n"));
  fuzz::WriteSeed(dir, "refused-in-file", fuzz::Join("", "config = /etc/other.conf\n"));
  fuzz::WriteSeed(dir, "double-dash", fuzz::Join("--\x00--port"s, "max-upload = 99999999999G\n"));
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [command_line, file] =
      modeldist::fuzz::Split(absl::string_view(reinterpret_cast<const char*>(data), size));
  modeldist::CheckFlags(command_line, file);
  return 0;
}
