#include "services/key_ring.h"

#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::services {
namespace {

constexpr absl::string_view kPemSuffix = ".pem";
constexpr absl::string_view kRevokedDir = "revoked";

bool IsKeyId(absl::string_view s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t nanos = absl::ToUnixNanos(t);
  out.set_seconds(nanos / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  if (out.nanos() < 0) {
    out.set_seconds(out.seconds() - 1);
    out.set_nanos(out.nanos() + 1'000'000'000);
  }
  return out;
}

absl::Status ChainBroken(int64_t version, const absl::Status& cause) {
  return MakeError(absl::StatusCode::kDataLoss, "TRUST_ROOT_CHAIN_BROKEN",
                   absl::StrCat("stored trust root ", version,
                                " does not verify against the chain: ", ErrorReason(cause),
                                ErrorReason(cause).empty() ? "" : ": ", cause.message(),
                                " (the trust root store was altered or is corrupt)"),
                   {{"version", absl::StrCat(version)}, {"cause", ErrorReason(cause)}});
}

absl::StatusOr<v1::SignedTrustRoot> ParseSignedRoot(int64_t version, absl::string_view bytes) {
  v1::SignedTrustRoot signed_root;
  if (!signed_root.ParseFromString(std::string(bytes))) {
    return ChainBroken(version, MakeError(absl::StatusCode::kDataLoss, kReasonMalformedRoot,
                                          "not a serialized SignedTrustRoot"));
  }
  return signed_root;
}

absl::Status ThresholdOutOfRange(int threshold, int key_count) {
  return InvalidArgument("threshold", "THRESHOLD_OUT_OF_RANGE",
                         absl::StrCat("threshold ", threshold, " is not in 1..", key_count,
                                      " (the new root has ", key_count,
                                      " keys; 0 keeps the "
                                      "current threshold)"));
}

// `requested` 0 keeps `current`, lowered to `key_count`; otherwise it must be in 1..key_count.
// FAILED_PRECONDITION (ROOT_KEYS_OFFLINE) when `root`'s next root must be signed offline.
absl::Status CheckRootKeysOnline(const v1::TrustRoot& root) {
  if (!root.has_root_keys()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, "ROOT_KEYS_OFFLINE",
                   absl::StrCat("trust root ", root.version(),
                                " has root keys, so the root is signed offline: make the next "
                                "root with `modeldistctl root add-key|revoke`, sign it, and "
                                "`modeldistctl root upload` it"));
}

absl::StatusOr<int> ResolveThreshold(int requested, int current, int key_count) {
  if (requested == 0) return std::min(current, key_count);
  if (requested < 0 || requested > key_count) return ThresholdOutOfRange(requested, key_count);
  return requested;
}

}  // namespace

KeyRing::KeyRing(std::string keys_dir, TrustRootStore* store, Options options)
    : keys_dir_(std::move(keys_dir)), store_(store), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<KeyRing>> KeyRing::Open(const std::string& keys_dir,
                                                       TrustRootStore* store, Options options) {
  if (keys_dir.empty()) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEYS_DIR",
                     "the keys directory is empty");
  }
  auto ring = std::unique_ptr<KeyRing>(new KeyRing(keys_dir, store, std::move(options)));
  absl::MutexLock lock(&ring->mu_);
  MD_RETURN_IF_ERROR(ring->LoadKeys());
  MD_RETURN_IF_ERROR(ring->LoadOrCreateRoots());
  MD_RETURN_IF_ERROR(ring->CheckHoldThreshold(ring->newest_.root));
  return ring;
}

