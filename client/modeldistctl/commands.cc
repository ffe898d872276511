#include "client/modeldistctl/commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/invocation.h"
#include "client/modeldistctl/registry_client.h"
#include "common/flags.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

struct Command {
  const char* name;
  const char* usage;    // After "modeldistctl [global flags] ".
  const char* summary;  // One line, for the command list.
  const char* example;
  void (*add_flags)(Flags* flags);
  absl::Status (*run)(Invocation& inv, const Flags& flags);
};

// One entry per command, in the order of the help text. The commands themselves are in a file
// per family (command_families.h); this table names and describes them.
const Command kCommands[] = {
    {"publish",
     "publish --model M --version V --tier T [--channel C] [--description TEXT]\n"
     "           [--replicate-to LIST] [CONSTRAINTS] PLATFORM/ARCH/FORMAT=FILE...\n"
     "   or: modeldistctl [global flags] publish --model M --version V --platform P --arch A\n"
     "           --format F --tier T [--channel C] [--description TEXT] [--replicate-to LIST]\n"
     "           [CONSTRAINTS] FILE\n"
     "CONSTRAINTS: [--min-os VERSION] [--min-ram BYTES] [--requires LIST] [--unpacked-size "
     "BYTES],\n"
     "what a device needs, declared alike on every artifact of the command.\n"
     "--check: check the FILEs as the server will at publish, print what they hold, send "
     "nothing",
     "upload a version's model files and bind a tier to it; rerun to resume",
     "modeldistctl publish --model llama-3.1-8b-instruct --version 2026.11.0 --tier llama8b \\\n"
     "      macos/arm64/coreml-zip=llama-3.1-8b-instruct-coreml.zip \\\n"
     "      macos/x86_64/gguf=llama-3.1-8b-instruct-q4_0.gguf",
     PublishFlags, RunPublish},
    {"import-env",
     "import-env --model M --version V [--tier T] [--channel C] [--env-file FILE]\n"
     "           [--temp-dir DIR] [--http-ca FILE] [--dry-run]\n"
     "Reads LOCAL_LLM_MACOS_COREML_ZIP_URL/_SHA256/_SIZE_BYTES (macos/arm64/coreml-zip) and\n"
     "LOCAL_LLM_MACOS_INTEL_GGUF_URL/_SHA256/_SIZE_BYTES (macos/x86_64/gguf), each triple\n"
     "complete or absent, from the environment, or from --env-file alone when given. Every\n"
     "object is fetched and checked (size, SHA-256, model checks) before anything is created.\n"
     "Exit code 4 when an object is not what its variables say or not a valid model file.",
     "publish the seed's hosted model files (its LOCAL_LLM_MACOS_* secrets) as a version",
     "modeldistctl import-env --env-file seed.env --model llama-3.1-8b-instruct \\\n"
     "      --version 2026.11.0 --tier llama8b",
     ImportEnvFlags, RunImportEnv},
    {"list", "list [M | models/M | --tiers]",
     "list models, the versions and artifacts of model M, or the tier bindings",
     "modeldistctl list llama-3.1-8b-instruct", ListFlags, RunList},
    {"show", "show models/M/versions/V | show M V",
     "show a version: state, times and artifacts (digest, size, uploaded)",
     "modeldistctl show llama-3.1-8b-instruct 2026.11.0", ShowFlags, RunShow},
    {"set-tier", "set-tier --tier T [--channel C] --version models/M/versions/V",
     "bind a tier on a channel to a published version (also --model M --version V)",
     "modeldistctl set-tier --tier llama8b --channel beta \\\n"
     "      --version models/llama-3.1-8b-instruct/versions/2026.11.0",
     SetTierFlags, RunSetTier},
    {"yank", "yank models/M/versions/V [--reason TEXT]",
     "withdraw a published version; tiers bound to it fall back to their previous version",
     "modeldistctl yank models/llama-3.1-8b-instruct/versions/2026.11.0 --reason \"bad output\"",
     YankFlags, RunYank},
    {"rollout",
     "rollout start --tier T [--channel C] --version models/M/versions/V --percent P\n"
     "      [--max-load-failure P] [--max-sync-failure P] [--min-reports N]\n"
     "      [--on-trip pause|abort] [--schedule P,P,... --every DURATION]\n"
     "   or: modeldistctl [global flags] rollout advance --tier T [--channel C] --percent P\n"
     "   or: modeldistctl [global flags] rollout pause|resume|complete|abort --tier T "
     "[--channel C]\n"
     "   or: modeldistctl [global flags] rollout list [--tier T [--channel C]]\n"
     "   or: modeldistctl [global flags] rollout status T [--channel C] [--json]",
     "move a tier to a new version for a growing share of devices (P in %, e.g. 0.5 or 10)",
     "modeldistctl rollout start --tier llama8b \\\n"
     "      --version models/llama-3.1-8b-instruct/versions/2026.12.0 --percent 1 \\\n"
     "      --max-load-failure 3 --schedule 10%,50%,100% --every 6h",
     RolloutFlags, RunRollout},
    {"pin",
     "pin --tier T [--channel C] --version models/M/versions/V DEVICE_ID... | --devices-file FILE",
     "hold devices of a tier on a version, whatever the binding or a rollout says",
     "modeldistctl pin --tier llama8b --version models/llama-3.1-8b-instruct/versions/2026.11.0 "
     "\\\n"
     "      --devices-file qa-devices.txt",
     PinFlags, RunPin},
    {"unpin", "unpin --tier T [--channel C] DEVICE_ID... | --devices-file FILE",
     "release pinned devices (unknown ids are ignored)",
     "modeldistctl unpin --tier llama8b device-0001 device-0002", UnpinFlags, RunUnpin},
    {"pins", "pins", "list pinned devices", "modeldistctl pins --json", PinsFlags, RunPins},
    {"inspect", "inspect [--format F] [--require-file LIST] FILE...",
     "check model files as the server does at publish and show what they hold (exit 4: broken)",
     "modeldistctl inspect llama-3.1-8b-instruct-q4_k_m.gguf", InspectFlags, RunInspect},
    {"status", "status [--json]",
     "the server at a glance: tiers and rollouts, replication, trust root, blob store",
     "modeldistctl status --json", StatusFlags, RunStatus},
    {"fleet", "fleet [--tier T [--channel C]] [--window 24h] [--json]",
     "what devices reported: versions in the field, events, failure reasons, recent failures",
     "modeldistctl fleet --tier llama8b --window 7d", FleetFlags, RunFleet},
    {"audit", "audit [--limit N]", "show the audit log of catalog changes, newest first",
     "modeldistctl audit --limit 20", AuditFlags, RunAudit},
    {"keys",
     "keys generate --out FILE\n"
     "   or: modeldistctl [global flags] keys add [--threshold K]\n"
     "   or: modeldistctl [global flags] keys revoke KEY_ID [--threshold K]\n"
     "   or: modeldistctl [global flags] keys rotate [--count N] [--threshold K]\n"
     "   or: modeldistctl [global flags] keys root [--version N] [--out FILE]",
     "manage the server's manifest-signing keys and trust root; generate a key locally",
     "modeldistctl keys root --out trust-root.bin", KeysFlags, RunKeys},
    {"creds",
     "creds create NAME --scope SCOPE [--scope SCOPE...]\n"
     "   or: modeldistctl [global flags] creds list\n"
     "   or: modeldistctl [global flags] creds revoke NAME\n"
     "Scopes: read, publish, rollout, keys, admin (every scope). create prints the token alone\n"
     "on stdout, once: redirect it into the file --token-file reads.",
     "manage named admin credentials: tokens with scopes, revocable one by one",
     "modeldistctl creds create ci-publisher --scope publish --scope read > ci.token", CredsFlags,
     RunCreds},
    {"root",
     "root keygen [--key pkcs11:URI [--pkcs11-module SO] [--pin-file F]] --out NAME\n"
     "   or: modeldistctl [global flags] root pubkey --key KEY.pem|pkcs11:URI --out PUB\n"
     "   or: modeldistctl [global flags] root fetch --out CURRENT [--version N]\n"
     "   or: modeldistctl [global flags] root init --from CURRENT --root-key PUB[,PUB...]\n"
     "           [--root-threshold K] [--release-key PUB,... [--release-threshold K]]\n"
     "           [--online-key PUB,... [--threshold K]] --out NEXT\n"
     "   or: modeldistctl [global flags] root add-key|revoke --from CURRENT\n"
     "           --role root|online|release --key PUB | --key-id ID [--threshold K] --out NEXT\n"
     "   or: modeldistctl [global flags] root sign --key KEY.pem|pkcs11:URI\n"
     "           [--pkcs11-module SO] [--pin-file F] NEXT\n"
     "   or: modeldistctl [global flags] root verify --trusted CURRENT NEXT\n"
     "   or: modeldistctl [global flags] root show FILE\n"
     "   or: modeldistctl [global flags] root upload NEXT\n"
     "The offline ceremony of docs/trust.md: all but fetch and upload work on files alone.\n"
     "Root files are JSON (a SignedTrustRoot). A key in a hardware token is a pkcs11: URI\n"
     "(docs/trust.md). Exit code 4: verify found the root not valid yet.",
     "change the trust root offline: root and release keys that never touch the server",
     "modeldistctl root sign --key alice-root.pem root-3.json", RootFlags, RunRoot},
    {"release",
     "release sign --key KEY.pem --version models/M/versions/V --out REL\n"
     "           PLATFORM/ARCH/FORMAT=FILE... | --platform P --arch A --format F FILE\n"
     "   or: modeldistctl [global flags] release sign --key KEY.pem REL\n"
     "   or: modeldistctl [global flags] release show [--trusted ROOT] REL\n"
     "   or: modeldistctl [global flags] release attach [--version models/M/versions/V] REL\n"
     "A release statement lists each file's digest, size and chunk chain, signed by release\n"
     "keys; `publish --release REL` sends it with the version. `--key pkcs11:URI\n"
     "[--pkcs11-module SO] [--pin-file F]` signs with a token's key (docs/trust.md).\n"
     "Exit code 4: show --trusted found it not valid.",
     "sign what a version contains with offline release keys, show it, attach it",
     "modeldistctl release sign --key rel.pem --version models/llama/versions/2026.12.0 \\\n"
     "      --out llama-2026.12.0.rel macos/arm64/coreml-zip=llama.zip",
     ReleaseFlags, RunRelease},
    {"bundle",
     "bundle export --tier T [--channel C] --platform P --arch A [--device-id D]\n"
     "           [--no-blobs] --output FILE\n"
     "Writes one tar: the trust roots, the signed manifest and the model, verified while they\n"
     "stream in. Devices install it offline with `modeldist-agent install-bundle FILE`; with\n"
     "--no-blobs it is manifest-only, for `modeldist-agent adopt` of a model the app ships.",
     "write a tier's signed manifest, trust roots and model into one file for offline install",
     "modeldistctl bundle export --tier llama8b --platform macos --arch arm64 \\\n"
     "      --output llama8b-macos-arm64.bundle",
     BundleFlags, RunBundle},
    {"scrub",
     "scrub [--rate BYTES]\n"
     "Prints each damaged, missing or restored blob, then a summary; progress goes to stderr.\n"
     "The server quarantines a damaged blob and withholds its manifests until the same file\n"
     "is published again. Exit code 4 when a blob is damaged or missing.",
     "re-read and check every blob on the server's disk (exit 4: damage found)",
     "modeldistctl scrub --rate 200MiB", ScrubFlags, RunScrub},
    {"origins",
     "origins list\n"
     "   or: modeldistctl [global flags] origins check NAME\n"
     "The origins are set in the server's --origins file (docs/origins.md). `check` has the\n"
     "server put, read back and delete a small probe object (a read-only origin: ask for one).\n"
     "Exit code 4 when the origin fails its check.",
     "list the server's object stores and CDNs, or test access to one (exit 4: it fails)",
     "modeldistctl origins check r2", OriginsFlags, RunOrigins},
};

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void AddGlobalFlags(Flags* f, const GetEnv& getenv) {
  std::optional<std::string> server = getenv ? getenv("MODELDIST_SERVER") : std::nullopt;
  f->Add("server", "HOST:PORT", server.value_or(kDefaultServer),
         "the modeldist server ($MODELDIST_SERVER)");
  f->Add("token-file", "FILE", "",
         "admin token file, first line ($MODELDIST_ADMIN_TOKEN when absent)");
  f->Add("tls-ca", "FILE", "", "use TLS, trusting this CA bundle (PEM); plaintext without it");
  f->AddBool("json", "print results as JSON");
  f->AddBool("help", "show this help");
}

