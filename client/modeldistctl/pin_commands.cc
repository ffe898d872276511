#include <algorithm>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/file_util.h"
#include "common/limits.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// The device ids of a pin/unpin command: the arguments, then the lines of --devices-file, in
// order, each once. A usage error for none or for an id the server would refuse (so that no
// batch is sent when a later one is bound to fail); a local error for an unreadable file.
absl::StatusOr<std::vector<std::string>> DeviceIds(const Flags& flags, absl::string_view command) {
  std::vector<std::string> candidates = flags.positional();
  if (const std::string path = flags.Get("devices-file"); !path.empty()) {
    absl::StatusOr<std::string> contents = ReadFileToString(path);
    if (!contents.ok()) {
      return LocalError(absl::Status(
          contents.status().code(), absl::StrCat("--devices-file: ", contents.status().message())));
    }
    for (absl::string_view line : absl::StrSplit(*contents, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line.empty() || absl::StartsWith(line, "#")) continue;
      candidates.emplace_back(line);
    }
  }
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (std::string& id : candidates) {
    if (id.empty()) return UsageError(absl::StrCat(command, ": a device id is empty"));
    if (id.size() > kMaxDeviceIdBytes) {
      return UsageError(absl::StrCat(command, ": device id \"", id.substr(0, 40), "...\" is ",
                                     id.size(), " bytes; at most ", kMaxDeviceIdBytes));
    }
    if (seen.insert(id).second) ids.push_back(std::move(id));
  }
  if (ids.empty()) {
    return UsageError(
        absl::StrCat(command, " needs device ids: as arguments or with --devices-file FILE"));
  }
  return ids;
}

// What a batched pin/unpin did, summed over its calls.
struct PinTotals {
  int64_t devices = 0;  // Ids sent in calls that succeeded.
  int64_t changed = 0;
  int64_t sequence = 0;  // Of the last call that succeeded.
  int calls = 0;
};

// Sends `ids` in calls of at most kMaxDeviceIdsPerCall (common/limits.h) through `call`. On a
// failure, says on stderr how far it got, since the earlier batches stay applied.
absl::Status SendInBatches(
    Invocation& inv, absl::string_view verb, const std::vector<std::string>& ids,
    const std::function<absl::StatusOr<v1::PinDevicesResponse>(absl::Span<const std::string>)>&
        call,
    PinTotals* totals) {
  const size_t per_call = kMaxDeviceIdsPerCall;
  for (size_t begin = 0; begin < ids.size(); begin += per_call) {
    const size_t end = std::min(ids.size(), begin + per_call);
    absl::StatusOr<v1::PinDevicesResponse> response =
        call(absl::MakeConstSpan(ids).subspan(begin, end - begin));
    if (!response.ok()) {
      if (totals->calls > 0) {
        inv.err() << verb << " " << totals->devices << " of " << ids.size()
                  << " devices before this error; the rest were not sent (running the same "
                     "command again is safe)\n";
      }
      return response.status();
    }
    totals->devices += static_cast<int64_t>(end - begin);
    totals->changed += response->changed();
    totals->sequence = response->sequence();
    ++totals->calls;
  }
  return absl::OkStatus();
}

absl::Status PrintPinTotals(Invocation& inv, const Flags& flags, absl::string_view verb,
                            const TierChannel& target, const std::string& version,
                            const PinTotals& totals) {
  if (WantJson(inv, flags)) {
    inv.out() << absl::StrFormat(
        "{\"tier\":\"%s\",\"channel\":\"%s\",%s\"devices\":%d,\"changed\":%d,\"sequence\":%d,"
        "\"calls\":%d}\n",
        target.tier, target.channel,
        version.empty() ? "" : absl::StrCat("\"version\":\"", version, "\","), totals.devices,
        totals.changed, totals.sequence, totals.calls);
    return absl::OkStatus();
  }
  inv.out() << verb << " " << totals.devices << (totals.devices == 1 ? " device" : " devices")
            << " of " << target.ToString() << (version.empty() ? "" : " to ") << version << " ("
            << totals.changed << " changed) sequence " << totals.sequence << "\n";
  return absl::OkStatus();
}

}  // namespace

void PinFlags(Flags* f) {
  AddTierFlags(f);
  f->Add("version", "NAME", "", "models/M/versions/V (or the version id, with --model)");
  f->Add("model", "M", "", "the model id, when --version is a version id");
  f->Add("devices-file", "FILE", "",
         "more device ids, one per line (blank lines and lines starting with # are skipped)");
  f->AddBool("json", "print the result as JSON");
}

void UnpinFlags(Flags* f) {
  AddTierFlags(f);
  f->Add("devices-file", "FILE", "",
         "more device ids, one per line (blank lines and lines starting with # are skipped)");
  f->AddBool("json", "print the result as JSON");
}

absl::Status RunPin(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(TierChannel target, TierChannelFromFlags(flags));
  MD_ASSIGN_OR_RETURN(VersionName version, VersionFromFlags(flags));
  MD_ASSIGN_OR_RETURN(std::vector<std::string> ids, DeviceIds(flags, "pin"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  PinTotals totals;
  MD_RETURN_IF_ERROR(SendInBatches(
      inv, "pinned", ids,
      [&](absl::Span<const std::string> batch) {
        v1::PinDevicesRequest request;
        request.set_tier(target.tier);
        request.set_channel(target.channel);
        request.set_version(version.ToString());
        for (const std::string& id : batch) request.add_device_ids(id);
        return client->PinDevices(request);
      },
      &totals));
  return PrintPinTotals(inv, flags, "pinned", target, version.ToString(), totals);
}

absl::Status RunUnpin(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(TierChannel target, TierChannelFromFlags(flags));
  MD_ASSIGN_OR_RETURN(std::vector<std::string> ids, DeviceIds(flags, "unpin"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  PinTotals totals;
  MD_RETURN_IF_ERROR(SendInBatches(
      inv, "unpinned", ids,
      [&](absl::Span<const std::string> batch) {
        v1::UnpinDevicesRequest request;
        request.set_tier(target.tier);
        request.set_channel(target.channel);
        for (const std::string& id : batch) request.add_device_ids(id);
        return client->UnpinDevices(request);
      },
      &totals));
  return PrintPinTotals(inv, flags, "unpinned", target, "", totals);
}

void PinsFlags(Flags* f) { f->AddBool("json", "print the pins as JSON"); }

absl::Status RunPins(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "pins"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::ListPinsResponse all,
                      ListAll(v1::ListPinsRequest(),
                              [&](const v1::ListPinsRequest& r) { return client->ListPins(r); }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {
      {"TIER", "CHANNEL", "DEVICE", "CREATED", "VERSION"}};
  for (const v1::DevicePin& p : all.pins()) {
    rows.push_back(
        {p.tier(), p.channel(), p.device_id(), FormatTime(p.create_time()), p.version()});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
