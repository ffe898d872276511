// `modeldistctl root`: the trust root's offline ceremony (docs/trust.md). Every subcommand but
// `fetch` and `upload` works on files alone, so root keys never need to meet a network.
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/pkcs11_signer.h"
#include "client/modeldistctl/pkcs11_uri.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/signer.h"
#include "client/modeldistctl/trust_files.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::ctl {
namespace {

constexpr std::initializer_list<absl::string_view> kRootFlags = {"out",         "from",
                                                                 "root-key",    "root-threshold",
                                                                 "release-key", "release-threshold",
                                                                 "online-key",  "threshold",
                                                                 "role",        "key",
                                                                 "key-id",      "trusted",
                                                                 "version",     "pkcs11-module",
                                                                 "pin-file"};

// "a.pub.pem,b.pub.pem" -> {"a.pub.pem", "b.pub.pem"}: flags take one value each, so lists are
// comma-separated.
std::vector<std::string> FileList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipWhitespace());
}

// A role of the keys in the comma list of --`keys_flag`, with --`threshold_flag` (needed when
// there is more than one key: a default would choose the ceremony's security for the user).
absl::StatusOr<v1::RoleKeys> RoleFromFlags(const Flags& flags, const std::string& keys_flag,
                                           const std::string& threshold_flag) {
  v1::RoleKeys role;
  for (const std::string& path : FileList(flags.Get(keys_flag))) {
    MD_ASSIGN_OR_RETURN(Ed25519PublicKey key, ReadPublicKeyFile(path));
    *role.add_keys() = RootKeyFor(key);
  }
  if (role.keys().empty()) return UsageError(absl::StrCat("--", keys_flag, " names no key file"));
  const int64_t fallback = role.keys_size() == 1 ? 1 : 0;
  MD_ASSIGN_OR_RETURN(int64_t threshold,
                      IntFlag(flags, threshold_flag, 1, role.keys_size(), fallback));
  if (threshold == 0) {
    return UsageError(absl::StrCat("--", threshold_flag, " K is required with ", role.keys_size(),
                                   " keys in --", keys_flag, ": how many of them must sign"));
  }
  role.set_threshold(static_cast<int32_t>(threshold));
  return role;
}

// CURRENT (--from) as the start of the next root: version + 1, issued now, no signatures.
absl::StatusOr<v1::TrustRoot> NextFrom(const Flags& flags) {
  const std::string from = flags.Get("from");
  if (from.empty()) return UsageError("--from CURRENT (a root file, see `root fetch`) is required");
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot current, ReadRootFile(from));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, RootOf(from, current));
  root.set_version(root.version() + 1);
  root.mutable_issued_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  root.mutable_issued_at()->set_nanos(0);
  return root;
}

// Checks `root` as devices will and writes it unsigned to --out (never over an existing file:
// it may already carry signatures).
absl::Status WriteNext(Invocation& inv, const Flags& flags, const v1::TrustRoot& root) {
  const std::string out = flags.Get("out");
  if (out.empty()) return UsageError("--out NEXT is required");
  if (absl::Status ok = CheckRootWellFormed(root); !ok.ok()) {
    return UsageError(absl::StrCat("the new root would be malformed: ", ok.message()));
  }
  v1::SignedTrustRoot next;
  root.SerializeToString(next.mutable_root());
  MD_RETURN_IF_ERROR(WriteRootFile(out, next, /*overwrite=*/false));
  inv.out() << "wrote " << out << " (unsigned): now `modeldistctl root sign --key KEY.pem " << out
            << "` by enough holders of root keys\n";
  return absl::OkStatus();
}