absl::Status KeyRing::LoadKeys() {
  MD_RETURN_IF_ERROR(MakeDirs(keys_dir_, 0700));
  std::vector<std::string> paths;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(keys_dir_, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Half-written files (`<name>.pem.tmp.<pid>`, see WriteFileAtomically) do not end in .pem.
    if (!absl::EndsWith(name, kPemSuffix) || name[0] == '.') continue;
    paths.push_back(it->path().string());
  }
  if (ec) return ErrnoStatus(ec.value(), absl::StrCat("listing ", keys_dir_));
  std::sort(paths.begin(), paths.end());  // deterministic: the same key loads from one file
  for (const std::string& path : paths) MD_RETURN_IF_ERROR(LoadKeyFile(path, true));
  if (!options_.signing_key_file.empty()) {
    MD_RETURN_IF_ERROR(LoadKeyFile(options_.signing_key_file, false));
  }
  return absl::OkStatus();
}

absl::Status KeyRing::LoadKeyFile(const std::string& path, bool in_keys_dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, path);
  if (!S_ISREG(st.st_mode)) {
    if (in_keys_dir) return absl::OkStatus();  // e.g. a directory named *.pem
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_KEY",
                     absl::StrCat(path, " is not a regular file"), {{"path", path}});
  }
  if ((st.st_mode & 077) != 0) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "KEY_FILE_TOO_OPEN",
                     absl::StrFormat("refusing to use private key file %s: its mode %04o lets "
                                     "group or others access it; run `chmod 600 %s`",
                                     path, st.st_mode & 07777, path),
                     {{"path", path}});
  }
  MD_ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::LoadPemFile(path));
  const std::string key_id = key.public_key().KeyId();
  const std::string name = std::filesystem::path(path).filename().string();
  const absl::string_view stem = absl::StripSuffix(name, kPemSuffix);
  if (in_keys_dir && IsKeyId(stem) && stem != key_id) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "KEY_FILE_NAME_MISMATCH",
                     absl::StrCat("private key file ", path, " holds key ", key_id,
                                  "; key files are named <key_id>.pem"),
                     {{"path", path}});
  }
  if (!in_keys_dir) explicit_key_id_ = key_id;
  if (held_.count(key_id) == 0) {
    held_.emplace(key_id, std::make_unique<HeldKey>(HeldKey{std::move(key), path, in_keys_dir}));
  }
  return absl::OkStatus();
}

absl::Status KeyRing::LoadOrCreateRoots() {
  absl::StatusOr<std::string> newest_bytes = store_->Get(0);
  if (absl::IsNotFound(newest_bytes.status())) {
    // First start: root 1 from the key the operator named, the keys on disk, or a new one.
    std::vector<std::string> ids;
    if (!explicit_key_id_.empty()) {
      ids.push_back(explicit_key_id_);
    } else {
      for (const auto& [id, held] : held_) ids.push_back(id);
      if (ids.empty()) {
        MD_ASSIGN_OR_RETURN(std::string id, GenerateKey());
        ids.push_back(id);
      }
    }
    if (ids.size() > static_cast<size_t>(kMaxRootKeys)) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "TOO_MANY_KEYS",
                       absl::StrCat(keys_dir_, " holds ", ids.size(),
                                    " keys; a trust root holds at most ", kMaxRootKeys));
    }
    v1::TrustRoot root;
    root.set_version(1);
    root.set_threshold(1);
    *root.mutable_issued_at() = ToProto(options_.now());
    std::vector<const Ed25519PrivateKey*> signers;
    for (const std::string& id : ids) {
      const Ed25519PrivateKey& key = held_.at(id)->key;
      *root.add_keys() = RootKeyFor(key.public_key());
      signers.push_back(&key);
    }
    v1::SignedTrustRoot signed_root = SignRoot(root, signers);
    MD_ASSIGN_OR_RETURN(v1::TrustRoot verified, VerifyFirstRoot(signed_root));
    MD_RETURN_IF_ERROR(store_->Append(1, signed_root.SerializeAsString(), kFirstRootActor));
    SetNewest({std::move(signed_root), std::move(verified)});
    return absl::OkStatus();
  }
  if (!newest_bytes.ok()) return newest_bytes.status();

  // Walk the whole chain, as a device that pinned root 1 would: a store that was edited
  // behind our back must not make the server sign with keys nobody vouched for.
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot newest_signed, ParseSignedRoot(0, *newest_bytes));
  v1::TrustRoot newest_parsed;
  if (!newest_parsed.ParseFromString(newest_signed.root()) || newest_parsed.version() < 1) {
    return ChainBroken(0, MakeError(absl::StatusCode::kDataLoss, kReasonMalformedRoot,
                                    "the newest root does not parse"));
  }
  const int64_t newest_version = newest_parsed.version();
  VerifiedRoot current;
  for (int64_t version = 1; version <= newest_version; ++version) {
    v1::SignedTrustRoot signed_root;
    if (version == newest_version) {
      signed_root = newest_signed;
    } else {
      absl::StatusOr<std::string> bytes = store_->Get(version);
      if (absl::IsNotFound(bytes.status())) return ChainBroken(version, bytes.status());
      if (!bytes.ok()) return bytes.status();
      MD_ASSIGN_OR_RETURN(signed_root, ParseSignedRoot(version, *bytes));
    }
    absl::StatusOr<v1::TrustRoot> verified =
        version == 1 ? VerifyFirstRoot(signed_root) : VerifyNextRoot(current.root, signed_root);
    if (!verified.ok()) return ChainBroken(version, verified.status());
    if (verified->version() != version) {
      return ChainBroken(version,
                         MakeError(absl::StatusCode::kDataLoss, kReasonRootVersionNotNext,
                                   absl::StrCat("it says it is version ", verified->version())));
    }
    current = {std::move(signed_root), *std::move(verified)};
  }
  SetNewest(std::move(current));
  return absl::OkStatus();
}