std::string MainHelp(const GetEnv& getenv) {
  Flags global;
  AddGlobalFlags(&global, getenv);
  std::string out =
      "modeldistctl: the admin CLI of a modeldist server (RegistryService).\n\n"
      "usage: modeldistctl [--server HOST:PORT] [--token-file FILE] [--tls-ca FILE] "
      "[--json] COMMAND [args]\n\ncommands:\n";
  for (const Command& c : kCommands)
    absl::StrAppend(&out, absl::StrFormat("  %-10s %s\n", c.name, c.summary));
  absl::StrAppend(&out, "\nglobal flags (before the command):\n", global.Help(), "\nexamples:\n");
  for (const Command& c : kCommands) absl::StrAppend(&out, "  ", c.example, "\n");
  absl::StrAppend(&out,
                  "\nexit codes: 0 ok, 1 usage error, 2 server/RPC error, 3 local file error,\n"
                  "4 a problem found (scrub: damaged or missing blobs; import-env: an object\n"
                  "that is not what its variables say, or not a valid model file).\n"
                  "Run `modeldistctl COMMAND --help` for a command's flags.\n");
  return out;
}

std::string CommandHelp(const Command& c, const Flags& flags) {
  return absl::StrCat("usage: modeldistctl [global flags] ", c.usage, "\n\n", c.summary,
                      "\n\nflags:\n", flags.Help(), "\nexample:\n  ", c.example, "\n");
}