// `root keygen --key pkcs11:...;object=LABEL --out NAME`: the key pair is made inside the
// token, which keeps the private key; NAME.pub.pem is written for `root init --root-key`.
absl::Status RootKeygenInToken(Invocation& inv, const Flags& flags, const std::string& name) {
  const std::string public_path = absl::StrCat(name, ".pub.pem");
  if (::access(public_path.c_str(), F_OK) == 0) {
    return LocalError(
        absl::AlreadyExistsError(absl::StrCat(public_path, " exists; refusing to overwrite it")));
  }
  MD_ASSIGN_OR_RETURN(Pkcs11Uri uri, ParsePkcs11Uri(flags.Get("key")));
  MD_ASSIGN_OR_RETURN(Pkcs11Access access,
                      Pkcs11AccessFromFlags(inv, flags, uri.module_path.value_or("")));
  MD_ASSIGN_OR_RETURN(Ed25519PublicKey key, GeneratePkcs11Key(uri, access));
  MD_RETURN_IF_ERROR(
      LocalError(WriteFileAtomically(public_path, key.ToPem(), 0644, /*overwrite=*/false)));
  inv.out() << "made the key pair in the token (its private key stays there): " << flags.Get("key")
            << "\n"
            << "wrote public key " << public_path << "\n"
            << "key id: " << key.KeyId() << "\n";
  return absl::OkStatus();
}

absl::Status RootKeygen(Invocation& inv, const Flags& flags) {
  std::string name = flags.Get("out");
  if (name.empty()) return UsageError("--out NAME is required (writes NAME.pem and NAME.pub.pem)");
  if (absl::EndsWith(name, ".pem")) name.resize(name.size() - 4);
  if (flags.IsSet("key")) {
    if (!IsPkcs11Uri(flags.Get("key"))) {
      return UsageError("keygen --key takes a pkcs11: URI (a key made in a token)");
    }
    if (absl::EndsWith(name, ".pub")) name.resize(name.size() - 4);  // --out NAME.pub.pem
    return RootKeygenInToken(inv, flags, name);
  }
  if (flags.IsSet("pkcs11-module") || flags.IsSet("pin-file")) {
    return UsageError("--pkcs11-module and --pin-file go with a pkcs11: --key");
  }
  const std::string private_path = absl::StrCat(name, ".pem");
  const std::string public_path = absl::StrCat(name, ".pub.pem");
  for (const std::string& path : {private_path, public_path}) {
    if (::access(path.c_str(), F_OK) == 0) {
      return LocalError(
          absl::AlreadyExistsError(absl::StrCat(path, " exists; refusing to overwrite a key")));
    }
  }
  MD_ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  // SavePemFile refuses to overwrite too, which closes the race with the check above.
  MD_RETURN_IF_ERROR(LocalError(key.SavePemFile(private_path)));
  MD_RETURN_IF_ERROR(LocalError(
      WriteFileAtomically(public_path, key.public_key().ToPem(), 0644, /*overwrite=*/false)));
  inv.out() << "wrote private key " << private_path << " (mode 0600; keep it offline)\n"
            << "wrote public key " << public_path << "\n"
            << "key id: " << key.public_key().KeyId() << "\n";
  return absl::OkStatus();
}

// `root pubkey --key KEY --out NAME.pub.pem`: the public half of a signing key, for a key made
// in a token by other tools (or a lost .pub.pem).
absl::Status RootPubkey(Invocation& inv, const Flags& flags) {
  const std::string out = flags.Get("out");
  if (out.empty() || !flags.IsSet("key")) {
    return UsageError("--key KEY (a private key file or a pkcs11: URI) and --out PUB are required");
  }
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Signer> key, OpenSigner(inv, flags));
  MD_RETURN_IF_ERROR(
      LocalError(WriteFileAtomically(out, key->public_key().ToPem(), 0644, /*overwrite=*/false)));
  inv.out() << "wrote public key " << out << "\nkey id: " << key->public_key().KeyId() << "\n";
  return absl::OkStatus();
}

