// Tests of keys in a PKCS#11 token (client/modeldistctl/pkcs11_signer.h, signer.h) against a
// real one: SoftHSM 2 (package softhsm2), with its token in a scratch directory. `root keygen`
// makes the key pair inside the token; `root sign` and `release sign` sign with it through a
// pkcs11: URI; common/trust.h's VerifyNextRoot and common/release.h's VerifyRelease accept
// what they write, under the key id of the public key file. The URI parser needs no token.
#include "client/modeldistctl/pkcs11_signer.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/pkcs11_uri.h"
#include "client/modeldistctl/trust_files.h"
#include "common/ed25519.h"
#include "common/release.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

#if defined(__SANITIZE_ADDRESS__)
// SoftHSM 2.6.1 leaks an ASN1 string in every C_SignInit of an EdDSA key (its OSSL EdDSA
// code, inside libcrypto). Not ours to fix: suppress leaks whose stack passes through its
// module. Full stacks on malloc (libcrypto has no frame pointers) let the suppression see it.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
extern "C" const char* __lsan_default_suppressions() { return "leak:libsofthsm2.so\n"; }
#endif

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::HasReason;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTokenLabel[] = "modeldist-test";
constexpr char kPin[] = "4711-user";

// Where Debian's softhsm2 puts its module (the first is a symlink to the second).
std::string SoftHsmModule() {
  for (const char* path :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
    struct stat st;
    if (::stat(path, &st) == 0) return path;
  }
  return "";
}

std::string Uri(const std::string& object) {
  return absl::StrCat("pkcs11:token=", kTokenLabel, ";object=", object);
}

class Pkcs11Test : public ::testing::Test {
 protected:
  void SetUp() override {
    module_ = SoftHsmModule();
    if (module_.empty()) GTEST_SKIP() << "softhsm2 is not installed (tools/install-deps.sh)";
    // SoftHSM reads its configuration at C_Initialize, in this process and in softhsm2-util.
    ASSERT_EQ(::mkdir(Path("tokens").c_str(), 0700), 0);
    WriteFile(Path("softhsm2.conf"),
              absl::StrCat("directories.tokendir = ", Path("tokens"),
                           "\nobjectstore.backend = file\nlog.level = ERROR\n"));
    ASSERT_EQ(::setenv("SOFTHSM2_CONF", Path("softhsm2.conf").c_str(), 1), 0);
    modeldist::testing::ChildProcess init;
    modeldist::testing::SpawnOptions options;
    options.stdout_path = Path("softhsm2-util.log");
    ASSERT_TRUE(init.Start({"/usr/bin/softhsm2-util", "--init-token", "--free", "--label",
                            kTokenLabel, "--pin", kPin, "--so-pin", "so-pin-5678"},
                           options));
    std::optional<int> status = init.Wait(std::chrono::seconds(30));
    ASSERT_TRUE(status.has_value() && *status == 0) << "softhsm2-util --init-token failed";
    WriteFile(Path("pin"), absl::StrCat(kPin, "\n"));
  }

  std::string Path(const std::string& name) const { return dir_.Join(name); }
  // The environment of a run: the module, and the PIN unless `pin` is empty.
  std::map<std::string, std::string> Env(const std::string& pin = kPin) const {
    std::map<std::string, std::string> env = {{"MODELDIST_PKCS11_MODULE", module_}};
    if (!pin.empty()) env["MODELDIST_PKCS11_PIN"] = pin;
    return env;
  }
  Pkcs11Access Access(const std::string& pin = kPin) const { return {module_, pin}; }

  // `root keygen` in the token; returns the public key it wrote.
  Ed25519PublicKey Keygen(const std::string& object) {
    CtlRun run = RunInProcess(
        {"root", "keygen", "--key", Uri(object), "--pin-file", Path("pin"), "--out", Path(object)},
        Env(""));
    EXPECT_EQ(run.code, kExitOk) << run.err;
    absl::StatusOr<Ed25519PublicKey> key = ReadPublicKeyFile(Path(object + ".pub.pem"));
    EXPECT_THAT(key, IsOk());
    EXPECT_THAT(run.out, HasSubstr(absl::StrCat("key id: ", key.ok() ? key->KeyId() : "?")));
    return *key;
  }

  // An unsigned root, for commands that fail before they sign.
  void WriteUnsignedRoot(const std::string& path) {
    v1::TrustRoot root;
    root.set_version(2);
    v1::SignedTrustRoot unsigned_root;
    root.SerializeToString(unsigned_root.mutable_root());
    ASSERT_THAT(WriteRootFile(path, unsigned_root, false), IsOk());
  }

