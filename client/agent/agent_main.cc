// modeldist-agent: keeps a tier's model on this device verified and current.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/agent/agent.h"
#include "client/agent/bundle_install.h"
#include "client/agent/cli_flags.h"
#include "client/agent/reporting.h"
#include "client/agent/trial_cli.h"
#include "client/agent/trial_state.h"
#include "common/digest.h"
#include "common/enum_names.h"
#include "common/flags.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

constexpr char kUsage[] =
    "modeldist-agent: keeps a tier's on-device model verified and current.\n"
    "\n"
    "usage: modeldist-agent COMMAND [flags]\n"
    "  sync    fetch the signed manifest, verify it, download (resuming), verify, activate\n"
    "  status  show the active and previous versions and the trust state\n"
    "  verify  re-hash the active model file against its digest\n"
    "  gc      remove versions other than the active and previous ones, and stale partials\n"
    "  install-bundle FILE   verify a bundle (`modeldistctl bundle export`) and activate it\n"
    "  adopt   --bundle FILE --file MODEL   verify a model file the app ships against a\n"
    "          manifest-only bundle and activate it (cloned where the file system can)\n"
    "  current print the model to load (counts a launch of a version on trial)\n"
    "  confirm the app loaded it (ends its trial); --failed REASON: it did not (rolls back)\n"
    "\n"
    "example:\n"
    "  modeldist-agent sync --server models.example.com:8470 --tier llama8b \\\n"
    "      --dir ~/Library/Application\\ Support/MyApp/models --trust-root root.bin\n"
    "\n"
    "exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 10 bad signature, 11 bad trust\n"
    "root, 12 manifest expired, 13 sequence rollback or reuse, 14 wrong target, 15 malformed\n"
    "manifest, 16 insufficient disk, 20 data loss, 21 server unavailable.\n";

bool Tty() { return ::isatty(STDERR_FILENO) == 1; }

int Fail(const absl::Status& status, bool json) {
  const int code = ExitCodeFor(status);
  if (json) {
    std::cout << absl::StrFormat("{\"ok\":false,\"exit\":%d,\"code\":\"%s\",\"reason\":\"%s\"}\n",
                                 code, absl::StatusCodeToString(status.code()),
                                 ErrorReason(status));
  }
  std::cerr << "modeldist-agent: " << status.message() << "\n";
  return code;
}

// The limits of the trial an activated version starts (trial.h), for sync and bundles.
void AddTrialFlags(Flags& flags) {
  flags.Add("trial-launches", "N", "0",
            "roll a newly activated version back unless `confirm` comes within N launches "
            "(`current` calls; 0 = no limit)");
  flags.Add("trial-timeout", "DURATION", "0",
            "roll a newly activated version back unless `confirm` comes within this, e.g. 24h "
            "(0 = no limit)");
}

// False (after saying why) when the trial flags do not parse.
bool ParseTrialFlags(const std::string& command, const Flags& flags, TrialLimits* limits) {
  absl::StatusOr<int64_t> launches = flags.GetInt("trial-launches");
  if (!launches.ok() || *launches < 0 ||
      !absl::ParseDuration(flags.Get("trial-timeout"), &limits->timeout) ||
      limits->timeout < absl::ZeroDuration()) {
    std::cerr << "modeldist-agent " << command
              << ": --trial-launches must be a count and --trial-timeout a duration like 24h (0 "
                 "= no limit)\n";
    return false;
  }
  limits->max_launches = *launches;
  return true;
}

