#include "client/modeldistctl/trust_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/release.h"
#include "common/status.h"
#include "common/trust.h"
#include "google/protobuf/util/json_util.h"
#include "storage/blob_record.h"

namespace modeldist::ctl {
namespace {

// Read size for hashing a release's files: large enough that syscalls cost nothing next to
// SHA-256, small enough to stay in cache.
constexpr size_t kReadBlock = 1 << 20;

absl::Status Local(absl::StatusCode code, absl::string_view message) {
  return LocalError(absl::Status(code, message));
}

// `what` ("a signed root") from JSON or binary into `message`.
absl::Status ReadMessageFile(const std::string& path, absl::string_view what,
                             google::protobuf::Message* message) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) {
    return Local(contents.status().code(), absl::StrCat("cannot read ", what, " from ", path, ": ",
                                                        contents.status().message()));
  }
  if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(*contents), "{")) {
    auto parsed = google::protobuf::util::JsonStringToMessage(*contents, message);
    if (parsed.ok()) return absl::OkStatus();
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, " is not ", what, " (JSON): ", parsed.ToString()));
  }
  if (message->ParseFromString(*contents)) return absl::OkStatus();
  return Local(absl::StatusCode::kInvalidArgument,
               absl::StrCat(path, " is not ", what, " (neither its JSON nor its binary form)"));
}

absl::Status WriteMessageFile(const std::string& path, const google::protobuf::Message& message,
                              bool overwrite) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;  // People compare these files before they sign them.
  options.preserve_proto_field_names = true;
  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!printed.ok()) return Local(absl::StatusCode::kInternal, printed.ToString());
  absl::Status written = WriteFileAtomically(path, json, 0644, overwrite);
  if (written.code() == absl::StatusCode::kAlreadyExists) {
    return Local(written.code(), absl::StrCat(path, " exists; refusing to overwrite it"));
  }
  if (!written.ok()) {
    return Local(written.code(), absl::StrCat("cannot write ", path, ": ", written.message()));
  }
  return absl::OkStatus();
}

std::string DescribeRole(absl::string_view name, int threshold,
                         const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys) {
  return absl::StrCat("  ", name, ": ", threshold, " of ", keys.size(), ": ",
                      absl::StrJoin(KeyIds(keys), " "), "\n");
}

}  // namespace

std::vector<std::string> KeyIds(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys) {
  std::vector<std::string> ids;
  for (const v1::SigningKey& key : keys) ids.push_back(key.key_id());
  return ids;
}

std::string DescribeRoot(const v1::TrustRoot& root, const v1::SignedTrustRoot* signed_root) {
  std::string out = absl::StrCat("trust root version ", root.version(), ", issued ",
                                 FormatTime(root.issued_at()), "\n");
  absl::StrAppend(&out, DescribeRole("online keys (sign manifests, on the server)",
                                     root.threshold(), root.keys()));
  if (root.has_root_keys()) {
    absl::StrAppend(&out, DescribeRole("root keys (sign the next root, offline)",
                                       root.root_keys().threshold(), root.root_keys().keys()));
  } else {
    absl::StrAppend(&out,
                    "  root keys: none (single-role root: the online keys sign the next root)\n");
  }
  if (root.has_release_keys()) {
    absl::StrAppend(
        &out, DescribeRole("release keys (sign releases, offline)", root.release_keys().threshold(),
                           root.release_keys().keys()));
  } else {
    absl::StrAppend(&out, "  release keys: none (devices need no release statement)\n");
  }
  if (signed_root == nullptr) return out;
  const v1::RoleKeys signers = RootSigners(root);
  const std::set<std::string> own = ValidSigners(signers.keys(), kRootSignatureContext,
                                                 signed_root->root(), signed_root->signatures());
  absl::StrAppend(&out, "  signatures: ", signed_root->signatures_size(), "\n");
  for (const v1::Signature& sig : signed_root->signatures()) {
    absl::StrAppend(&out, "    ", sig.key_id(),
                    own.count(sig.key_id()) != 0
                        ? " (valid, a signer of this root)\n"
                        : " (not a signer of this root: a key of the previous one, checked by "
                          "`root verify`)\n");
  }
  return out;
}

std::string DescribeRootSigners(absl::string_view whose, const v1::TrustRoot& signers,
                                const v1::SignedTrustRoot& next) {
  const v1::RoleKeys role = RootSigners(signers);
  const std::set<std::string> valid =
      ValidSigners(role.keys(), kRootSignatureContext, next.root(), next.signatures());
  const int missing = std::max<int>(0, role.threshold() - static_cast<int>(valid.size()));
  std::string out = absl::StrCat("  ", whose, " (version ", signers.version(), "), ",
                                 role.threshold(), " of ", role.keys_size(), " needed: signed by ",
                                 valid.empty() ? "none" : absl::StrJoin(valid, ", "));
  if (missing == 0) {
    absl::StrAppend(&out, ": enough\n");
  } else if (!signers.has_root_keys()) {
    absl::StrAppend(&out, "; ", missing,
                    " missing: they are online keys, and the server adds their signatures at "
                    "`root upload`\n");
  } else {
    absl::StrAppend(&out, "; ", missing, " more missing\n");
  }
  return out;
}

