// `modeldistctl release`: release statements, signed by the offline release keys where the
// model files are (docs/trust.md), then sent with `publish --release` or `release attach`.
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/signer.h"
#include "client/modeldistctl/trust_files.h"
#include "common/digest.h"
#include "common/release.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

constexpr std::initializer_list<absl::string_view> kReleaseFlags = {
    "key",    "model", "version", "platform",      "arch",
    "format", "out",   "trusted", "pkcs11-module", "pin-file"};

void PrintRelease(Invocation& inv, const v1::Release& release,
                  const v1::SignedRelease& signed_release) {
  inv.out() << "release of " << release.version() << ", signed "
            << FormatTime(release.released_at()) << "\n";
  for (const v1::ReleasedArtifact& a : release.artifacts()) {
    inv.out() << "  " << TargetName(a.platform(), a.arch(), a.format()) << " " << a.digest()
              << " size " << a.size_bytes() << " (" << FormatBytes(a.size_bytes()) << ") chunks "
              << a.chunk_size() << " chain " << HexEncode(a.chunk_chain_sha256()) << "\n";
  }
  inv.out() << "  signatures: " << signed_release.signatures_size() << "\n";
  for (const v1::Signature& sig : signed_release.signatures()) {
    inv.out() << "    " << sig.key_id() << "\n";
  }
}

// `release sign --version V ... --out REL`: a new statement of the given files.
absl::Status SignNew(Invocation& inv, const Flags& flags, const Signer& key) {
  const std::string out = flags.Get("out");
  if (out.empty()) return UsageError("--out REL (the release file to write) is required");
  MD_ASSIGN_OR_RETURN(VersionName version, VersionFromFlags(flags));
  std::vector<std::string> files(flags.positional().begin() + 1, flags.positional().end());
  MD_ASSIGN_OR_RETURN(
      std::vector<PublishArtifact> artifacts,
      ParsePublishArtifacts(flags.Get("platform"), flags.Get("arch"), flags.Get("format"), files));
  if (::access(out.c_str(), F_OK) == 0) {
    return LocalError(absl::AlreadyExistsError(absl::StrCat(
        out, " exists; to add a signature to it run `modeldistctl release sign --key KEY ", out,
        "`")));
  }
  v1::Release release;
  release.set_version(version.ToString());
  release.mutable_released_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  for (const PublishArtifact& a : artifacts) {
    inv.err() << "hashing " << a.file << "\n";
    MD_ASSIGN_OR_RETURN(*release.add_artifacts(),
                        ReleasedArtifactOfFile(a.file, a.platform, a.arch, a.format));
  }
  v1::SignedRelease signed_release;
  release.SerializeToString(signed_release.mutable_release());
  MD_RETURN_IF_ERROR(AddSignature(key, kReleaseSignatureContext, signed_release.release(),
                                  signed_release.mutable_signatures()));
  MD_RETURN_IF_ERROR(WriteReleaseFile(out, signed_release, /*overwrite=*/false));
  inv.out() << "wrote " << out << ", signed by " << key.public_key().KeyId() << "\n";
  PrintRelease(inv, release, signed_release);
  return absl::OkStatus();
}

// `release sign --key K REL`: one more signature over the same bytes.
absl::Status SignExisting(Invocation& inv, const std::string& path, const Signer& key) {
  MD_ASSIGN_OR_RETURN(v1::SignedRelease signed_release, ReadReleaseFile(path));
  MD_ASSIGN_OR_RETURN(v1::Release release, ReleaseOf(path, signed_release));
  MD_RETURN_IF_ERROR(AddSignature(key, kReleaseSignatureContext, signed_release.release(),
                                  signed_release.mutable_signatures()));
  MD_RETURN_IF_ERROR(WriteReleaseFile(path, signed_release, /*overwrite=*/true));
  inv.out() << "signed " << path << " (" << release.version() << ") with key "
            << key.public_key().KeyId() << "; " << signed_release.signatures_size()
            << " signatures\n";
  return absl::OkStatus();
}