absl::Status KeyRing::CheckHoldThreshold(const v1::TrustRoot& root) const {
  std::vector<std::string> missing;
  int held = 0;
  for (const v1::SigningKey& key : root.keys()) {
    if (held_.count(key.key_id()) != 0) {
      ++held;
    } else {
      missing.push_back(key.key_id());
    }
  }
  if (held >= root.threshold()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING",
                   absl::StrCat("trust root ", root.version(), " needs ", root.threshold(),
                                " signing keys but this server holds the private keys of only ",
                                held, "; missing key ids: ", absl::StrJoin(missing, ", "),
                                " (expected as ", keys_dir_, "/<key_id>.pem, mode 0600)"),
                   {{"missing_key_ids", absl::StrJoin(missing, ",")}});
}

absl::StatusOr<std::string> KeyRing::GenerateKey() {
  MD_ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  const std::string id = key.public_key().KeyId();
  const std::string path = absl::StrCat(keys_dir_, "/", id, kPemSuffix);
  // Atomic, 0600, directory fsynced: the key is durable before any root names it.
  MD_RETURN_IF_ERROR(key.SavePemFile(path));
  held_.emplace(id, std::make_unique<HeldKey>(HeldKey{std::move(key), path, true}));
  return id;
}

void KeyRing::SetNewest(VerifiedRoot root) {
  newest_ = std::move(root);
  signers_.clear();
  for (const v1::SigningKey& key : newest_.root.keys()) {
    auto it = held_.find(key.key_id());
    if (it != held_.end()) signers_.push_back(&it->second->key);
  }
}

