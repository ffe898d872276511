#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/registry_client.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

constexpr int64_t kDefaultAuditLimit = 50;

}  // namespace

void AuditFlags(Flags* f) {
  f->Add("limit", "N", absl::StrCat(kDefaultAuditLimit), "show the newest N entries; 0 for all");
  f->AddBool("json", "print the entries as JSON");
}

absl::Status RunAudit(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "audit"));
  MD_ASSIGN_OR_RETURN(int64_t limit, IntFlag(flags, "limit", 0, std::numeric_limits<int32_t>::max(),
                                             kDefaultAuditLimit));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::ListAuditLogResponse all;
  v1::ListAuditLogRequest request;
  // The server lists newest first, so the first `limit` entries are the newest ones.
  do {
    int64_t wanted = limit == 0 ? kPageSize : limit - all.entries_size();
    request.set_page_size(static_cast<int32_t>(std::min<int64_t>(wanted, kPageSize)));
    MD_ASSIGN_OR_RETURN(v1::ListAuditLogResponse page, client->ListAuditLog(request));
    for (auto& e : *page.mutable_entries()) {
      if (limit != 0 && all.entries_size() >= limit) break;
      *all.add_entries() = std::move(e);
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || all.entries_size() < limit));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {{"TIME", "ACTOR", "ACTION", "RESOURCE", "DETAILS"}};
  for (const v1::AuditEntry& e : all.entries()) {
    rows.push_back({FormatTime(e.time()), OneLine(e.actor()), e.action(), OneLine(e.resource()),
                    OneLine(e.details())});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
