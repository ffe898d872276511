// File: flags.h
//
// A small command-line parser shared by the three binaries, so that they agree on syntax:
// `--name value`, `--name=value`, boolean `--name`, `--` ends flags, everything else is
// positional. Unknown flags are errors that name the flag and point at --help. ParseFile reads
// the same flags from a config file (`name = value` lines) under the command line's.
#ifndef MODELDIST_COMMON_FLAGS_H_
#define MODELDIST_COMMON_FLAGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldist {

class Flags {
 public:
  // Declares a flag taking a value. `value_name` is shown in help, e.g. "HOST:PORT".
  void Add(const std::string& name, const std::string& value_name, const std::string& default_value,
           const std::string& help);
  // Declares a boolean flag (present = true).
  void AddBool(const std::string& name, const std::string& help);

  // Parses argv[first..argc). INVALID_ARGUMENT for an unknown flag or a missing value.
  absl::Status Parse(int argc, char** argv, int first = 1);

  // Reads flags from a config file: one `name = value` or `name value` per line (the value is
  // the rest of the line, trimmed), `#` starting a comment line, blank lines ignored; a boolean
  // flag takes `true` or `false`. Flags already given (on the command line, parsed first) keep
  // their value, so the command line overrides the file. INVALID_ARGUMENT (reason
  // INVALID_CONFIG_FILE) naming the file and line for an unknown name, a name given twice, a
  // missing value, a boolean that is not true/false, or a name in `refused` (e.g. "config"
  // itself); FAILED_PRECONDITION when the file cannot be read.
  absl::Status ParseFile(const std::string& path, const std::vector<std::string>& refused = {});

  // Like Parse, but stops before the first positional argument (or just after `--`) and
  // returns its index, or argc when there is none. A program with subcommands parses its
  // global flags with this and hands argv from the returned index to a second Flags object,
  // so that the subcommand's flags are not mistaken for unknown global ones.
  absl::StatusOr<int> ParsePrefix(int argc, char** argv, int first = 1);

  // The value given, or the default.
  std::string Get(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  // The value as an integer; INVALID_ARGUMENT naming the flag when it is not one. Accepts
  // K/M/G/KiB/MiB/GiB suffixes (binary).
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  // Every value a flag taking a value was given on the command line, in order (a flag that
  // may be repeated, e.g. `--scope read --scope publish`); Get returns the last.
  std::vector<std::string> GetAll(const std::string& name) const;
  // Whether the flag was given on the command line.
  bool IsSet(const std::string& name) const;

  const std::vector<std::string>& positional() const { return positional_; }

  // One line per flag: "  --name VALUE   help (default: x)".
  std::string Help() const;

 private:
  struct Spec {
    std::string value_name;
    std::string default_value;
    std::string help;
    bool is_bool = false;
  };
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> every_value_;
  std::vector<std::string> positional_;
};

// Parses "123", "4MiB", "1G" ... into bytes/units; INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> ParseSize(const std::string& text);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_FLAGS_H_
