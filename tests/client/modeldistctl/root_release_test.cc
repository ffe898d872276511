// Tests of `modeldistctl root` and `modeldistctl release` on files alone (the offline side of
// docs/trust.md): key files, roots that common/trust.h's VerifyNextRoot accepts only once
// enough holders signed them, and release statements that VerifyRelease accepts and whose
// artifacts are what the server would derive from the same file (ReleasedArtifactFor).
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/trust_files.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/ed25519.h"
#include "common/release.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

int Mode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 0777);
}

class RootCeremonyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Root 1 as servers make it today: one online key signs manifests and the next root.
    absl::StatusOr<Ed25519PrivateKey> online = Ed25519PrivateKey::Generate();
    ASSERT_THAT(online, IsOk());
    ASSERT_THAT(online->SavePemFile(Path("online.pem")), IsOk());
    WriteFile(Path("online.pub.pem"), online->public_key().ToPem());
    v1::TrustRoot root;
    root.set_version(1);
    root.set_threshold(1);
    *root.add_keys() = RootKeyFor(online->public_key());
    ASSERT_THAT(WriteRootFile(Path("root-1.json"), SignRoot(root, {&*online}), false), IsOk());
    for (const char* name : {"alice", "bob", "carol", "rel"}) {
      CtlRun run = RunInProcess({"root", "keygen", "--out", Path(name)});
      ASSERT_EQ(run.code, kExitOk) << run.err;
    }
  }

  std::string Path(const std::string& name) const { return dir_.Join(name); }
  std::string Pub(const std::string& name) const { return Path(name + ".pub.pem"); }
  std::string Priv(const std::string& name) const { return Path(name + ".pem"); }

  CtlRun Sign(const std::string& key, const std::string& file) {
    return RunInProcess({"root", "sign", "--key", Priv(key), Path(file)});
  }
  CtlRun Verify(const std::string& trusted, const std::string& next) {
    return RunInProcess({"root", "verify", "--trusted", Path(trusted), Path(next)});
  }
  v1::TrustRoot Root(const std::string& file) {
    absl::StatusOr<v1::SignedTrustRoot> signed_root = ReadRootFile(Path(file));
    EXPECT_THAT(signed_root, IsOk());
    v1::TrustRoot root;
    if (signed_root.ok()) {
      EXPECT_TRUE(root.ParseFromString(signed_root->root()));
    }
    return root;
  }
  absl::StatusOr<v1::TrustRoot> VerifyNext(const std::string& trusted, const std::string& next) {
    absl::StatusOr<v1::SignedTrustRoot> signed_root = ReadRootFile(Path(next));
    if (!signed_root.ok()) return signed_root.status();
    return VerifyNextRoot(Root(trusted), *signed_root);
  }

  // Root 2: alice and bob (2 of 2) as root keys, rel as the release key, root 1's online key
  // kept; signed by alice, bob, and the online key that root 1's holders are.
  void MakeRoot2() {
    CtlRun init = RunInProcess({"root", "init", "--from", Path("root-1.json"), "--root-key",
                                absl::StrCat(Pub("alice"), ",", Pub("bob")), "--root-threshold",
                                "2", "--release-key", Pub("rel"), "--out", Path("root-2.json")});
    ASSERT_EQ(init.code, kExitOk) << init.err;
    for (const char* key : {"alice", "bob", "online"}) ASSERT_EQ(Sign(key, "root-2.json").code, 0);
    ASSERT_THAT(VerifyNext("root-1.json", "root-2.json"), IsOk());
  }

  ScratchDir dir_;
};