// argv-style pointers into `args`, which must outlive the result.
std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

int Fail(const Console& console, const absl::Status& status, absl::string_view hint) {
  *console.err << "modeldistctl: " << DescribeError(status) << "\n";
  if (ExitCodeFor(status) == kExitUsage && !hint.empty()) *console.err << hint << "\n";
  return ExitCodeFor(status);
}

}  // namespace

Console ProcessConsole() {
  Console console;
  console.out = &std::cout;
  console.err = &std::cerr;
  console.err_is_tty = ::isatty(STDERR_FILENO) == 1;
  console.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  return console;
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const GetEnv& getenv) {
  // Scripts from before named credentials pass --actor (before or after the command, which
  // has no such flag either): say why it is gone rather than that it is unknown.
  for (size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
    if (args[i] == "--actor" || absl::StartsWith(args[i], "--actor=")) {
      return UsageError(
          "--actor was removed: the audit log records the authenticated credential's name");
    }
  }
  Flags global;
  AddGlobalFlags(&global, getenv);
  std::vector<char*> argv = Argv(args);
  absl::StatusOr<int> command_at = global.ParsePrefix(static_cast<int>(args.size()), argv.data());
  if (!command_at.ok()) return UsageError(command_at.status().message());
  CommandLine line;
  line.global.server = global.Get("server");
  line.global.token_file = global.Get("token-file");
  line.global.tls_ca = global.Get("tls-ca");
  line.global.json = global.GetBool("json");
  line.global.help = global.GetBool("help");
  line.command_args.assign(args.begin() + *command_at, args.end());
  return line;
}