int RunSync(int argc, char** argv) {
  Flags flags;
  flags.Add("server", "HOST:PORT", "", "modeldist-server address (required)");
  flags.Add("tier", "TIER", "", "the tier to keep current, e.g. llama8b (required)");
  flags.Add("channel", "CHANNEL", "stable", "the channel");
  flags.Add("trust-root", "FILE", "",
            "pinned SignedTrustRoot; needed until DIR has one (kept after the first verified "
            "manifest), ignored once it does");
  flags.Add("tls-ca", "FILE", "", "PEM CA bundle: TLS to the server and https mirrors");
  flags.Add("platform", "P", "", "macos|ios|linux|windows|android (default: detected)");
  flags.Add("arch", "A", "", "arm64|x86_64 (default: detected)");
  flags.Add("device-id", "ID", "", "stable device id for rollout cohorts and pins");
  flags.Add("os-version", "V", "", "OS version reported for artifact constraints");
  flags.Add("ram", "BYTES", "0", "RAM reported for artifact constraints, e.g. 16GiB");
  flags.Add("accelerators", "LIST", "", "e.g. ane,metal, reported for artifact constraints");
  flags.Add("max-rate", "BYTES", "0", "download bandwidth cap per second, e.g. 20MiB (0 = none)");
  flags.Add("clock-skew", "DURATION", "5m", "how far behind the server's clock this one may be");
  AddTrialFlags(flags);
  flags.Add("app-version", "V", "", "the app's version, sent with status reports");
  flags.AddBool("no-reports",
                "send no status reports (otherwise sent with --device-id: docs/agent.md)");
  AddCommonFlags(flags);
  if (std::optional<int> code =
          ParseCommandFlags("sync",
                            "usage: modeldist-agent sync --server HOST:PORT --tier T --dir DIR "
                            "[--trust-root FILE] [flags]\n\n",
                            flags, argc, argv)) {
    return *code;
  }
  const bool json = flags.GetBool("json");
  SyncOptions o;
  o.server = flags.Get("server");
  o.tier = flags.Get("tier");
  o.channel = flags.Get("channel");
  o.dir = flags.Get("dir");
  o.trust_root_file = flags.Get("trust-root");
  o.tls_ca_file = flags.Get("tls-ca");
  o.device_id = flags.Get("device-id");
  if (o.server.empty() || o.tier.empty() || o.dir.empty()) {
    std::cerr << "modeldist-agent sync: --server, --tier and --dir are required (see --help)\n";
    return 2;
  }
  if (!ParseTargetFlags("sync", flags, &o.platform, &o.arch)) return 2;
  o.device.set_os_version(flags.Get("os-version"));
  auto ram = flags.GetInt("ram");
  auto rate = flags.GetInt("max-rate");
  if (!ram.ok() || !rate.ok()) {
    std::cerr << "modeldist-agent sync: " << (ram.ok() ? rate.status() : ram.status()).message()
              << "\n";
    return 2;
  }
  o.device.set_ram_bytes(*ram);
  o.download.max_bytes_per_second = *rate;
  for (absl::string_view a : absl::StrSplit(flags.Get("accelerators"), ',', absl::SkipEmpty())) {
    v1::Accelerator accelerator;
    if (!ParseAcceleratorName(a, &accelerator)) {
      std::cerr << "modeldist-agent sync: unknown accelerator \"" << a << "\"\n";
      return 2;
    }
    o.device.add_accelerators(accelerator);
  }
  if (!absl::ParseDuration(flags.Get("clock-skew"), &o.clock_skew)) {
    std::cerr << "modeldist-agent sync: --clock-skew must be a duration like 5m\n";
    return 2;
  }
  if (!ParseTrialFlags("sync", flags, &o.trial)) return 2;
  const absl::Time start = absl::Now();
  if (Tty() && !json) {
    o.download.on_progress = [start](int64_t done, int64_t total) {
      const double s = absl::ToDoubleSeconds(absl::Now() - start);
      std::fprintf(stderr, "\r  %5.1f%%  %.1f / %.1f MB  %.0f MB/s   ",
                   total > 0 ? 100.0 * done / total : 100.0, done / 1e6, total / 1e6,
                   s > 0 ? done / 1e6 / s : 0.0);
    };
  }
  ReportingOptions reporting;
  reporting.enabled = !flags.GetBool("no-reports");
  reporting.app_version = flags.Get("app-version");
  ReportingOutcome reported;
  auto result = SyncAndReport(o, reporting, &reported);
  if (Tty() && !json) std::fprintf(stderr, "\n");
  // Reports are best effort: a failure here is a note, never the sync's exit code. A server
  // that cannot be reached is not worth one (the reports wait for the next sync).
  if (!reported.queued.ok()) {
    std::cerr << "modeldist-agent: status reports not queued: " << reported.queued.message()
              << "\n";
  }
  if (reported.stats.dropped > 0) {
    std::cerr << "modeldist-agent: the server refused " << reported.stats.dropped
              << " status reports, dropped: " << reported.stats.drop_message << "\n";
  }
  if (!result.ok()) return Fail(result.status(), json);
  const bool activated = result->action == SyncResult::Action::kActivated;
  if (!result->rolled_back.empty()) {
    std::cerr << "modeldist-agent: rolled back " << result->rolled_back << " ("
              << result->rollback_reason << ": not confirmed within its trial)\n";
  }
  if (result->held_back) std::cerr << "modeldist-agent: " << result->selection_reason << "\n";
  if (json) {
    std::cout << absl::StrFormat(
        "{\"ok\":true,\"action\":\"%s\",\"version\":\"%s\",\"digest\":\"%s\",\"path\":\"%s\","
        "\"sequence\":%d,\"chunksTotal\":%d,\"chunksReused\":%d,\"chunksFetched\":%d,"
        "\"chunksRefetched\":%d,\"bytesReceived\":%d,\"heldBack\":%s,\"rolledBack\":\"%s\"}\n",
        activated ? "activated" : "up-to-date", result->installed.version, result->installed.digest,
        result->installed.path, result->manifest.sequence(), result->download.chunks_total,
        result->download.chunks_reused, result->download.chunks_fetched,
        result->download.chunks_refetched, result->download.bytes_received,
        result->held_back ? "true" : "false", result->rolled_back);
  } else {
    std::cout << (activated ? "activated " : "up to date: ") << result->installed.version << " ("
              << result->installed.digest << ") at " << result->installed.path << "\n";
  }
  return 0;
}