absl::StatusOr<KeyRing::VerifiedRoot> KeyRing::Publish(std::vector<v1::SigningKey> kept,
                                                       int new_keys, int threshold,
                                                       const std::vector<std::string>& revoked,
                                                       absl::string_view actor) {
  const int key_count = static_cast<int>(kept.size()) + new_keys;
  if (key_count > kMaxRootKeys) {
    return MakeError(absl::StatusCode::kInvalidArgument, "TOO_MANY_KEYS",
                     absl::StrCat("a trust root holds at most ", kMaxRootKeys, " keys"));
  }
  int held = new_keys;
  for (const v1::SigningKey& key : kept) held += held_.count(key.key_id()) != 0 ? 1 : 0;
  if (held < threshold) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "SIGNING_KEYS_MISSING",
                     absl::StrCat("the new root would need ", threshold,
                                  " signing keys but this server would hold only ", held));
  }

  // 1. New private keys, durably, before any root names them.
  for (int i = 0; i < new_keys; ++i) {
    MD_ASSIGN_OR_RETURN(std::string id, GenerateKey());
    kept.push_back(RootKeyFor(held_.at(id)->key.public_key()));
  }

  v1::TrustRoot next;
  next.set_version(newest_.root.version() + 1);
  next.set_threshold(threshold);
  *next.mutable_issued_at() = ToProto(options_.now());
  for (v1::SigningKey& key : kept) *next.add_keys() = std::move(key);
  // A single-role root may already require releases: changing its online keys keeps that.
  if (newest_.root.has_release_keys()) *next.mutable_release_keys() = newest_.root.release_keys();

  // Signed by every key we hold of the old root (it vouches for the new one) and of the new
  // root (it accepts the role); a key in both signs once and counts for both.
  std::vector<const Ed25519PrivateKey*> signers;
  std::set<std::string> signed_by;
  for (const v1::TrustRoot* root : {&newest_.root, &next}) {
    for (const v1::SigningKey& key : root->keys()) {
      auto it = held_.find(key.key_id());
      if (it != held_.end() && signed_by.insert(key.key_id()).second) {
        signers.push_back(&it->second->key);
      }
    }
  }
  v1::SignedTrustRoot signed_root = SignRoot(next, signers);
  absl::StatusOr<v1::TrustRoot> verified = VerifyNextRoot(newest_.root, signed_root);
  if (!verified.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "ROOT_WOULD_NOT_VERIFY",
                     absl::StrCat("refusing to publish trust root ", next.version(),
                                  ": devices would reject it: ", verified.status().message()));
  }

  // 2. The root.
  MD_RETURN_IF_ERROR(store_->Append(next.version(), signed_root.SerializeAsString(), actor));
  SetNewest({std::move(signed_root), *std::move(verified)});

  // 3. Revoked private keys out of the way. The root is committed whatever happens here; a
  // key file left behind is harmless (only keys of the newest root sign) and is reported.
  const std::string revoked_dir = absl::StrCat(keys_dir_, "/", kRevokedDir);
  for (const std::string& id : revoked) {
    auto it = held_.find(id);
    if (it == held_.end()) continue;
    if (it->second->in_keys_dir) {
      const std::string to = absl::StrCat(revoked_dir, "/", id, kPemSuffix);
      absl::Status moved = MakeDirs(revoked_dir, 0700);
      if (moved.ok() && ::rename(it->second->path.c_str(), to.c_str()) != 0) {
        moved = ErrnoStatus(errno, absl::StrCat("moving ", it->second->path, " to ", to));
      }
      if (moved.ok()) moved = FsyncDir(keys_dir_);
      if (moved.ok()) moved = FsyncDir(revoked_dir);
      if (!moved.ok()) {
        std::cerr << "modeldist-server: warning: revoked key " << id
                  << " stays in place (it no longer signs): " << moved << "\n";
      }
    }
    held_.erase(it);
  }
  return newest_;
}

std::vector<v1::Signature> KeyRing::SignManifest(absl::string_view manifest) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Signature> out;
  out.reserve(signers_.size());
  for (const Ed25519PrivateKey* key : signers_) {
    v1::Signature& sig = out.emplace_back();
    sig.set_key_id(key->public_key().KeyId());
    sig.set_signature(key->Sign(kManifestSignatureContext, manifest));
  }
  return out;
}

KeyRing::VerifiedRoot KeyRing::NewestRoot() const {
  absl::ReaderMutexLock lock(&mu_);
  return newest_;
}

