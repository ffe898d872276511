#include "common/flags.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist {

void Flags::Add(const std::string& name, const std::string& value_name,
                const std::string& default_value, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{value_name, default_value, help, false};
}

void Flags::AddBool(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{"", "", help, true};
}

absl::Status Flags::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) positional_.push_back(argv[i]);
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = specs_.find(name);
    if (it == specs_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (it->second.is_bool) {
      values_[name] = has_value ? value : "true";
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value (", it->second.value_name, ")"));
      }
      value = argv[++i];
    }
    values_[name] = value;
    every_value_[name].push_back(value);
  }
  return absl::OkStatus();
}

std::vector<std::string> Flags::GetAll(const std::string& name) const {
  auto it = every_value_.find(name);
  return it == every_value_.end() ? std::vector<std::string>() : it->second;
}

absl::Status Flags::ParseFile(const std::string& path, const std::vector<std::string>& refused) {
  auto contents = ReadFileToString(path);
  if (!contents.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "INVALID_CONFIG_FILE",
                     absl::StrCat("cannot read config file: ", contents.status().message()),
                     {{"file", path}});
  }
  std::set<std::string> in_file;
  int line_number = 0;
  for (absl::string_view raw : absl::StrSplit(*contents, '\n')) {
    ++line_number;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    auto error = [&](absl::string_view what) {
      return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_CONFIG_FILE",
                       absl::StrCat(path, ":", line_number, ": ", what),
                       {{"file", path}, {"line", absl::StrCat(line_number)}});
    };
    const size_t end = line.find_first_of(" \t=");
    const std::string name(line.substr(0, end));
    absl::string_view value =
        end == absl::string_view::npos ? absl::string_view() : line.substr(end);
    value = absl::StripLeadingAsciiWhitespace(value);
    if (absl::ConsumePrefix(&value, "=")) value = absl::StripLeadingAsciiWhitespace(value);
    auto spec = specs_.find(name);
    if (spec == specs_.end() || std::find(refused.begin(), refused.end(), name) != refused.end()) {
      return error(absl::StrCat("unknown option \"", name,
                                "\" (the names are those of --help, without the dashes)"));
    }
    if (!in_file.insert(name).second) {
      return error(absl::StrCat("\"", name, "\" is set twice in this file"));
    }
    if (spec->second.is_bool && value != "true" && value != "false") {
      return error(absl::StrCat("\"", name, "\" takes true or false, not \"", value, "\""));
    }
    if (!spec->second.is_bool && value.empty()) {
      return error(absl::StrCat("\"", name, "\" needs a value (", spec->second.value_name, ")"));
    }
    // The command line, parsed before the file, wins.
    if (values_.count(name) == 0) values_[name] = std::string(value);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Flags::ParsePrefix(int argc, char** argv, int first) {
  int end = first;
  int next = first;  // Where the caller continues: past `--` if that ended the flags.
  while (end < argc) {
    std::string arg = argv[end];
    if (arg == "--") {
      next = end + 1;
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) break;
    std::string name = arg.substr(2);
    auto it = specs_.find(name);
    // `--name value` spans two arguments; an unknown flag is left for Parse to report.
    end +=
        (name.find('=') == std::string::npos && it != specs_.end() && !it->second.is_bool) ? 2 : 1;
  }
  if (end > argc) end = argc;  // A trailing flag without its value: Parse reports it.
  if (next < end) next = end;
  if (absl::Status s = Parse(end, argv, first); !s.ok()) return s;
  return next;
}

std::string Flags::Get(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  auto spec = specs_.find(name);
  return spec == specs_.end() ? "" : spec->second.default_value;
}

bool Flags::GetBool(const std::string& name) const {
  std::string v = Get(name);
  return v == "true" || v == "1" || v == "yes";
}

bool Flags::IsSet(const std::string& name) const { return values_.count(name) > 0; }

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name) const {
  auto v = ParseSize(Get(name));
  if (!v.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": \"", Get(name), "\" is not a number"));
  }
  return v;
}

std::string Flags::Help() const {
  std::string out;
  for (const std::string& name : order_) {
    const Spec& s = specs_.at(name);
    std::string left = absl::StrCat("  --", name, s.is_bool ? "" : " ", s.value_name);
    std::string right = s.help;
    if (!s.is_bool && !s.default_value.empty()) {
      absl::StrAppend(&right, " (default: ", s.default_value, ")");
    }
    absl::StrAppend(&out, absl::StrFormat("%-30s %s\n", left, right));
  }
  return out;
}

absl::StatusOr<int64_t> ParseSize(const std::string& text) {
  std::string t = absl::AsciiStrToLower(text);
  int64_t mult = 1;
  struct Suffix {
    const char* s;
    int64_t m;
  };
  static constexpr Suffix kSuffixes[] = {{"kib", 1LL << 10}, {"mib", 1LL << 20}, {"gib", 1LL << 30},
                                         {"k", 1LL << 10},   {"m", 1LL << 20},   {"g", 1LL << 30}};
  for (const Suffix& s : kSuffixes) {
    size_t n = strlen(s.s);
    if (t.size() > n && t.compare(t.size() - n, n, s.s) == 0) {
      t.resize(t.size() - n);
      mult = s.m;
      break;
    }
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(t, &v)) return absl::InvalidArgumentError("not a number");
  // Signed overflow is undefined behaviour, so a size like "9999999999G" must be refused.
  if (v > std::numeric_limits<int64_t>::max() / mult ||
      v < std::numeric_limits<int64_t>::min() / mult) {
    return absl::InvalidArgumentError("number too large");
  }
  return v * mult;
}

}  // namespace modeldist