int RunStore(const std::string& command, int argc, char** argv) {
  Flags flags;
  AddCommonFlags(flags);
  if (std::optional<int> code = ParseCommandFlags(
          command, "usage: modeldist-agent " + command + " --dir DIR [--json]\n\n", flags, argc,
          argv)) {
    return *code;
  }
  const bool json = flags.GetBool("json");
  if (flags.Get("dir").empty()) {
    std::cerr << "modeldist-agent " << command << ": --dir is required\n";
    return 2;
  }
  auto store = ModelStore::Open(flags.Get("dir"));
  if (!store.ok()) return Fail(store.status(), json);
  if (command == "gc") {
    auto freed = store->CollectGarbage();
    if (!freed.ok()) return Fail(freed.status(), json);
    if (json) {
      std::cout << "{\"ok\":true,\"freedBytes\":" << *freed << "}\n";
    } else {
      std::cout << "freed " << *freed << " bytes\n";
    }
    return 0;
  }
  auto current = store->Current();
  if (command == "verify") {
    if (!current.has_value()) return Fail(absl::NotFoundError("no active version"), json);
    if (current->format == v1::FORMAT_COREML_ZIP) {
      // The zip's digest covers the archive, which is not kept after unpacking; its bytes
      // were verified before extraction.
      std::cout << "verified at activation (unpacked from " << current->digest << ")\n";
      return 0;
    }
    auto file = DigestFile(current->path);
    if (!file.ok()) return Fail(file.status(), json);
    if (FormatDigest(file->hex) != current->digest) {
      return Fail(
          MakeError(absl::StatusCode::kDataLoss, "MODEL_CORRUPT",
                    absl::StrCat(current->path, " hashes to sha256:", file->hex, ", expected ",
                                 current->digest, "; run sync to reinstall")),
          json);
    }
    std::cout << (json ? "{\"ok\":true}\n" : "ok: " + current->path + "\n");
    return 0;
  }
  // status
  auto previous = store->Previous();
  // Read only: the next launch query, confirm or sync settles a record a crash left
  // (trial_state.h says when `current` is on trial).
  const std::optional<TrialRecord> trial = ReadTrial(store->dir());
  const bool on_trial = trial && current && current->key != trial->confirmed;
  if (json) {
    std::cout << absl::StrFormat(
        "{\"ok\":true,\"current\":\"%s\",\"previous\":\"%s\",\"onTrial\":%s,"
        "\"trialLaunches\":%d}\n",
        current ? current->version : "", previous ? previous->version : "",
        on_trial ? "true" : "false", on_trial ? trial->launches : 0);
  } else {
    std::cout << "current:  " << (current ? current->version + " " + current->path : "none")
              << (on_trial ? absl::StrCat(" (on trial, ", trial->launches, " launches)") : "")
              << "\nprevious: " << (previous ? previous->version : "none") << "\n";
  }
  return 0;
}