absl::StatusOr<v1::SignedTrustRoot> KeyRing::Root(int64_t version) const {
  if (version < 0) {
    return InvalidArgument("version", "INVALID_VERSION",
                           absl::StrCat("version must be 0 (newest) or positive, got ", version));
  }
  int64_t newest_version;
  {
    absl::ReaderMutexLock lock(&mu_);
    newest_version = newest_.root.version();
    if (version == 0 || version == newest_version) return newest_.signed_root;
  }
  if (version > newest_version) {
    return MakeError(
        absl::StatusCode::kNotFound, "TRUST_ROOT_NOT_FOUND",
        absl::StrCat("no trust root version ", version, "; the newest is ", newest_version),
        {{"newest", absl::StrCat(newest_version)}});
  }
  // Older roots never change: read them without holding the lock.
  MD_ASSIGN_OR_RETURN(std::string bytes, store_->Get(version));
  return ParseSignedRoot(version, bytes);
}

absl::StatusOr<KeyRing::VerifiedRoot> KeyRing::AddKey(int threshold, absl::string_view actor) {
  absl::MutexLock lock(&mu_);
  const v1::TrustRoot& current = newest_.root;
  MD_RETURN_IF_ERROR(CheckRootKeysOnline(current));
  const int key_count = current.keys_size() + 1;
  MD_ASSIGN_OR_RETURN(int resolved, ResolveThreshold(threshold, current.threshold(), key_count));
  std::vector<v1::SigningKey> kept(current.keys().begin(), current.keys().end());
  return Publish(std::move(kept), 1, resolved, {}, actor);
}

absl::StatusOr<KeyRing::VerifiedRoot> KeyRing::RevokeKey(absl::string_view key_id, int threshold,
                                                         absl::string_view actor) {
  if (!IsKeyId(key_id)) {
    return InvalidArgument("key_id", "MALFORMED_KEY_ID",
                           "a key id is 16 lowercase hex digits (see GetSigningKeys)");
  }
  absl::MutexLock lock(&mu_);
  const v1::TrustRoot& current = newest_.root;
  MD_RETURN_IF_ERROR(CheckRootKeysOnline(current));
  std::vector<v1::SigningKey> kept;
  bool found = false;
  for (const v1::SigningKey& key : current.keys()) {
    if (key.key_id() == key_id) {
      found = true;
    } else {
      kept.push_back(key);
    }
  }
  if (!found) {
    return MakeError(absl::StatusCode::kNotFound, "SIGNING_KEY_NOT_FOUND",
                     absl::StrCat("key ", key_id, " is not in trust root ", current.version()),
                     {{"key_id", std::string(key_id)}});
  }
  if (kept.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "LAST_SIGNING_KEY",
                     absl::StrCat("key ", key_id,
                                  " is the only key of the trust root; add a key first, or "
                                  "rotate the keys"),
                     {{"key_id", std::string(key_id)}});
  }
  const int key_count = static_cast<int>(kept.size());
  MD_ASSIGN_OR_RETURN(int resolved, ResolveThreshold(threshold, current.threshold(), key_count));
  return Publish(std::move(kept), 0, resolved, {std::string(key_id)}, actor);
}

absl::StatusOr<KeyRing::VerifiedRoot> KeyRing::RotateKeys(int count, int threshold,
                                                          absl::string_view actor) {
  if (count < 0 || count > kMaxRotateKeys) {
    return InvalidArgument("count", "KEY_COUNT_OUT_OF_RANGE",
                           absl::StrCat("count ", count, " is not in 1..", kMaxRotateKeys,
                                        " (0 means as many as now)"));
  }
  absl::MutexLock lock(&mu_);
  const v1::TrustRoot& current = newest_.root;
  MD_RETURN_IF_ERROR(CheckRootKeysOnline(current));
  const int key_count = count == 0 ? current.keys_size() : count;
  MD_ASSIGN_OR_RETURN(int resolved, ResolveThreshold(threshold, current.threshold(), key_count));
  std::vector<std::string> revoked;
  for (const v1::SigningKey& key : current.keys()) revoked.push_back(key.key_id());
  return Publish({}, key_count, resolved, revoked, actor);
}

}  // namespace modeldist::services
