// File: command_families.h
//
// The modeldistctl commands by family, one .cc file per family: what the table of commands in
// commands.cc calls. Each command declares its flags (`...Flags`) and runs (`Run...`) with an
// Invocation (invocation.h); RunCtl turns the status it returns into the exit code (errors.h).
// What the families share is in command_util.h.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_
#define MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_

#include "absl/status/status.h"
#include "client/modeldistctl/invocation.h"
#include "common/flags.h"

namespace modeldist::ctl {

// publish_command.cc: `publish`, its flags, and the summary or JSON it prints. The flow itself
// (hash while uploading, resume, declare, publish, bind the tier) is publish.h.
void PublishFlags(Flags* f);
absl::Status RunPublish(Invocation& inv, const Flags& flags);

// catalog_commands.cc: the catalog of models, versions and tier bindings. `list` (models, a
// model's versions and artifacts, or the tier bindings), `show` (one version), `set-tier`
// (bind a tier to a version) and `yank` (withdraw a version).
void ListFlags(Flags* f);
absl::Status RunList(Invocation& inv, const Flags& flags);
void ShowFlags(Flags* f);
absl::Status RunShow(Invocation& inv, const Flags& flags);
void SetTierFlags(Flags* f);
absl::Status RunSetTier(Invocation& inv, const Flags& flags);
void YankFlags(Flags* f);
absl::Status RunYank(Invocation& inv, const Flags& flags);

// rollout_command.cc: `rollout start|advance|pause|resume|complete|abort|list` moves a tier to
// a new version for a growing share of its devices. Shares are typed in percent and sent as
// basis points (ParsePercent, command_util.h).
void RolloutFlags(Flags* f);
absl::Status RunRollout(Invocation& inv, const Flags& flags);

// pin_commands.cc: `pin`, `unpin` and `pins` hold devices of a tier on a version whatever the
// binding or a rollout says, release them, and list them. Device ids come from the arguments
// and --devices-file and go to the server in batches of at most what one call takes.
void PinFlags(Flags* f);
absl::Status RunPin(Invocation& inv, const Flags& flags);
void UnpinFlags(Flags* f);
absl::Status RunUnpin(Invocation& inv, const Flags& flags);
void PinsFlags(Flags* f);
absl::Status RunPins(Invocation& inv, const Flags& flags);

// audit_command.cc: `audit`, the server's audit log of catalog changes, newest first.
void AuditFlags(Flags* f);
absl::Status RunAudit(Invocation& inv, const Flags& flags);

// keys_command.cc: `keys generate|add|revoke|rotate|root`. A signing key made locally, the
// server's manifest-signing keys changed, and its trust root fetched, verified and saved
// (`keys root` needs no admin token: devices pin what it writes).
void KeysFlags(Flags* f);
absl::Status RunKeys(Invocation& inv, const Flags& flags);

// scrub_command.cc: `scrub` has the server re-read and check every blob on its disk, printing
// each damaged, missing or restored blob and a summary; DamageFound (exit 4) when a blob is
// damaged or missing.
void ScrubFlags(Flags* f);
absl::Status RunScrub(Invocation& inv, const Flags& flags);

// origins_command.cc: `origins list` shows the server's origins (object stores and CDNs with
// copies of blobs) without credentials; `origins check NAME` has the server test one now,
// printing each step; DamageFound (exit 4) when it fails.
void OriginsFlags(Flags* f);
absl::Status RunOrigins(Invocation& inv, const Flags& flags);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_