// `install-bundle FILE` and `adopt --bundle FILE --file MODEL`: one flow (bundle_install.h).
int RunInstallBundle(const std::string& command, int argc, char** argv) {
  Flags flags;
  flags.Add("trust-root", "FILE", "", "pinned SignedTrustRoot; needed until DIR has one");
  flags.Add("file", "MODEL", "",
            "a model file the app ships (GGUF or CoreML zip) to adopt; the bundle must be "
            "manifest-only");
  if (command == "adopt") flags.Add("bundle", "FILE", "", "the manifest-only bundle (required)");
  flags.Add("tier", "TIER", "", "the tier (default: the bundle manifest's)");
  flags.Add("channel", "CHANNEL", "", "the channel (default: the bundle manifest's)");
  flags.Add("platform", "P", "", "macos|ios|linux|windows|android (default: detected)");
  flags.Add("arch", "A", "", "arm64|x86_64 (default: detected)");
  AddTrialFlags(flags);
  AddCommonFlags(flags);
  const std::string usage =
      command == "adopt"
          ? "usage: modeldist-agent adopt --bundle FILE --file MODEL --dir DIR [flags]\n\n"
          : "usage: modeldist-agent install-bundle FILE --dir DIR [--file MODEL] [flags]\n\n";
  if (std::optional<int> code = ParseCommandFlags(command, usage, flags, argc, argv)) {
    return *code;
  }
  const bool json = flags.GetBool("json");
  BundleInstallOptions o;
  o.dir = flags.Get("dir");
  o.trust_root_file = flags.Get("trust-root");
  o.adopt_file = flags.Get("file");
  o.tier = flags.Get("tier");
  o.channel = flags.Get("channel");
  if (!ParseTrialFlags(command, flags, &o.trial)) return 2;
  const auto& args = flags.positional();
  if (command == "adopt") {
    o.bundle = flags.Get("bundle");
    if (o.adopt_file.empty() || !args.empty()) o.bundle.clear();
  } else if (args.size() == 1) {
    o.bundle = args[0];
  }
  if (o.bundle.empty() || o.dir.empty()) {
    std::cerr << "modeldist-agent " << command << ": " << usage;
    return 2;
  }
  if (!ParseTargetFlags(command, flags, &o.platform, &o.arch)) return 2;
  auto result = InstallBundle(o);
  if (!result.ok()) return Fail(result.status(), json);
  const char* action = "activated";
  if (result->action == BundleInstallResult::Action::kUpToDate) action = "up-to-date";
  if (result->action == BundleInstallResult::Action::kKeptNewer) action = "kept-newer";
  const v1::Manifest& m = result->manifest;
  if (json) {
    std::cout << absl::StrFormat(
        "{\"ok\":true,\"action\":\"%s\",\"version\":\"%s\",\"digest\":\"%s\",\"path\":\"%s\","
        "\"sequence\":%d,\"highestSeen\":%d,\"expiryWaived\":%s,\"placement\":\"%s\","
        "\"chunksTotal\":%d,\"chunksReused\":%d,\"bytesReceived\":%d}\n",
        action, result->installed.version, result->installed.digest, result->installed.path,
        m.sequence(), result->highest_seen, result->expiry_waived ? "true" : "false",
        result->placement, result->stats.chunks_total, result->stats.chunks_reused,
        result->stats.bytes_received);
    return 0;
  }
  if (result->expiry_waived) {
    std::cout << "note: the bundle's manifest expired at "
              << absl::FormatTime(absl::RFC3339_sec,
                                  absl::FromUnixSeconds(m.expires_at().seconds()),
                                  absl::UTCTimeZone())
              << "; accepted anyway: a bundle proves authenticity, not freshness (sync to get "
                 "the newest version)\n";
  }
  switch (result->action) {
    case BundleInstallResult::Action::kKeptNewer:
      std::cout << "kept " << result->installed.version << ": this device has seen sequence "
                << result->highest_seen << ", newer than the bundle's " << m.version()
                << " (sequence " << m.sequence() << "); nothing to do\n";
      break;
    case BundleInstallResult::Action::kUpToDate:
      std::cout << "up to date: " << result->installed.version << " (" << result->installed.digest
                << ") at " << result->installed.path << "\n";
      break;
    case BundleInstallResult::Action::kActivated:
      std::cout << "activated " << result->installed.version << " (" << result->installed.digest
                << ", sequence " << m.sequence() << ") at " << result->installed.path << " from "
                << (result->placement == "bundle" ? "the bundle"
                                                  : result->placement + " of " + o.adopt_file)
                << "\n";
      break;
  }
  return 0;
}

}  // namespace
}  // namespace modeldist::agent

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << modeldist::agent::kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "sync") return modeldist::agent::RunSync(argc, argv);
  if (command == "install-bundle" || command == "adopt") {
    return modeldist::agent::RunInstallBundle(command, argc, argv);
  }
  if (command == "current" || command == "confirm") {
    return modeldist::agent::RunTrialCommand(command, argc, argv, modeldist::agent::Fail);
  }
  if (command == "status" || command == "verify" || command == "gc") {
    return modeldist::agent::RunStore(command, argc, argv);
  }
  std::cerr << "modeldist-agent: unknown command \"" << command << "\" (see --help)\n";
  return 2;
}