  std::string module_;
  ScratchDir dir_;
};

TEST_F(Pkcs11Test, RootSignedInTheTokenVerifiesUnderThePublicKeysId) {
  const Ed25519PublicKey alice = Keygen("alice");
  // Root 1 as servers make it: one online key (a file) signs manifests and the next root.
  absl::StatusOr<Ed25519PrivateKey> online = Ed25519PrivateKey::Generate();
  ASSERT_THAT(online, IsOk());
  ASSERT_THAT(online->SavePemFile(Path("online.pem")), IsOk());
  v1::TrustRoot root1;
  root1.set_version(1);
  root1.set_threshold(1);
  *root1.add_keys() = RootKeyFor(online->public_key());
  ASSERT_THAT(WriteRootFile(Path("root-1.json"), SignRoot(root1, {&*online}), false), IsOk());

  CtlRun init = RunInProcess({"root", "init", "--from", Path("root-1.json"), "--root-key",
                              Path("alice.pub.pem"), "--out", Path("root-2.json")});
  ASSERT_EQ(init.code, kExitOk) << init.err;
  ASSERT_EQ(RunInProcess({"root", "sign", "--key", Path("online.pem"), Path("root-2.json")}).code,
            kExitOk);
  // The previous root's key alone is not enough: the new root keys must sign too.
  EXPECT_THAT(VerifyNextRoot(root1, *ReadRootFile(Path("root-2.json"))), Not(IsOk()));

  CtlRun sign = RunInProcess({"root", "sign", "--key", Uri("alice"), Path("root-2.json")}, Env());
  ASSERT_EQ(sign.code, kExitOk) << sign.err;
  EXPECT_THAT(sign.out, HasSubstr(absl::StrCat("with key ", alice.KeyId(), ", a root key")));
  EXPECT_THAT(sign.out + sign.err, Not(HasSubstr(kPin)));
  absl::StatusOr<v1::SignedTrustRoot> root2 = ReadRootFile(Path("root-2.json"));
  ASSERT_THAT(root2, IsOk());
  ASSERT_EQ(root2->signatures_size(), 2);
  EXPECT_EQ(root2->signatures(1).key_id(), alice.KeyId());
  EXPECT_TRUE(alice.Verify(kRootSignatureContext, root2->root(), root2->signatures(1).signature()));
  EXPECT_THAT(VerifyNextRoot(root1, *root2), IsOk());

  // Signing again (with the PIN from a file this time) replaces the signature, adds none.
  CtlRun again = RunInProcess({"root", "sign", "--key", Uri("alice"), "--pkcs11-module", module_,
                               "--pin-file", Path("pin"), Path("root-2.json")});
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_EQ(ReadRootFile(Path("root-2.json"))->signatures_size(), 2);
}

TEST_F(Pkcs11Test, ReleaseSignedInTheTokenVerifies) {
  const Ed25519PublicKey rel = Keygen("release-1");
  const Ed25519PublicKey other = Keygen("release-2");
  v1::TrustRoot root;
  root.set_version(2);
  root.mutable_release_keys()->set_threshold(2);
  *root.mutable_release_keys()->add_keys() = RootKeyFor(rel);
  *root.mutable_release_keys()->add_keys() = RootKeyFor(other);
  WriteFile(Path("model.gguf"), modeldist::testing::RandomBytes(100000, 3));
  const std::string version = "models/llama/versions/1.0";
  CtlRun sign =
      RunInProcess({"release", "sign", "--key", Uri("release-1"), "--version", version, "--out",
                    Path("rel.json"), absl::StrCat("macos/arm64/gguf=", Path("model.gguf"))},
                   Env());
  ASSERT_EQ(sign.code, kExitOk) << sign.err;
  EXPECT_THAT(VerifyRelease(root, *ReadReleaseFile(Path("rel.json")), version),
              HasReason(absl::StatusCode::kPermissionDenied,
                        std::string(kReasonReleaseSignatureThresholdNotMet)));
  // The second holder's key is found by its label alone, in whichever token holds it.
  CtlRun second = RunInProcess(
      {"release", "sign", "--key", "pkcs11:object=release-2", Path("rel.json")}, Env());
  ASSERT_EQ(second.code, kExitOk) << second.err;
  absl::StatusOr<v1::SignedRelease> signed_release = ReadReleaseFile(Path("rel.json"));
  ASSERT_THAT(signed_release, IsOk());
  EXPECT_EQ(signed_release->signatures(0).key_id(), rel.KeyId());
  EXPECT_EQ(signed_release->signatures(1).key_id(), other.KeyId());
  EXPECT_THAT(VerifyRelease(root, *signed_release, version), IsOk());
}