TEST_F(RootCeremonyTest, KeygenWritesAPrivateKeyOnlyItsOwnerReadsAndRefusesToOverwrite) {
  EXPECT_EQ(Mode(Priv("alice")), 0600);
  EXPECT_EQ(Mode(Pub("alice")), 0644);
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::LoadPemFile(Priv("alice"));
  ASSERT_THAT(key, IsOk());
  absl::StatusOr<Ed25519PublicKey> pub = ReadPublicKeyFile(Pub("alice"));
  ASSERT_THAT(pub, IsOk());
  EXPECT_EQ(pub->raw(), key->public_key().raw());

  CtlRun again = RunInProcess({"root", "keygen", "--out", Priv("alice")});  // NAME.pem too
  EXPECT_EQ(again.code, kExitLocal);
  EXPECT_THAT(again.err, HasSubstr("refusing to overwrite"));
  EXPECT_EQ(Ed25519PrivateKey::LoadPemFile(Priv("alice"))->public_key().raw(),
            key->public_key().raw());

  CtlRun fresh = RunInProcess({"root", "keygen", "--out", Path("dave")});
  ASSERT_EQ(fresh.code, kExitOk) << fresh.err;
  EXPECT_THAT(fresh.out,
              HasSubstr(absl::StrCat("key id: ", ReadPublicKeyFile(Pub("dave"))->KeyId())));
  EXPECT_THAT(fresh.out, Not(HasSubstr("PRIVATE")));
}

TEST_F(RootCeremonyTest, InitIsValidOnlyOnceTheThresholdsOfBothRootsSigned) {
  CtlRun init = RunInProcess({"root", "init", "--from", Path("root-1.json"), "--root-key",
                              absl::StrCat(Pub("alice"), ",", Pub("bob")), "--root-threshold", "2",
                              "--release-key", Pub("rel"), "--out", Path("root-2.json")});
  ASSERT_EQ(init.code, kExitOk) << init.err;
  const v1::TrustRoot root = Root("root-2.json");
  EXPECT_EQ(root.version(), 2);
  EXPECT_EQ(root.root_keys().threshold(), 2);
  EXPECT_EQ(root.root_keys().keys_size(), 2);
  EXPECT_EQ(root.release_keys().keys(0).key_id(), ReadPublicKeyFile(Pub("rel"))->KeyId());
  EXPECT_EQ(root.keys(0).key_id(), Root("root-1.json").keys(0).key_id());  // online kept

  EXPECT_FALSE(VerifyNext("root-1.json", "root-2.json").ok());
  ASSERT_EQ(Sign("alice", "root-2.json").code, kExitOk);
  ASSERT_EQ(Sign("alice", "root-2.json").code, kExitOk);  // the same key twice counts once
  EXPECT_EQ(ReadRootFile(Path("root-2.json"))->signatures_size(), 1);
  CtlRun half = Verify("root-1.json", "root-2.json");
  EXPECT_EQ(half.code, kExitDamage) << half.out;
  EXPECT_THAT(half.out, HasSubstr("1 more missing"));
  ASSERT_EQ(Sign("bob", "root-2.json").code, kExitOk);
  // Root 1 is single-role: its online key, which the server holds, must sign too.
  CtlRun online_missing = Verify("root-1.json", "root-2.json");
  EXPECT_EQ(online_missing.code, kExitDamage);
  EXPECT_THAT(online_missing.out, HasSubstr("the server adds their signatures at `root upload`"));
  EXPECT_FALSE(VerifyNext("root-1.json", "root-2.json").ok());
  ASSERT_EQ(Sign("online", "root-2.json").code, kExitOk);
  CtlRun valid = Verify("root-1.json", "root-2.json");
  EXPECT_EQ(valid.code, kExitOk) << valid.out << valid.err;
  EXPECT_THAT(valid.out, HasSubstr("valid: devices that trust version 1 accept"));
  EXPECT_THAT(VerifyNext("root-1.json", "root-2.json"), IsOk());

  CtlRun show = RunInProcess({"root", "show", Path("root-2.json")});
  ASSERT_EQ(show.code, kExitOk) << show.err;
  EXPECT_THAT(show.out, HasSubstr("trust root version 2"));
  EXPECT_THAT(show.out, HasSubstr("root keys (sign the next root, offline): 2 of 2"));
  EXPECT_THAT(show.out, HasSubstr("signatures: 3"));
}

