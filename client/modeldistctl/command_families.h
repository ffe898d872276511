// File: command_families.h
//
// The modeldistctl commands by family, one .cc file per family: what the table of commands in
// commands.cc calls. Each command declares its flags (`...Flags`) and runs (`Run...`) with an
// Invocation (invocation.h); RunCtl turns the status it returns into the exit code (errors.h).
// What the families share is in command_util.h.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_
#define MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/modeldistctl/invocation.h"
#include "common/flags.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

// publish_command.cc: `publish`, its flags, and the summary or JSON it prints. The flow itself
// (hash while uploading, resume, declare, publish, bind the tier) is publish.h.
void PublishFlags(Flags* f);
absl::Status RunPublish(Invocation& inv, const Flags& flags);

// inspect_command.cc: `inspect FILE...` runs the server's publish-time model checks
// (common/model_check/model_check.h) on local files and prints what they say about themselves;
// DamageFound (exit 4) when one would be refused. `publish --check` runs the same through
// CheckModelFiles: a file and its format (FORMAT_UNSPECIFIED: from its first bytes), the
// CoreML zip's required file names (empty: a known tokenizer file), and JSON or text output.
struct ModelFile {
  std::string path;
  v1::Format format = v1::FORMAT_UNSPECIFIED;
};
absl::Status CheckModelFiles(Invocation& inv, const std::vector<ModelFile>& files,
                             const std::vector<std::string>& required_files, bool json);
// The --require-file list of `inspect` and `publish`.
std::vector<std::string> RequiredFiles(const Flags& flags);
void InspectFlags(Flags* f);
absl::Status RunInspect(Invocation& inv, const Flags& flags);

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

// fleet_command.cc: `fleet`, what devices reported (RegistryService.GetFleetSummary): versions
// in the field per tier, platform and arch, event counts, failure reasons, recent failures.
void FleetFlags(Flags* f);
absl::Status RunFleet(Invocation& inv, const Flags& flags);

// audit_command.cc: `audit`, the server's audit log of catalog changes, newest first.
void AuditFlags(Flags* f);
absl::Status RunAudit(Invocation& inv, const Flags& flags);

// keys_command.cc: `keys generate|add|revoke|rotate|root`. A signing key made locally, the
// server's manifest-signing keys changed, and its trust root fetched, verified and saved
// (`keys root` needs no admin token: devices pin what it writes).
void KeysFlags(Flags* f);
absl::Status RunKeys(Invocation& inv, const Flags& flags);

// creds_command.cc: `creds create NAME --scope S...|list|revoke NAME`, the server's named
// admin credentials. create prints the new token alone on stdout (shown only then).
void CredsFlags(Flags* f);
absl::Status RunCreds(Invocation& inv, const Flags& flags);

// root_command.cc: `root keygen|fetch|init|add-key|revoke|sign|verify|show|upload`, the
// offline ceremony that changes the trust root with root keys the server never holds
// (docs/trust.md). Only fetch and upload talk to the server. Root files: trust_files.h.
void RootFlags(Flags* f);
absl::Status RunRoot(Invocation& inv, const Flags& flags);

// release_command.cc: `release sign|show|attach`, release statements signed by the offline
// release keys where the files are, attached to a published version (publish --release sends
// one with the version).
void ReleaseFlags(Flags* f);
absl::Status RunRelease(Invocation& inv, const Flags& flags);

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

// import_env_command.cc: `import-env` reads the seed's LOCAL_LLM_MACOS_* variables (from the
// environment or a .env file), fetches and checks each object, then publishes them as `publish`
// does (env_import.h).
void ImportEnvFlags(Flags* f);
absl::Status RunImportEnv(Invocation& inv, const Flags& flags);

// status_command.cc: `status`, the server's state on one screen: tiers and rollouts in flight,
// replication per origin, the trust root's keys, blob store usage.
void StatusFlags(Flags* f);
absl::Status RunStatus(Invocation& inv, const Flags& flags);

// bundle_command.cc: `bundle export` writes one file with the trust roots, the signed manifest
// and (unless --no-blobs) the model of a tier for a platform/arch, for
// `modeldist-agent install-bundle` / `adopt` (common/bundle_format.h). Needs no admin token.
void BundleFlags(Flags* f);
absl::Status RunBundle(Invocation& inv, const Flags& flags);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_COMMAND_FAMILIES_H_
