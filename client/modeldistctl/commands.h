// File: commands.h
//
// The modeldistctl command line: global flags, then one command with its own flags.
//
//   modeldistctl [--server HOST:PORT] [--token-file FILE] [--tls-ca FILE] [--json] COMMAND ...
//
// RunCtl is the whole program minus the process: it writes to the given streams and returns
// the exit code (errors.h), so tests can drive it in-process.
//
// commands.cc holds the table of commands and their help; the commands themselves are in a
// file per family (command_families.h).
#ifndef MODELDIST_CLIENT_MODELDISTCTL_COMMANDS_H_
#define MODELDIST_CLIENT_MODELDISTCTL_COMMANDS_H_

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldist::ctl {

inline constexpr char kDefaultServer[] = "127.0.0.1:8470";

// Where a run reads its environment and writes its output.
struct Console {
  std::ostream* out = nullptr;  // Results: tables, JSON, summary lines.
  std::ostream* err = nullptr;  // Errors, notes, progress.
  bool err_is_tty = false;      // Progress lines are drawn only on a terminal.
  std::function<std::optional<std::string>(const std::string&)> getenv;
};

// A Console on std::cout/std::cerr and the process environment.
Console ProcessConsole();

struct GlobalOptions {
  std::string server;      // --server, else $MODELDIST_SERVER, else kDefaultServer.
  std::string token_file;  // --token-file; empty means $MODELDIST_ADMIN_TOKEN.
  std::string tls_ca;      // --tls-ca; empty means plaintext.
  bool json = false;
  bool help = false;
};

struct CommandLine {
  GlobalOptions global;
  // The command and everything after it; empty when no command was given.
  std::vector<std::string> command_args;
};

// Splits `args` (args[0] is the program name) into global flags and the command. A usage
// error for an unknown global flag or a missing value, and for --actor anywhere (removed: the
// audit log records the authenticated credential's name).
absl::StatusOr<CommandLine> ParseCommandLine(
    const std::vector<std::string>& args,
    const std::function<std::optional<std::string>(const std::string&)>& getenv);

// Runs modeldistctl; returns the process exit code (errors.h: 0 ok, 1 usage, 2 server/RPC,
// 3 local, 4 damage found by scrub).
int RunCtl(const std::vector<std::string>& args, const Console& console);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_COMMANDS_H_