absl::Status ReleaseSign(Invocation& inv, const Flags& flags) {
  if (!flags.IsSet("key")) {
    return UsageError("--key KEY.pem (a release key file or a pkcs11: URI) is required");
  }
  const bool new_statement = flags.IsSet("version") || flags.IsSet("out");
  if (!new_statement && flags.positional().size() != 2) {
    return UsageError(
        "release sign needs --version V, the files and --out REL for a new statement, or one "
        "REL file to add a signature to");
  }
  if (!new_statement) {
    for (const char* flag : {"model", "platform", "arch", "format"}) {
      if (flags.IsSet(flag)) return UsageError(absl::StrCat("--", flag, " goes with --version"));
    }
  }
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Signer> key, OpenSigner(inv, flags));
  if (new_statement) return SignNew(inv, flags, *key);
  return SignExisting(inv, flags.positional()[1], *key);
}

absl::Status ReleaseShow(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("release show needs exactly one REL");
  const std::string path = flags.positional()[1];
  MD_ASSIGN_OR_RETURN(v1::SignedRelease signed_release, ReadReleaseFile(path));
  MD_ASSIGN_OR_RETURN(v1::Release release, ReleaseOf(path, signed_release));
  if (WantJson(inv, flags)) {
    MD_RETURN_IF_ERROR(PrintJson(inv, release));
  } else {
    PrintRelease(inv, release, signed_release);
  }
  const std::string trusted_path = flags.Get("trusted");
  if (trusted_path.empty()) return absl::OkStatus();
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, ReadRootFile(trusted_path));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, RootOf(trusted_path, signed_root));
  absl::StatusOr<v1::Release> verified = VerifyRelease(root, signed_release, release.version());
  if (!verified.ok()) {
    return DamageFound(absl::StrCat(path, " does not verify against trust root ", root.version(),
                                    ": ", verified.status().message()));
  }
  if (!WantJson(inv, flags)) {
    inv.out() << "valid: enough release keys of trust root " << root.version() << " signed it\n";
  }
  return absl::OkStatus();
}

absl::Status ReleaseAttach(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("release attach needs exactly one REL");
  const std::string path = flags.positional()[1];
  v1::AttachReleaseRequest request;
  MD_ASSIGN_OR_RETURN(*request.mutable_release(), ReadReleaseFile(path));
  MD_ASSIGN_OR_RETURN(v1::Release release, ReleaseOf(path, request.release()));
  request.set_name(release.version());
  if (flags.IsSet("version")) {
    MD_ASSIGN_OR_RETURN(VersionName version, VersionFromFlags(flags));
    if (version.ToString() != release.version()) {
      return UsageError(
          absl::StrCat(path, " releases ", release.version(), ", not ", version.ToString()));
    }
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::Version version, client->AttachRelease(request));
  if (WantJson(inv, flags)) return PrintJson(inv, version);
  inv.out() << "attached " << path << " to " << version.name() << "; its manifests are re-signed\n";
  return absl::OkStatus();
}

}  // namespace

void ReleaseFlags(Flags* f) {
  f->Add("key", "FILE", "",
         "sign: a release key (PKCS#8 PEM private key, or a pkcs11:token=T;object=L URI)");
  AddPkcs11Flags(f);
  f->Add("version", "V", "",
         "sign, attach: the version, models/M/versions/V (or the id with --model)");
  f->Add("model", "M", "", "with --version V: the model id");
  f->Add("platform", "P", "", "sign: for a single FILE, as in publish");
  f->Add("arch", "A", "", "sign: with --platform");
  f->Add("format", "F", "", "sign: with --platform");
  f->Add("out", "REL", "", "sign: the release file to write (never over an existing one)");
  f->Add("trusted", "ROOT", "", "show: also verify against this root file (exit 4: invalid)");
  f->AddBool("json", "show, attach: print JSON");
}

absl::Status RunRelease(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands = "sign, show, attach";
  if (args.empty()) return UsageError(absl::StrCat("release needs a subcommand: ", kSubcommands));
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("release ", sub);
  if (sub == "sign") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command,
                                 {"key", "model", "version", "platform", "arch", "format", "out",
                                  "pkcs11-module", "pin-file"},
                                 kReleaseFlags));
    return ReleaseSign(inv, flags);
  }
  if (sub == "show") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"trusted"}, kReleaseFlags));
    return ReleaseShow(inv, flags);
  }
  if (sub == "attach") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"version", "model"}, kReleaseFlags));
    return ReleaseAttach(inv, flags);
  }
  return UsageError(
      absl::StrCat("unknown release subcommand \"", sub, "\"; one of ", kSubcommands));
}

}  // namespace modeldist::ctl