TEST_F(Pkcs11Test, KeyIdAndSignaturesComeFromTheTokensKey) {
  const Ed25519PublicKey alice = Keygen("alice");
  absl::StatusOr<Pkcs11Uri> uri = ParsePkcs11Uri(Uri("alice"));
  ASSERT_THAT(uri, IsOk());
  absl::StatusOr<std::unique_ptr<Signer>> signer = OpenPkcs11Signer(*uri, Access());
  ASSERT_THAT(signer, IsOk());
  EXPECT_EQ((*signer)->public_key().raw(), alice.raw());
  EXPECT_EQ((*signer)->public_key().KeyId(), alice.KeyId());
  absl::StatusOr<std::string> signature = (*signer)->Sign("ctx", "message");
  ASSERT_THAT(signature, IsOk());
  EXPECT_TRUE(alice.Verify("ctx", "message", *signature));
  EXPECT_FALSE(alice.Verify("other-ctx", "message", *signature));
}

TEST_F(Pkcs11Test, PubkeyWritesThePublicHalfOfAKeyMadeByOtherTools) {
  // As pkcs11-tool would: a key pair in the token, and no .pub.pem.
  const Pkcs11Uri uri = *ParsePkcs11Uri(Uri("carol") + ";id=%c0%01");
  absl::StatusOr<Ed25519PublicKey> made = GeneratePkcs11Key(uri, Access());
  ASSERT_THAT(made, IsOk());
  CtlRun run = RunInProcess(
      {"root", "pubkey", "--key", absl::StrCat("pkcs11:id=%C0%01"), "--out", Path("carol.pub.pem")},
      Env());
  ASSERT_EQ(run.code, kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("key id: ", made->KeyId())));
  absl::StatusOr<Ed25519PublicKey> written = ReadPublicKeyFile(Path("carol.pub.pem"));
  ASSERT_THAT(written, IsOk());
  EXPECT_EQ(written->raw(), made->raw());
  // A key file works the same way.
  absl::StatusOr<Ed25519PrivateKey> file_key = Ed25519PrivateKey::Generate();
  ASSERT_THAT(file_key, IsOk());
  ASSERT_THAT(file_key->SavePemFile(Path("dave.pem")), IsOk());
  ASSERT_EQ(
      RunInProcess({"root", "pubkey", "--key", Path("dave.pem"), "--out", Path("dave.pub")}).code,
      kExitOk);
  EXPECT_EQ(ReadPublicKeyFile(Path("dave.pub"))->raw(), file_key->public_key().raw());
}

TEST_F(Pkcs11Test, AWrongPinFailsWithItsReasonAndIsNotShown) {
  Keygen("alice");
  WriteFile(Path("wrong-pin"), "0000-wrong\n");
  ASSERT_NO_FATAL_FAILURE(WriteUnsignedRoot(Path("r.json")));
  CtlRun run = RunInProcess(
      {"root", "sign", "--key", Uri("alice"), "--pin-file", Path("wrong-pin"), Path("r.json")},
      Env(""));
  EXPECT_EQ(run.code, kExitLocal);
  EXPECT_THAT(run.err, HasSubstr("CKR_PIN_INCORRECT"));
  EXPECT_THAT(run.err, Not(HasSubstr("0000-wrong")));
  EXPECT_EQ(ReadRootFile(Path("r.json"))->signatures_size(), 0);

  const Pkcs11Uri uri = *ParsePkcs11Uri(Uri("alice"));
  EXPECT_THAT(OpenPkcs11Signer(uri, Access("0000-wrong")).status(),
              HasReason(absl::StatusCode::kPermissionDenied, "PKCS11_LOGIN_FAILED"));
  // No PIN at all: the token needs one.
  absl::Status no_pin = OpenPkcs11Signer(uri, Access("")).status();
  EXPECT_THAT(no_pin, HasReason(absl::StatusCode::kPermissionDenied, "PKCS11_LOGIN_FAILED"));
  EXPECT_THAT(no_pin.message(), HasSubstr("--pin-file"));
}