TEST_F(RootCeremonyTest, AddKeyAndRevokeNeedTheOfflineRootKeysOnly) {
  MakeRoot2();
  CtlRun add = RunInProcess({"root", "add-key", "--from", Path("root-2.json"), "--role", "root",
                             "--key", Pub("carol"), "--out", Path("root-3.json")});
  ASSERT_EQ(add.code, kExitOk) << add.err;
  EXPECT_EQ(Root("root-3.json").root_keys().keys_size(), 3);
  EXPECT_EQ(Root("root-3.json").root_keys().threshold(), 2);  // kept
  ASSERT_EQ(Sign("alice", "root-3.json").code, kExitOk);
  EXPECT_EQ(Verify("root-2.json", "root-3.json").code, kExitDamage);
  // Root 2 has root keys: the online key's signature does not count.
  ASSERT_EQ(Sign("online", "root-3.json").code, kExitOk);
  EXPECT_EQ(Verify("root-2.json", "root-3.json").code, kExitDamage);
  ASSERT_EQ(Sign("bob", "root-3.json").code, kExitOk);
  EXPECT_EQ(Verify("root-2.json", "root-3.json").code, kExitOk);
  EXPECT_THAT(VerifyNext("root-2.json", "root-3.json"), IsOk());

  // Revoking alice: root 3's keys sign root 4; alice no longer counts for its own threshold.
  const std::string alice = ReadPublicKeyFile(Pub("alice"))->KeyId();
  CtlRun revoke = RunInProcess({"root", "revoke", "--from", Path("root-3.json"), "--role", "root",
                                "--key-id", alice, "--out", Path("root-4.json")});
  ASSERT_EQ(revoke.code, kExitOk) << revoke.err;
  EXPECT_EQ(Root("root-4.json").root_keys().keys_size(), 2);
  ASSERT_EQ(Sign("alice", "root-4.json").code, kExitOk);
  ASSERT_EQ(Sign("bob", "root-4.json").code, kExitOk);
  EXPECT_FALSE(VerifyNext("root-3.json", "root-4.json").ok()) << "its own: bob alone";
  ASSERT_EQ(Sign("carol", "root-4.json").code, kExitOk);
  EXPECT_THAT(VerifyNext("root-3.json", "root-4.json"), IsOk());

  // A threshold the remaining keys cannot meet is refused before anything is written.
  CtlRun too_few = RunInProcess({"root", "revoke", "--from", Path("root-4.json"), "--role", "root",
                                 "--key", Pub("bob"), "--out", Path("root-5.json")});
  EXPECT_EQ(too_few.code, kExitUsage);
  EXPECT_THAT(too_few.err, HasSubstr("give --threshold K (1..1)"));
  EXPECT_NE(::access(Path("root-5.json").c_str(), F_OK), 0);
}