absl::StatusOr<v1::SignedTrustRoot> ReadRootFile(const std::string& path) {
  v1::SignedTrustRoot signed_root;
  MD_RETURN_IF_ERROR(ReadMessageFile(path, "a signed trust root", &signed_root));
  if (signed_root.root().empty()) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, " holds no trust root (its `root` is empty)"));
  }
  return signed_root;
}

absl::Status WriteRootFile(const std::string& path, const v1::SignedTrustRoot& signed_root,
                           bool overwrite) {
  return WriteMessageFile(path, signed_root, overwrite);
}

absl::StatusOr<v1::TrustRoot> RootOf(const std::string& path,
                                     const v1::SignedTrustRoot& signed_root) {
  v1::TrustRoot root;
  if (!root.ParseFromString(signed_root.root())) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, ": its signed bytes are not a TrustRoot"));
  }
  return root;
}

absl::StatusOr<v1::SignedRelease> ReadReleaseFile(const std::string& path) {
  v1::SignedRelease signed_release;
  MD_RETURN_IF_ERROR(ReadMessageFile(path, "a release statement", &signed_release));
  if (signed_release.release().empty()) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, " holds no release (its `release` is empty)"));
  }
  return signed_release;
}

absl::Status WriteReleaseFile(const std::string& path, const v1::SignedRelease& signed_release,
                              bool overwrite) {
  return WriteMessageFile(path, signed_release, overwrite);
}

absl::StatusOr<v1::Release> ReleaseOf(const std::string& path,
                                      const v1::SignedRelease& signed_release) {
  v1::Release release;
  if (!release.ParseFromString(signed_release.release())) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, ": its signed bytes are not a Release"));
  }
  return release;
}

absl::StatusOr<Ed25519PublicKey> ReadPublicKeyFile(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) {
    return Local(pem.status().code(),
                 absl::StrCat("cannot read public key ", path, ": ", pem.status().message()));
  }
  if (absl::StrContains(*pem, "PRIVATE KEY")) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path,
                              " is a private key; give its public key (NAME.pub.pem from "
                              "`root keygen`): private keys stay with their holders"));
  }
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromPem(*pem);
  if (!key.ok()) {
    return Local(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat(path, " is not an Ed25519 public key (PEM): ", key.status().message()));
  }
  return key;
}

absl::Status AddSignature(const Signer& signer, absl::string_view context,
                          absl::string_view message,
                          google::protobuf::RepeatedPtrField<v1::Signature>* signatures) {
  MD_ASSIGN_OR_RETURN(std::string signature, signer.Sign(context, message));
  const std::string key_id = signer.public_key().KeyId();
  v1::Signature* sig = nullptr;
  for (v1::Signature& existing : *signatures) {
    if (existing.key_id() == key_id) sig = &existing;
  }
  if (sig == nullptr) sig = signatures->Add();
  sig->set_key_id(key_id);
  sig->set_signature(std::move(signature));
  return absl::OkStatus();
}

std::set<std::string> ValidSigners(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys,
                                   absl::string_view context, absl::string_view message,
                                   const google::protobuf::RepeatedPtrField<v1::Signature>& sigs) {
  std::map<std::string, const v1::Signature*> first;
  for (const v1::Signature& sig : sigs) first.emplace(sig.key_id(), &sig);
  std::set<std::string> valid;
  for (const v1::SigningKey& key : keys) {
    auto it = first.find(key.key_id());
    if (it == first.end()) continue;
    absl::StatusOr<Ed25519PublicKey> public_key = Ed25519PublicKey::FromRaw(key.public_key());
    if (public_key.ok() && public_key->KeyId() == key.key_id() &&
        public_key->Verify(context, message, it->second->signature())) {
      valid.insert(key.key_id());
    }
  }
  return valid;
}

absl::StatusOr<v1::ReleasedArtifact> ReleasedArtifactOfFile(const std::string& path,
                                                            v1::Platform platform, v1::Arch arch,
                                                            v1::Format format) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return LocalError(ErrnoStatus(errno, absl::StrCat("open ", path)));
  struct stat before;
  if (::fstat(fd.get(), &before) != 0) {
    return LocalError(ErrnoStatus(errno, absl::StrCat("stat ", path)));
  }
  if (!S_ISREG(before.st_mode) || before.st_size == 0) {
    return Local(absl::StatusCode::kInvalidArgument,
                 absl::StrCat(path, " is not a regular file of at least one byte"));
  }
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  // One read of the file feeds the chain, which yields the digest too (the last entry).
  ChunkChainBuilder chain(storage::kChunkDigestBytes);
  std::string buffer(kReadBlock, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = ReadAll(fd.get(), buffer.data(), buffer.size(), path);
    if (!n.ok()) return LocalError(n.status());
    if (*n == 0) break;
    chain.Update(absl::string_view(buffer.data(), *n));
  }
  struct stat after;
  if (::fstat(fd.get(), &after) != 0) {
    return LocalError(ErrnoStatus(errno, absl::StrCat("stat ", path)));
  }
  if (chain.bytes() != before.st_size || after.st_size != before.st_size ||
      after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
      after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
    return Local(absl::StatusCode::kAborted,
                 absl::StrCat(path, " changed while it was read; sign it when nothing writes it"));
  }
  return ReleasedArtifactOf(chain, storage::kChunkDigestBytes, platform, arch, format);
}

}  // namespace modeldist::ctl