absl::Status RootFetch(Invocation& inv, const Flags& flags) {
  const std::string out = flags.Get("out");
  if (out.empty()) return UsageError("--out FILE is required");
  MD_ASSIGN_OR_RETURN(int64_t version,
                      IntFlag(flags, "version", 1, std::numeric_limits<int64_t>::max(), 0));
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, inv.Channel());
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot newest, FetchTrustRoot(channel, version));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot wanted, RootOf("the server's root", newest));
  // Walks the chain from root 1 as a new device would, so that what the ceremony starts from
  // is what devices trust, not merely what this server says today.
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, FetchTrustRoot(channel, 1));
  absl::StatusOr<v1::TrustRoot> trusted = VerifyFirstRoot(signed_root);
  std::string first_keys;
  if (trusted.ok()) first_keys = absl::StrJoin(KeyIds(RootSigners(*trusted).keys()), ", ");
  for (int64_t v = 2; trusted.ok() && v <= wanted.version(); ++v) {
    MD_ASSIGN_OR_RETURN(signed_root, FetchTrustRoot(channel, v));
    trusted = VerifyNextRoot(*trusted, signed_root);
  }
  if (!trusted.ok()) {
    return DamageFound(
        absl::StrCat("the server's roots do not chain from root 1: ", trusted.status().message()));
  }
  MD_RETURN_IF_ERROR(WriteRootFile(out, signed_root, /*overwrite=*/true));
  inv.out() << "wrote " << out << ", verified as a chain from root 1 (signed by " << first_keys
            << ": compare with the root your devices pinned)\n";
  inv.out() << DescribeRoot(*trusted, &signed_root);
  return absl::OkStatus();
}

absl::Status RootInit(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, NextFrom(flags));
  if (!flags.IsSet("root-key")) return UsageError("--root-key PUB[,PUB...] is required");
  MD_ASSIGN_OR_RETURN(*root.mutable_root_keys(),
                      RoleFromFlags(flags, "root-key", "root-threshold"));
  root.clear_release_keys();
  if (flags.IsSet("release-key")) {
    MD_ASSIGN_OR_RETURN(*root.mutable_release_keys(),
                        RoleFromFlags(flags, "release-key", "release-threshold"));
  }
  if (flags.IsSet("online-key")) {
    MD_ASSIGN_OR_RETURN(v1::RoleKeys online, RoleFromFlags(flags, "online-key", "threshold"));
    *root.mutable_keys() = online.keys();
    root.set_threshold(online.threshold());
  } else if (flags.IsSet("threshold")) {
    return UsageError("--threshold goes with --online-key (the online keys are kept otherwise)");
  }
  return WriteNext(inv, flags, root);
}

// add-key and revoke: one key more or less in one role.
absl::Status RootChangeKey(Invocation& inv, const Flags& flags, bool add) {
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, NextFrom(flags));
  const std::string role_name = flags.Get("role");
  google::protobuf::RepeatedPtrField<v1::SigningKey>* keys = nullptr;
  int32_t threshold = 0;
  v1::RoleKeys* role = nullptr;  // unset for the online keys, which are no RoleKeys
  if (role_name == "online") {
    keys = root.mutable_keys();
    threshold = root.threshold();
  } else if (role_name == "root" || role_name == "release") {
    role = role_name == "root" ? root.mutable_root_keys() : root.mutable_release_keys();
    keys = role->mutable_keys();
    threshold = role->threshold();
  } else {
    return UsageError("--role must be root, online or release");
  }
  std::string key_id;
  if (add) {
    if (!flags.IsSet("key")) return UsageError("--key PUB (a public key file) is required");
    MD_ASSIGN_OR_RETURN(Ed25519PublicKey key, ReadPublicKeyFile(flags.Get("key")));
    key_id = key.KeyId();
    for (const v1::SigningKey& existing : *keys) {
      if (existing.key_id() == key_id) {
        return UsageError(absl::StrCat("key ", key_id, " is already a ", role_name, " key"));
      }
    }
    *keys->Add() = RootKeyFor(key);
  } else {
    if (flags.IsSet("key") == flags.IsSet("key-id")) {
      return UsageError("give the key to revoke as --key PUB or --key-id ID (one of them)");
    }
    if (flags.IsSet("key")) {
      MD_ASSIGN_OR_RETURN(Ed25519PublicKey key, ReadPublicKeyFile(flags.Get("key")));
      key_id = key.KeyId();
    } else {
      key_id = flags.Get("key-id");
    }
    auto it = std::find_if(keys->begin(), keys->end(),
                           [&](const v1::SigningKey& k) { return k.key_id() == key_id; });
    if (it == keys->end()) {
      return UsageError(
          absl::StrCat("key ", key_id, " is not a ", role_name, " key of ", flags.Get("from")));
    }
    keys->erase(it);
  }
  if (threshold == 0) threshold = 1;  // a role that this key starts
  MD_ASSIGN_OR_RETURN(int64_t wanted, IntFlag(flags, "threshold", 1, kMaxRootKeys, threshold));
  if (wanted > keys->size()) {
    return UsageError(absl::StrCat("the ", role_name, " threshold would be ", wanted, " with ",
                                   keys->size(), " keys; give --threshold K (1..", keys->size(),
                                   ")"));
  }
  if (role != nullptr) {
    role->set_threshold(static_cast<int32_t>(wanted));
  } else {
    root.set_threshold(static_cast<int32_t>(wanted));
  }
  inv.out() << (add ? "added " : "revoked ") << role_name << " key " << key_id << "; " << role_name
            << " threshold " << wanted << " of " << keys->size() << "\n";
  return WriteNext(inv, flags, root);
}

