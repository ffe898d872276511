#include <unistd.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::ctl {
namespace {

// The largest key count RotateSigningKeys accepts.
constexpr int64_t kMaxRootKeys = 16;

constexpr std::initializer_list<absl::string_view> kKeysFlags = {"out", "threshold", "count",
                                                                 "version"};

absl::Status KeysGenerate(Invocation& inv, const Flags& flags) {
  const std::string out = flags.Get("out");
  if (out.empty()) return UsageError("--out is required");
  if (::access(out.c_str(), F_OK) == 0) {
    return LocalError(
        absl::AlreadyExistsError(absl::StrCat(out, " exists; refusing to overwrite a key")));
  }
  MD_ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  // SavePemFile refuses to overwrite too, which closes the race with the check above.
  MD_RETURN_IF_ERROR(LocalError(key.SavePemFile(out)));
  v1::SigningKey info;
  info.set_key_id(key.public_key().KeyId());
  info.set_algorithm("ed25519");
  info.set_public_key(key.public_key().raw());
  info.set_public_key_pem(key.public_key().ToPem());
  if (WantJson(inv, flags)) return PrintJson(inv, info);
  inv.out() << "wrote private key " << out << " (mode 0600; keep it secret)\n"
            << "key id: " << info.key_id() << "\n"
            << info.public_key_pem();
  return absl::OkStatus();
}

// The root inside `signed_root`. A server error (exit 2) when the bytes do not parse: they
// came from the server, and the user can do nothing about them locally.
absl::StatusOr<v1::TrustRoot> ParseRoot(const v1::SignedTrustRoot& signed_root) {
  v1::TrustRoot root;
  if (!root.ParseFromString(signed_root.root())) {
    return absl::DataLossError("the server's signed trust root does not parse as a TrustRoot");
  }
  return root;
}

absl::Status PrintRoot(Invocation& inv, const Flags& flags, const v1::TrustRoot& root,
                       absl::string_view head) {
  if (WantJson(inv, flags)) return PrintJson(inv, root);
  inv.out() << head << "trust root version " << root.version() << ", threshold " << root.threshold()
            << " of " << root.keys_size() << (root.keys_size() == 1 ? " key" : " keys") << "\n";
  for (const v1::SigningKey& key : root.keys()) inv.out() << "  key " << key.key_id() << "\n";
  return absl::OkStatus();
}

absl::Status KeysChange(Invocation& inv, const Flags& flags, const std::string& sub) {
  MD_ASSIGN_OR_RETURN(int64_t threshold, IntFlag(flags, "threshold", 1, kMaxRootKeys, 0));
  MD_ASSIGN_OR_RETURN(int64_t count, IntFlag(flags, "count", 1, kMaxRootKeys, 0));
  const auto& args = flags.positional();
  if (sub == "revoke" ? args.size() != 2 : args.size() != 1) {
    return UsageError(sub == "revoke" ? "keys revoke needs exactly one KEY_ID"
                                      : absl::StrCat("keys ", sub, " takes no arguments"));
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  absl::StatusOr<v1::SignedTrustRoot> signed_root;
  std::string head;
  if (sub == "add") {
    v1::AddSigningKeyRequest request;
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->AddSigningKey(request);
    head = "added a signing key: ";
  } else if (sub == "revoke") {
    v1::RevokeSigningKeyRequest request;
    request.set_key_id(args[1]);
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->RevokeSigningKey(request);
    head = absl::StrCat("revoked key ", args[1], ": ");
  } else {
    v1::RotateSigningKeysRequest request;
    request.set_count(static_cast<int32_t>(count));
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->RotateSigningKeys(request);
    head = "rotated the signing keys: ";
  }
  if (!signed_root.ok()) return signed_root.status();
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, ParseRoot(*signed_root));
  return PrintRoot(inv, flags, root, head);
}

absl::Status KeysRoot(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 1) return UsageError("keys root takes no arguments");
  MD_ASSIGN_OR_RETURN(int64_t version,
                      IntFlag(flags, "version", 1, std::numeric_limits<int64_t>::max(), 0));
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, inv.Channel());
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, FetchTrustRoot(channel, version));
  // Devices pin what this writes and trust nothing that does not chain to it, so a root that
  // does not carry its own threshold of signatures must not get that far.
  absl::StatusOr<v1::TrustRoot> root = VerifyFirstRoot(signed_root);
  if (!root.ok()) {
    absl::Status failed(
        root.status().code(),
        absl::StrCat("the server's trust root does not verify: ", root.status().message()));
    // Keeps the ErrorInfo reason (e.g. ROOT_SIGNATURE_THRESHOLD_NOT_MET) for the error line.
    root.status().ForEachPayload([&failed](absl::string_view type_url, const absl::Cord& payload) {
      failed.SetPayload(type_url, payload);
    });
    return failed;
  }
  if (version != 0 && root->version() != version) {
    return absl::DataLossError(absl::StrCat("asked for trust root version ", version,
                                            " but the server sent version ", root->version()));
  }
  std::string head;
  if (const std::string out = flags.Get("out"); !out.empty()) {
    // Public data, refreshed as roots rotate: replacing the file is the normal case.
    MD_RETURN_IF_ERROR(LocalError(WriteFileAtomically(out, signed_root.SerializeAsString(), 0644)));
    head = absl::StrCat("wrote ", out, ": ");
  }
  return PrintRoot(inv, flags, *root, head);
}

}  // namespace

void KeysFlags(Flags* f) {
  f->Add("out", "FILE", "",
         "generate: the private key (PKCS#8 PEM, mode 0600); root: the signed root (binary)");
  f->Add("threshold", "K", "",
         "add, revoke, rotate: signatures the new root requires (default: "
         "keep the current one)");
  f->Add("count", "N", "", "rotate: how many new keys, 1 to 16 (default: as many as now)");
  f->Add("version", "N", "", "root: the root version to fetch (default: the newest)");
  f->AddBool("json", "print the key or trust root as JSON");
}

absl::Status RunKeys(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands = "generate, add, revoke, rotate, root";
  if (args.empty()) return UsageError(absl::StrCat("keys needs a subcommand: ", kSubcommands));
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("keys ", sub);
  if (sub == "generate") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"out"}, kKeysFlags));
    if (args.size() != 1) return UsageError("keys generate takes no arguments");
    return KeysGenerate(inv, flags);
  }
  if (sub == "add" || sub == "revoke") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"threshold"}, kKeysFlags));
    return KeysChange(inv, flags, sub);
  }
  if (sub == "rotate") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"threshold", "count"}, kKeysFlags));
    return KeysChange(inv, flags, sub);
  }
  if (sub == "root") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"version", "out"}, kKeysFlags));
    return KeysRoot(inv, flags);
  }
  return UsageError(absl::StrCat("unknown keys subcommand \"", sub, "\"; one of ", kSubcommands));
}

}  // namespace modeldist::ctl
