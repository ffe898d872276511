// Tests of `modeldistctl keys`: a key generated locally, key changes against FakeRegistry, and
// trust roots fetched from FakeManifests, verified before they are written.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RunCtlTest, KeysGenerateWritesAPrivateKeyAndPrintsOnlyThePublicOne) {
  ScratchDir dir;
  std::string path = dir.Join("signing.pem");
  CtlRun run = RunInProcess({"keys", "generate", "--out", path});
  ASSERT_EQ(run.code, kExitOk) << run.err;
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::LoadPemFile(path);
  ASSERT_THAT(key, IsOk());
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("key id: ", key->public_key().KeyId())));
  EXPECT_THAT(run.out, HasSubstr(key->public_key().ToPem()));
  EXPECT_THAT(run.out, Not(HasSubstr("PRIVATE")));

  CtlRun again = RunInProcess({"keys", "generate", "--out", path});
  EXPECT_EQ(again.code, kExitLocal);
  EXPECT_THAT(again.err, HasSubstr("refusing to overwrite"));
  // The first key is untouched.
  EXPECT_EQ(Ed25519PrivateKey::LoadPemFile(path)->public_key().raw(), key->public_key().raw());
}

TEST(RunCtlTest, KeysRootNeedsNoToken) {
  // Port 1 refuses at once: the failure is the connection, not a missing token.
  CtlRun run = RunInProcess({"--server", "127.0.0.1:1", "keys", "root"});
  EXPECT_EQ(run.code, kExitRpc) << run.err;
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
}

// A signed root of `keys` with `threshold`, signed by `signers`.
v1::SignedTrustRoot MakeRoot(int64_t version, const std::vector<const Ed25519PrivateKey*>& keys,
                             int threshold, const std::vector<const Ed25519PrivateKey*>& signers) {
  v1::TrustRoot root;
  root.set_version(version);
  root.set_threshold(threshold);
  for (const Ed25519PrivateKey* key : keys) *root.add_keys() = RootKeyFor(key->public_key());
  return SignRoot(root, signers);
}

TEST_F(FakeServerTest, KeysRotatePrintsTheNewRoot) {
  absl::StatusOr<Ed25519PrivateKey> a = Ed25519PrivateKey::Generate();
  absl::StatusOr<Ed25519PrivateKey> b = Ed25519PrivateKey::Generate();
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  fake_.SetKeyChangeResult(MakeRoot(4, {&*a, &*b}, 2, {&*a, &*b}));

  CtlRun rotate = RunInProcess(Ctl({"keys", "rotate", "--count", "2", "--threshold", "2"}));
  ASSERT_EQ(rotate.code, kExitOk) << rotate.err;
  EXPECT_EQ(rotate.out,
            absl::StrCat("rotated the signing keys: trust root version 4, threshold 2 "
                         "of 2 keys\n  key ",
                         a->public_key().KeyId(), "\n  key ", b->public_key().KeyId(), "\n"));
  EXPECT_EQ(fake_.last_rotate().count(), 2);
  EXPECT_EQ(fake_.last_rotate().threshold(), 2);

  CtlRun add = RunInProcess(Ctl({"--json", "keys", "add"}));
  ASSERT_EQ(add.code, kExitOk) << add.err;
  EXPECT_THAT(add.out, HasSubstr("\"version\":\"4\""));
  EXPECT_THAT(add.out, HasSubstr(absl::StrCat("\"keyId\":\"", b->public_key().KeyId(), "\"")));

  CtlRun unknown = RunInProcess(Ctl({"keys", "revoke", "unknown"}));
  EXPECT_EQ(unknown.code, kExitRpc);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
}

TEST_F(FakeServerTest, KeysRootWritesTheVerifiedRootWithoutAToken) {
  absl::StatusOr<Ed25519PrivateKey> a = Ed25519PrivateKey::Generate();
  absl::StatusOr<Ed25519PrivateKey> b = Ed25519PrivateKey::Generate();
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  v1::SignedTrustRoot first = MakeRoot(1, {&*a}, 1, {&*a});
  v1::SignedTrustRoot second = MakeRoot(2, {&*a, &*b}, 2, {&*a, &*b});
  manifests_.AddRoot(first);
  manifests_.AddRoot(second);

  const std::string out = dir_.Join("root.bin");
  CtlRun newest = RunInProcess({"--server", Address(), "keys", "root", "--out", out});
  ASSERT_EQ(newest.code, kExitOk) << newest.err;
  EXPECT_EQ(*ReadFileToString(out), second.SerializeAsString());
  EXPECT_EQ(newest.out,
            absl::StrCat("wrote ", out,
                         ": trust root version 2, threshold 2 of 2 "
                         "keys\n  key ",
                         a->public_key().KeyId(), "\n  key ", b->public_key().KeyId(), "\n"));
  EXPECT_FALSE(manifests_.saw_authorization());

  CtlRun pinned = RunInProcess({"--server", Address(), "keys", "root", "--version", "1"});
  ASSERT_EQ(pinned.code, kExitOk) << pinned.err;
  EXPECT_THAT(pinned.out, HasSubstr("trust root version 1, threshold 1 of 1 key\n"));

  CtlRun missing = RunInProcess({"--server", Address(), "keys", "root", "--version", "7"});
  EXPECT_EQ(missing.code, kExitRpc);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));

  // A root short of its own threshold would brick the devices that pin it: nothing is written.
  manifests_.AddRoot(MakeRoot(3, {&*a, &*b}, 2, {&*a}));
  const std::string bad_out = dir_.Join("bad-root.bin");
  CtlRun bad = RunInProcess({"--server", Address(), "keys", "root", "--out", bad_out});
  EXPECT_EQ(bad.code, kExitRpc);
  EXPECT_THAT(bad.err, HasSubstr("does not verify"));
  EXPECT_THAT(bad.err, HasSubstr("ROOT_SIGNATURE_THRESHOLD_NOT_MET"));
  EXPECT_EQ(::access(bad_out.c_str(), F_OK), -1);
}

}  // namespace
}  // namespace modeldist::ctl