absl::Status RootSign(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("root sign needs exactly one FILE");
  if (!flags.IsSet("key")) {
    return UsageError("--key KEY.pem (a private key file or a pkcs11: URI) is required");
  }
  const std::string path = flags.positional()[1];
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, ReadRootFile(path));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, RootOf(path, signed_root));
  MD_ASSIGN_OR_RETURN(std::unique_ptr<Signer> key, OpenSigner(inv, flags));
  MD_RETURN_IF_ERROR(AddSignature(*key, kRootSignatureContext, signed_root.root(),
                                  signed_root.mutable_signatures()));
  MD_RETURN_IF_ERROR(WriteRootFile(path, signed_root, /*overwrite=*/true));
  const std::string id = key->public_key().KeyId();
  bool own = false;
  const v1::RoleKeys signers = RootSigners(root);
  for (const v1::SigningKey& k : signers.keys()) own = own || k.key_id() == id;
  inv.out() << "signed " << path << " (root version " << root.version() << ") with key " << id
            << (own ? ", a root key of this version"
                    : ", not a root key of this version (it counts if it is one of the previous)")
            << "; " << signed_root.signatures_size() << " signatures\n";
  return absl::OkStatus();
}

absl::Status RootVerify(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("root verify needs exactly one NEXT file");
  const std::string trusted_path = flags.Get("trusted");
  if (trusted_path.empty())
    return UsageError("--trusted CURRENT (the root devices trust) is required");
  const std::string next_path = flags.positional()[1];
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot trusted_file, ReadRootFile(trusted_path));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot trusted, RootOf(trusted_path, trusted_file));
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot next, ReadRootFile(next_path));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, RootOf(next_path, next));
  inv.out() << DescribeRoot(root, nullptr);
  inv.out() << "signatures:\n";
  inv.out() << DescribeRootSigners("root keys of the trusted root", trusted, next)
            << DescribeRootSigners("its own root keys", root, next);
  absl::StatusOr<v1::TrustRoot> verified = VerifyNextRoot(trusted, next);
  if (!verified.ok()) {
    return DamageFound(absl::StrCat(next_path, " is not valid yet: ", verified.status().message()));
  }
  inv.out() << "valid: devices that trust version " << trusted.version() << " accept " << next_path
            << "\n";
  return absl::OkStatus();
}

absl::Status RootShow(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("root show needs exactly one FILE");
  const std::string path = flags.positional()[1];
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, ReadRootFile(path));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, RootOf(path, signed_root));
  if (WantJson(inv, flags)) return PrintJson(inv, root);
  inv.out() << DescribeRoot(root, &signed_root);
  return absl::OkStatus();
}

absl::Status RootUpload(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 2) return UsageError("root upload needs exactly one FILE");
  const std::string path = flags.positional()[1];
  v1::UploadTrustRootRequest request;
  MD_ASSIGN_OR_RETURN(*request.mutable_root(), ReadRootFile(path));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot stored, client->UploadTrustRoot(request));
  v1::TrustRoot root;
  if (!root.ParseFromString(stored.root())) {
    return absl::DataLossError("the server's stored root does not parse as a TrustRoot");
  }
  if (WantJson(inv, flags)) return PrintJson(inv, root);
  inv.out() << "uploaded " << path << "; the server stores and serves:\n";
  inv.out() << DescribeRoot(root, &stored);
  return absl::OkStatus();
}

}  // namespace