TEST_F(RootCeremonyTest, ErrorsSayWhatToDo) {
  CtlRun no_root_key =
      RunInProcess({"root", "init", "--from", Path("root-1.json"), "--out", Path("root-2.json")});
  EXPECT_EQ(no_root_key.code, kExitUsage);
  EXPECT_THAT(no_root_key.err, HasSubstr("--root-key"));
  CtlRun no_threshold =
      RunInProcess({"root", "init", "--from", Path("root-1.json"), "--root-key",
                    absl::StrCat(Pub("alice"), ",", Pub("bob")), "--out", Path("root-2.json")});
  EXPECT_EQ(no_threshold.code, kExitUsage);
  EXPECT_THAT(no_threshold.err, HasSubstr("--root-threshold K is required with 2 keys"));
  CtlRun private_as_public =
      RunInProcess({"root", "init", "--from", Path("root-1.json"), "--root-key", Priv("alice"),
                    "--out", Path("root-2.json")});
  EXPECT_EQ(private_as_public.code, kExitLocal);
  EXPECT_THAT(private_as_public.err, HasSubstr("is a private key; give its public key"));
  CtlRun public_as_private =
      RunInProcess({"root", "sign", "--key", Pub("alice"), Path("root-1.json")});
  EXPECT_EQ(public_as_private.code, kExitLocal);
  EXPECT_THAT(public_as_private.err, HasSubstr("expected a PKCS#8 Ed25519 private key"));
  // A key in a token (pkcs11_signer_test.cc) needs its module named.
  CtlRun pkcs11 = RunInProcess(
      {"root", "sign", "--key", "pkcs11:token=offline;object=root", Path("root-1.json")});
  EXPECT_EQ(pkcs11.code, kExitUsage);
  EXPECT_THAT(pkcs11.err, HasSubstr("--pkcs11-module SO or $MODELDIST_PKCS11_MODULE"));
  CtlRun not_a_root = RunInProcess({"root", "show", Pub("alice")});
  EXPECT_EQ(not_a_root.code, kExitLocal);
  EXPECT_THAT(not_a_root.err, HasSubstr("is not a signed trust root"));
  // The online key may not also hold an offline role.
  CtlRun shared =
      RunInProcess({"root", "add-key", "--from", Path("root-1.json"), "--role", "root", "--key",
                    Path("online.pub.pem"), "--out", Path("root-2.json")});
  EXPECT_EQ(shared.code, kExitUsage);
  EXPECT_THAT(shared.err, HasSubstr("is an online key and also a root key"));
  EXPECT_NE(::access(Path("root-2.json").c_str(), F_OK), 0);
  CtlRun wrong_flag = RunInProcess({"root", "show", "--key", Priv("alice"), Path("root-1.json")});
  EXPECT_EQ(wrong_flag.code, kExitUsage);
}

// The ManifestArtifact the server builds for `contents`: its chain over the store's chunks.
v1::ManifestArtifact ServerArtifact(const std::string& contents, v1::Platform platform,
                                    v1::Arch arch, v1::Format format) {
  ChunkChainBuilder chain(storage::kChunkDigestBytes);
  chain.Update(contents);
  v1::ManifestArtifact artifact;
  artifact.set_digest(FormatDigest(chain.DigestHex()));
  artifact.set_size_bytes(static_cast<int64_t>(contents.size()));
  artifact.set_platform(platform);
  artifact.set_arch(arch);
  artifact.set_format(format);
  artifact.set_chunk_size(storage::kChunkDigestBytes);
  const std::string entries = chain.Chain();
  for (size_t at = 0; at < entries.size(); at += storage::kChainEntryBytes) {
    artifact.add_chunk_chain(entries.substr(at, storage::kChainEntryBytes));
  }
  return artifact;
}