int RunCtl(const std::vector<std::string>& args, const Console& console) {
  constexpr absl::string_view kMainHint = "Run `modeldistctl --help` for usage.";
  absl::StatusOr<CommandLine> line = ParseCommandLine(args, console.getenv);
  if (!line.ok()) return Fail(console, line.status(), kMainHint);
  std::vector<std::string>& command_args = line->command_args;
  if (!command_args.empty() && command_args[0] == "help") {
    // `modeldistctl help [COMMAND]` is `modeldistctl [COMMAND] --help`.
    command_args.erase(command_args.begin());
    if (command_args.empty()) line->global.help = true;
    command_args.resize(std::min<size_t>(command_args.size(), 1));
    if (!command_args.empty()) command_args.push_back("--help");
  }
  if (command_args.empty()) {
    if (line->global.help) {
      *console.out << MainHelp(console.getenv);
      return kExitOk;
    }
    return Fail(console, UsageError("no command given"), kMainHint);
  }
  const Command* command = FindCommand(command_args[0]);
  if (command == nullptr) {
    return Fail(console, UsageError(absl::StrCat("unknown command \"", command_args[0], "\"")),
                kMainHint);
  }
  Flags flags;
  command->add_flags(&flags);
  flags.AddBool("help", "show this help");
  std::string hint = absl::StrCat("Run `modeldistctl ", command->name, " --help` for usage.");
  std::vector<char*> argv = Argv(command_args);
  if (absl::Status parsed = flags.Parse(static_cast<int>(command_args.size()), argv.data(), 1);
      !parsed.ok()) {
    return Fail(console, UsageError(absl::StrCat(command->name, ": ", parsed.message())), hint);
  }
  if (flags.GetBool("help") || line->global.help) {
    *console.out << CommandHelp(*command, flags);
    return kExitOk;
  }
  Invocation invocation(line->global, console);
  absl::Status status = command->run(invocation, flags);
  if (!status.ok()) return Fail(console, status, hint);
  return kExitOk;
}

}  // namespace modeldist::ctl
