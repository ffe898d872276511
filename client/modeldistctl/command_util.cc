#include "client/modeldistctl/command_util.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"

namespace modeldist::ctl {

// --- Output ----------------------------------------------------------------------------------

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  // Scripts should see `uploaded: false` and `state`, not infer them from absence.
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("JSON encoding failed: ", status.ToString()));
  }
  return json;
}

absl::Status PrintJson(Invocation& inv, const google::protobuf::Message& message) {
  MD_ASSIGN_OR_RETURN(std::string json, ToJson(message));
  inv.out() << json << "\n";
  return absl::OkStatus();
}

bool WantJson(const Invocation& inv, const Flags& flags) {
  return inv.global().json || flags.GetBool("json");
}

void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", static_cast<int>(widths[i]), row[i]));
      }
    }
    out << line << "\n";
  }
}

std::string PlatformArch(const v1::Artifact& a) {
  return absl::StrCat(PlatformName(a.platform()), "/", ArchName(a.arch()));
}

std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n' || c == '\r' || c == '\t') {
      c = ' ';
    } else if (byte < 0x20 || byte == 0x7f) {
      c = '?';  // ESC and other controls: a terminal would act on them
    }
  }
  return out;
}

// --- Arguments -------------------------------------------------------------------------------

absl::Status AsUsage(const absl::Status& status) {
  return status.ok() ? status : UsageError(status.message());
}

absl::StatusOr<VersionName> VersionFromArgs(const std::vector<std::string>& args,
                                            absl::string_view what) {
  if (args.size() == 1) {
    absl::StatusOr<VersionName> name = ParseVersionName(what, args[0]);
    if (!name.ok()) return AsUsage(name.status());
    return name;
  }
  if (args.size() == 2) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("model", args[0])));
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("version", args[1])));
    return VersionName{args[0], args[1]};
  }
  return UsageError(absl::StrCat("expected ", what, " as models/M/versions/V or as M V"));
}

absl::StatusOr<std::string> ModelFromArg(const std::string& arg) {
  absl::StatusOr<std::string> id = absl::StartsWith(arg, "models/")
                                       ? ParseModelName("model", arg)
                                       : absl::StatusOr<std::string>(arg);
  if (!id.ok()) return AsUsage(id.status());
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("model", *id)));
  return id;
}

absl::Status NoPositional(const Flags& flags, absl::string_view command) {
  if (flags.positional().empty()) return absl::OkStatus();
  return UsageError(absl::StrCat(command, ": unexpected argument \"", flags.positional()[0], "\""));
}

absl::Status OnlyFlags(const Flags& flags, absl::string_view command,
                       std::initializer_list<absl::string_view> allowed,
                       std::initializer_list<absl::string_view> all) {
  for (absl::string_view name : all) {
    if (!flags.IsSet(std::string(name))) continue;
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    return UsageError(absl::StrCat(command, " does not take --", name));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> IntFlag(const Flags& flags, const std::string& name, int64_t min,
                                int64_t max, int64_t fallback) {
  if (!flags.IsSet(name)) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(flags.Get(name), &value) || value < min || value > max) {
    return UsageError(absl::StrCat("--", name, ": \"", flags.Get(name),
                                   "\" is not a whole number from ", min, " to ", max));
  }
  return value;
}

void AddTierFlags(Flags* f, const std::string& default_channel) {
  f->Add("tier", "T", "", "the tier, e.g. llama8b");
  f->Add("channel", "C", default_channel, "the channel");
}

absl::StatusOr<TierChannel> TierChannelFromFlags(const Flags& flags) {
  if (flags.Get("tier").empty()) return UsageError("--tier is required");
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("--tier", flags.Get("tier"))));
  if (!flags.Get("channel").empty()) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", flags.Get("channel"))));
  }
  return TierChannel{flags.Get("tier"), flags.Get("channel")};
}

absl::StatusOr<VersionName> VersionFromFlags(const Flags& flags) {
  if (flags.Get("version").empty()) return UsageError("--version is required");
  std::vector<std::string> version_args = {flags.Get("version")};
  if (flags.IsSet("model")) version_args.insert(version_args.begin(), flags.Get("model"));
  return VersionFromArgs(version_args, "--version");
}

absl::StatusOr<int32_t> ParsePercent(absl::string_view flag, absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return UsageError(absl::StrCat("--", flag, ": \"", text, "\" ", why));
  };
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (absl::EndsWith(t, "%")) t.remove_suffix(1);
  const size_t dot = t.find('.');
  absl::string_view whole = t.substr(0, dot);
  absl::string_view fraction = dot == absl::string_view::npos ? "" : t.substr(dot + 1);
  auto all_digits = [](absl::string_view s) {
    return s.find_first_not_of("0123456789") == absl::string_view::npos;
  };
  if ((whole.empty() && fraction.empty()) || !all_digits(whole) || !all_digits(fraction)) {
    return bad("is not a percent: expected a number from 0 to 100, e.g. 0.5, 10 or 50");
  }
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  const bool fraction_is_zero = fraction.find_first_not_of('0') == absl::string_view::npos;
  int whole_value = 0;
  if (whole.size() > 3 || (!whole.empty() && !absl::SimpleAtoi(whole, &whole_value)) ||
      whole_value > 100 || (whole_value == 100 && !fraction_is_zero)) {
    return bad("is out of range: a share of devices is 0 to 100 (percent)");
  }
  // Two decimals are basis points; the third rounds them, half up.
  auto digit = [&fraction](size_t i) { return i < fraction.size() ? fraction[i] - '0' : 0; };
  int32_t basis_points = whole_value * 100 + digit(0) * 10 + digit(1);
  if (digit(2) >= 5) ++basis_points;
  return basis_points;
}

std::string FormatBasisPoints(int32_t basis_points) {
  const int32_t whole = basis_points / 100;
  const int32_t hundredths = basis_points % 100;
  if (hundredths == 0) return absl::StrCat(whole, "%");
  if (hundredths % 10 == 0) return absl::StrCat(whole, ".", hundredths / 10, "%");
  return absl::StrFormat("%d.%02d%%", whole, hundredths);
}

}  // namespace modeldist::ctl