TEST_F(RootCeremonyTest, ReleaseSignedByTheCliVerifiesAndListsWhatTheServerBuilds) {
  MakeRoot2();
  // Two chunks and a bit, so the chain has entries of both kinds.
  const std::string gguf = modeldist::testing::RandomBytes(2 * storage::kChunkDigestBytes + 99, 7);
  const std::string zip = modeldist::testing::RandomBytes(1000, 8);
  WriteFile(Path("model.gguf"), gguf);
  WriteFile(Path("model.zip"), zip);
  const std::string version = "models/llama/versions/1.0";
  CtlRun sign =
      RunInProcess({"release", "sign", "--key", Priv("rel"), "--version", version, "--out",
                    Path("rel.json"), absl::StrCat("macos/x86_64/gguf=", Path("model.gguf")),
                    absl::StrCat("macos/arm64/coreml-zip=", Path("model.zip"))});
  ASSERT_EQ(sign.code, kExitOk) << sign.err;
  absl::StatusOr<v1::SignedRelease> signed_release = ReadReleaseFile(Path("rel.json"));
  ASSERT_THAT(signed_release, IsOk());
  absl::StatusOr<v1::Release> release =
      VerifyRelease(Root("root-2.json"), *signed_release, version);
  ASSERT_THAT(release, IsOk());
  ASSERT_EQ(release->artifacts_size(), 2);
  const v1::ReleasedArtifact want_gguf = ReleasedArtifactFor(
      ServerArtifact(gguf, v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF));
  EXPECT_EQ(release->artifacts(0).SerializeAsString(), want_gguf.SerializeAsString())
      << release->artifacts(0).DebugString() << want_gguf.DebugString();
  EXPECT_THAT(CheckArtifactReleased(*release, want_gguf), IsOk());
  EXPECT_THAT(CheckArtifactReleased(
                  *release, ReleasedArtifactFor(ServerArtifact(
                                zip, v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP))),
              IsOk());
  // Another file under the same target is not released.
  EXPECT_FALSE(CheckArtifactReleased(*release, ReleasedArtifactFor(ServerArtifact(
                                                   zip + "x", v1::PLATFORM_MACOS, v1::ARCH_ARM64,
                                                   v1::FORMAT_COREML_ZIP)))
                   .ok());

  CtlRun valid =
      RunInProcess({"release", "show", "--trusted", Path("root-2.json"), Path("rel.json")});
  EXPECT_EQ(valid.code, kExitOk) << valid.err;
  EXPECT_THAT(valid.out, HasSubstr(want_gguf.digest()));
  EXPECT_THAT(valid.out, HasSubstr("valid: enough release keys of trust root 2"));
  // A root key is no release key: a statement it alone signs does not verify.
  CtlRun by_alice = RunInProcess({"release", "sign", "--key", Priv("alice"), "--version", version,
                                  "--out", Path("alice.json"), "--platform", "macos", "--arch",
                                  "arm64", "--format", "coreml-zip", Path("model.zip")});
  ASSERT_EQ(by_alice.code, kExitOk) << by_alice.err;
  CtlRun invalid =
      RunInProcess({"release", "show", "--trusted", Path("root-2.json"), Path("alice.json")});
  EXPECT_EQ(invalid.code, kExitDamage);
  EXPECT_THAT(invalid.err, HasSubstr("needs 1"));
  ASSERT_EQ(RunInProcess({"release", "sign", "--key", Priv("rel"), Path("alice.json")}).code, 0);
  EXPECT_EQ(ReadReleaseFile(Path("alice.json"))->signatures_size(), 2);
  EXPECT_THAT(VerifyRelease(Root("root-2.json"), *ReadReleaseFile(Path("alice.json")), version),
              IsOk());

  CtlRun exists = RunInProcess({"release", "sign", "--key", Priv("rel"), "--version", version,
                                "--out", Path("rel.json"), "--platform", "macos", "--arch", "arm64",
                                "--format", "coreml-zip", Path("model.zip")});
  EXPECT_EQ(exists.code, kExitLocal);
  EXPECT_THAT(exists.err, HasSubstr("to add a signature to it run"));
  CtlRun missing_out = RunInProcess({"release", "sign", "--key", Priv("rel"), "--version", version,
                                     absl::StrCat("macos/arm64/coreml-zip=", Path("model.zip"))});
  EXPECT_EQ(missing_out.code, kExitUsage);
  EXPECT_THAT(missing_out.err, HasSubstr("--out REL"));
  // publish refuses a statement of another version before it reads or sends anything.
  CtlRun other = RunInProcess(
      {"--server", "127.0.0.1:1", "publish", "--model", "llama", "--version", "2.0", "--tier", "t",
       "--release", Path("rel.json"), absl::StrCat("macos/arm64/coreml-zip=", Path("model.zip"))},
      {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(other.code, kExitUsage);
  EXPECT_THAT(other.err, HasSubstr("releases models/llama/versions/1.0, not "
                                   "models/llama/versions/2.0"));
}

}  // namespace
}  // namespace modeldist::ctl
