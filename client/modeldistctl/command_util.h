// File: command_util.h
//
// What the modeldistctl commands share: how they print (tables, JSON, times) and how they
// read their arguments (version and model names, tier/channel flags, whole numbers,
// percents). Argument errors are usage errors (errors.h: exit code 1), so that a command
// fails on its arguments before it calls the server.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_COMMAND_UTIL_H_
#define MODELDIST_CLIENT_MODELDISTCTL_COMMAND_UTIL_H_

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/invocation.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/status.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

// Asked of the server per List* call; ListAll follows next_page_token to the end anyway.
inline constexpr int kPageSize = 500;

// Every item of a List* rpc in one response: `list(request)` page after page of kPageSize,
// following next_page_token to the end. `list` returns absl::StatusOr of a List*Response (the
// items in a repeated field, and next_page_token, which the result leaves empty).
template <typename Request, typename List>
auto ListAll(Request request, const List& list) -> decltype(list(request)) {
  typename decltype(list(request))::value_type all;
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(auto page, list(request));
    request.set_page_token(page.next_page_token());
    page.clear_next_page_token();
    all.MergeFrom(page);
  } while (!request.page_token().empty());
  return all;
}

// --- Output ----------------------------------------------------------------------------------

// "2026-01-01T00:00:00Z" (UTC, to the second); "-" for an unset time.
std::string FormatTime(const google::protobuf::Timestamp& t);

// `message` as one line of JSON, with fields at their default values printed too.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Writes ToJson(message) and a newline to the invocation's stdout.
absl::Status PrintJson(Invocation& inv, const google::protobuf::Message& message);

// Whether to print JSON: the global --json or the command's own.
bool WantJson(const Invocation& inv, const Flags& flags);

// Left-aligned columns; the last column is not padded.
void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows);

// "macos/arm64".
std::string PlatformArch(const v1::Artifact& a);

// Details are free text from the server (some of it sent by devices without a token, e.g. a
// fleet report's app version): a newline or tab would break the table's rows, and an escape
// sequence would reach the admin's terminal. Whitespace controls become spaces, other control
// bytes '?'.
std::string OneLine(absl::string_view text);

// --- Arguments -------------------------------------------------------------------------------

// `status` as a usage error; OK stays OK.
absl::Status AsUsage(const absl::Status& status);

// `models/M/versions/V`, or the two arguments `M V`.
absl::StatusOr<VersionName> VersionFromArgs(const std::vector<std::string>& args,
                                            absl::string_view what);

// `models/M` or `M`.
absl::StatusOr<std::string> ModelFromArg(const std::string& arg);

// A usage error naming `command` when it was given a positional argument.
absl::Status NoPositional(const Flags& flags, absl::string_view command);

// Commands with subcommands declare the union of their flags; a flag the chosen subcommand
// does not read is refused rather than ignored, since the user meant something by it.
absl::Status OnlyFlags(const Flags& flags, absl::string_view command,
                       std::initializer_list<absl::string_view> allowed,
                       std::initializer_list<absl::string_view> all);

// A whole-number flag from `min` to `max`, or `fallback` when the flag was not given.
absl::StatusOr<int64_t> IntFlag(const Flags& flags, const std::string& name, int64_t min,
                                int64_t max, int64_t fallback);

// The tier and channel a rollout or pin command acts on.
struct TierChannel {
  std::string tier;
  std::string channel;

  std::string ToString() const { return absl::StrCat(tier, "/", channel); }
};

// Declares --tier and --channel (defaulting to `default_channel`).
void AddTierFlags(Flags* f, const std::string& default_channel = std::string(kDefaultChannel));

// --tier is required; --channel as given (its default is the command's).
absl::StatusOr<TierChannel> TierChannelFromFlags(const Flags& flags);

// --version as models/M/versions/V, or as the version id with --model M.
absl::StatusOr<VersionName> VersionFromFlags(const Flags& flags);

// A share of devices given in percent ("0.5", "10", "50%", "100") as basis points (1/100 %),
// rounded half up to the nearest basis point: "0.5" is 50, "0.125" is 13. A usage error naming
// `flag` for anything but a plain decimal number from 0 to 100. Parsed from the digits, not
// through a double, so that e.g. 0.285 gives 29 and not 28.
absl::StatusOr<int32_t> ParsePercent(absl::string_view flag, absl::string_view text);

// Basis points as the percent a person would type back: 50 is "0.5%", 1000 "10%", 1234 "12.34%".
std::string FormatBasisPoints(int32_t basis_points);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_COMMAND_UTIL_H_