void RootFlags(Flags* f) {
  f->Add("out", "FILE", "",
         "keygen: NAME for NAME.pem and NAME.pub.pem; pubkey: the public key file; fetch, init, "
         "add-key, revoke: the root file to write");
  f->Add("from", "CURRENT", "", "init, add-key, revoke: the current root file (root fetch)");
  f->Add("root-key", "PUB,...", "", "init: public key files of the root keys");
  f->Add("root-threshold", "K", "", "init: root keys that must sign (needed with 2+ keys)");
  f->Add("release-key", "PUB,...", "", "init: public key files of the release keys");
  f->Add("release-threshold", "K", "", "init: release keys that must sign a release");
  f->Add("online-key", "PUB,...", "",
         "init: the online keys (default: CURRENT's); the server must hold their private keys");
  f->Add("threshold", "K", "",
         "init: with --online-key, how many sign a manifest; add-key, revoke: the role's new "
         "threshold (default: kept)");
  f->Add("role", "ROLE", "", "add-key, revoke: root, online or release");
  f->Add("key", "FILE", "",
         "sign: the private key (PKCS#8 PEM, or a pkcs11:token=T;object=L URI of a key in a "
         "token); keygen: a pkcs11: URI to make the key in that token; pubkey: the private key "
         "whose public half to write; add-key, revoke: a public key file");
  AddPkcs11Flags(f);
  f->Add("key-id", "ID", "", "revoke: the key id instead of --key");
  f->Add("trusted", "CURRENT", "", "verify: the root devices trust now");
  f->Add("version", "N", "", "fetch: the root version (default: the newest)");
  f->AddBool("json", "show, upload: print the root as JSON");
}

absl::Status RunRoot(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands =
      "keygen, pubkey, fetch, init, add-key, revoke, sign, verify, show, upload";
  if (args.empty()) return UsageError(absl::StrCat("root needs a subcommand: ", kSubcommands));
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("root ", sub);
  auto only = [&](std::initializer_list<absl::string_view> allowed) {
    return OnlyFlags(flags, command, allowed, kRootFlags);
  };
  auto no_args = [&]() -> absl::Status {
    if (args.size() != 1) return UsageError(absl::StrCat(command, " takes no arguments"));
    return absl::OkStatus();
  };
  if (sub == "keygen") {
    MD_RETURN_IF_ERROR(only({"out", "key", "pkcs11-module", "pin-file"}));
    MD_RETURN_IF_ERROR(no_args());
    return RootKeygen(inv, flags);
  }
  if (sub == "pubkey") {
    MD_RETURN_IF_ERROR(only({"out", "key", "pkcs11-module", "pin-file"}));
    MD_RETURN_IF_ERROR(no_args());
    return RootPubkey(inv, flags);
  }
  if (sub == "fetch") {
    MD_RETURN_IF_ERROR(only({"out", "version"}));
    MD_RETURN_IF_ERROR(no_args());
    return RootFetch(inv, flags);
  }
  if (sub == "init") {
    MD_RETURN_IF_ERROR(only({"from", "out", "root-key", "root-threshold", "release-key",
                             "release-threshold", "online-key", "threshold"}));
    MD_RETURN_IF_ERROR(no_args());
    return RootInit(inv, flags);
  }
  if (sub == "add-key" || sub == "revoke") {
    MD_RETURN_IF_ERROR(sub == "add-key"
                           ? only({"from", "out", "role", "key", "threshold"})
                           : only({"from", "out", "role", "key", "key-id", "threshold"}));
    MD_RETURN_IF_ERROR(no_args());
    return RootChangeKey(inv, flags, sub == "add-key");
  }
  if (sub == "sign") {
    MD_RETURN_IF_ERROR(only({"key", "pkcs11-module", "pin-file"}));
    return RootSign(inv, flags);
  }
  if (sub == "verify") {
    MD_RETURN_IF_ERROR(only({"trusted"}));
    return RootVerify(inv, flags);
  }
  if (sub == "show") {
    MD_RETURN_IF_ERROR(only({}));
    return RootShow(inv, flags);
  }
  if (sub == "upload") {
    MD_RETURN_IF_ERROR(only({}));
    return RootUpload(inv, flags);
  }
  return UsageError(absl::StrCat("unknown root subcommand \"", sub, "\"; one of ", kSubcommands));
}

}  // namespace modeldist::ctl