TEST_F(Pkcs11Test, MissingKeysTokensAndModulesFailWithTheirReasons) {
  Keygen("alice");
  auto open = [&](const std::string& text, const Pkcs11Access& access) {
    absl::StatusOr<Pkcs11Uri> uri = ParsePkcs11Uri(text);
    EXPECT_THAT(uri, IsOk());
    return uri.ok() ? OpenPkcs11Signer(*uri, access).status() : uri.status();
  };
  EXPECT_THAT(open(Uri("bob"), Access()),
              HasReason(absl::StatusCode::kNotFound, "PKCS11_KEY_NOT_FOUND"));
  EXPECT_THAT(open(Uri("alice") + ";id=%99", Access()),
              HasReason(absl::StatusCode::kNotFound, "PKCS11_KEY_NOT_FOUND"));
  EXPECT_THAT(open("pkcs11:token=no-such-token;object=alice", Access()),
              HasReason(absl::StatusCode::kNotFound, "PKCS11_TOKEN_NOT_FOUND"));
  EXPECT_THAT(open(Uri("alice"), {Path("no-module.so"), kPin}),
              HasReason(absl::StatusCode::kFailedPrecondition, "PKCS11_MODULE_UNLOADABLE"));
  WriteFile(Path("not-a-module.so"), "text");
  EXPECT_THAT(open(Uri("alice"), {Path("not-a-module.so"), kPin}),
              HasReason(absl::StatusCode::kFailedPrecondition, "PKCS11_MODULE_UNLOADABLE"));

  ASSERT_NO_FATAL_FAILURE(WriteUnsignedRoot(Path("r.json")));
  CtlRun missing = RunInProcess({"root", "sign", "--key", Uri("bob"), Path("r.json")}, Env());
  EXPECT_EQ(missing.code, kExitLocal);
  EXPECT_THAT(missing.err, HasSubstr("no Ed25519 private key \"bob\" in token"));
  CtlRun no_module = RunInProcess({"root", "sign", "--key", Uri("alice"), Path("r.json")});
  EXPECT_EQ(no_module.code, kExitUsage);
  EXPECT_THAT(no_module.err, HasSubstr("MODELDIST_PKCS11_MODULE"));
  CtlRun file_flags = RunInProcess(
      {"root", "sign", "--key", Path("alice.pem"), "--pin-file", Path("pin"), Path("r.json")});
  EXPECT_EQ(file_flags.code, kExitUsage);
}

TEST_F(Pkcs11Test, KeygenRefusesASecondKeyUnderTheSameLabel) {
  const Ed25519PublicKey alice = Keygen("alice");
  const Pkcs11Uri uri = *ParsePkcs11Uri(Uri("alice"));
  EXPECT_THAT(GeneratePkcs11Key(uri, Access()).status(),
              HasReason(absl::StatusCode::kAlreadyExists, "PKCS11_KEY_EXISTS"));
  CtlRun again =
      RunInProcess({"root", "keygen", "--key", Uri("alice"), "--out", Path("alice-again")}, Env());
  EXPECT_EQ(again.code, kExitLocal);
  EXPECT_THAT(again.err, HasSubstr("refusing to make a second"));
  // The key that was there signs as before.
  absl::StatusOr<std::unique_ptr<Signer>> signer = OpenPkcs11Signer(uri, Access());
  ASSERT_THAT(signer, IsOk());
  EXPECT_EQ((*signer)->public_key().KeyId(), alice.KeyId());
}

TEST(Pkcs11UriTest, ParsesTheSubsetAndRefusesTheRest) {
  absl::StatusOr<Pkcs11Uri> uri =
      ParsePkcs11Uri("pkcs11:token=My%20Token;id=%01%aB;type=private?module-path=/m.so");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "My Token");
  EXPECT_EQ(uri->id, std::string("\x01\xab", 2));
  EXPECT_FALSE(uri->object.has_value());
  EXPECT_EQ(uri->module_path, "/m.so");
  EXPECT_TRUE(IsPkcs11Uri("PKCS11:object=x"));
  EXPECT_FALSE(IsPkcs11Uri("keys/pkcs11.pem"));

  for (const char* bad : {"pkcs11:token=t",                      // names no key
                          "pkcs11:object=a;object=b",            // twice
                          "pkcs11:object=a;slot-id=3",           // unsupported: not ignored
                          "pkcs11:object=a;type=public",         // not the key that signs
                          "pkcs11:object=a%2",                   // broken escape
                          "pkcs11:object=a?pin-source=file:/p",  // unsupported query
                          "file:object=a"}) {
    absl::StatusOr<Pkcs11Uri> parsed = ParsePkcs11Uri(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(ExitCodeFor(parsed.status()), kExitUsage) << bad;
  }
  absl::StatusOr<Pkcs11Uri> pin = ParsePkcs11Uri("pkcs11:object=a?pin-value=s3cret");
  EXPECT_FALSE(pin.ok());
  EXPECT_THAT(pin.status().message(), HasSubstr("pin-value is refused"));
  EXPECT_THAT(pin.status().message(), Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace modeldist::ctl
