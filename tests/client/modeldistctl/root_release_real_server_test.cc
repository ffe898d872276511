// The offline ceremony of docs/trust.md against a real in-process server: modeldistctl fetches
// the server's single-role root, moves it to offline root and release keys (init, sign,
// upload), then publishes with a release statement; a device's verification (VerifyManifest)
// accepts the manifest it is served, and only with the statement.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/trust_files.h"
#include "common/digest.h"
#include "common/release.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;

class RealServerRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(token_file_, absl::StrCat(modeldist::testing::kTestToken, "\n"));
    for (const char* name : {"alice", "bob", "rel"}) {
      CtlRun run = Ctl({"root", "keygen", "--out", Path(name)});
      ASSERT_EQ(run.code, kExitOk) << run.err;
    }
  }

  std::string Path(const std::string& name) const { return dir_.Join(name); }

  // modeldistctl as a user types it, over TCP to the test server with the admin token.
  CtlRun Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                               "--token-file", token_file_});
    return RunInProcess(args);
  }

  std::vector<std::string> Publish(const std::string& version, const std::string& file) {
    return {"publish", "--model", "llama",   "--version",
            version,   "--tier",  "llama8b", absl::StrCat("macos/x86_64/gguf=", file)};
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

  modeldist::testing::TestServer server_;
  ScratchDir dir_;
  std::string token_file_ = dir_.Join("token");
};

TEST_F(RealServerRootTest, OfflineRootAndReleaseKeysThenPublishWithARelease) {
  // A version published under the single-role root, to attach a release to afterwards.
  const std::string old_model = modeldist::testing::RandomBytes(1 << 20, 3);
  WriteFile(Path("old.gguf"), old_model);
  CtlRun old_publish = Ctl(Publish("0.9", Path("old.gguf")));
  ASSERT_EQ(old_publish.code, kExitOk) << old_publish.err;

  CtlRun fetch = Ctl({"root", "fetch", "--out", Path("root-1.json")});
  ASSERT_EQ(fetch.code, kExitOk) << fetch.err;
  EXPECT_THAT(fetch.out, HasSubstr("verified as a chain from root 1"));
  ASSERT_EQ(Root("root-1.json").version(), 1);

  CtlRun init =
      Ctl({"root", "init", "--from", Path("root-1.json"), "--root-key",
           absl::StrCat(Path("alice.pub.pem"), ",", Path("bob.pub.pem")), "--root-threshold", "2",
           "--release-key", Path("rel.pub.pem"), "--out", Path("root-2.json")});
  ASSERT_EQ(init.code, kExitOk) << init.err;
  // One of two root keys: the server refuses, and stores nothing.
  ASSERT_EQ(Ctl({"root", "sign", "--key", Path("alice.pem"), Path("root-2.json")}).code, 0);
  CtlRun short_upload = Ctl({"root", "upload", Path("root-2.json")});
  EXPECT_EQ(short_upload.code, kExitRpc);
  EXPECT_THAT(short_upload.err, HasSubstr("ROOT_SIGNATURE_THRESHOLD_NOT_MET"));
  ASSERT_EQ(Ctl({"root", "sign", "--key", Path("bob.pem"), Path("root-2.json")}).code, 0);
  // Root 1's online key, which only the server holds, is what is missing now.
  EXPECT_EQ(Ctl({"root", "verify", "--trusted", Path("root-1.json"), Path("root-2.json")}).code,
            kExitDamage);
  CtlRun upload = Ctl({"root", "upload", Path("root-2.json")});
  ASSERT_EQ(upload.code, kExitOk) << upload.err;
  EXPECT_THAT(upload.out, HasSubstr("trust root version 2"));

  // What a device then fetches walks from root 1 and is the uploaded root, co-signed.
  CtlRun refetch = Ctl({"root", "fetch", "--out", Path("served-2.json")});
  ASSERT_EQ(refetch.code, kExitOk) << refetch.err;
  const v1::TrustRoot root = Root("served-2.json");
  EXPECT_EQ(root.SerializeAsString(), Root("root-2.json").SerializeAsString());
  absl::StatusOr<v1::SignedTrustRoot> served = ReadRootFile(Path("served-2.json"));
  ASSERT_THAT(served, IsOk());
  EXPECT_THAT(VerifyNextRoot(Root("root-1.json"), *served), IsOk());

  // Publishing now needs a release statement.
  const std::string model = modeldist::testing::RandomBytes(5 * (1 << 20) + 17, 4);
  WriteFile(Path("model.gguf"), model);
  CtlRun unreleased = Ctl(Publish("1.0", Path("model.gguf")));
  EXPECT_EQ(unreleased.code, kExitRpc);
  EXPECT_THAT(unreleased.err, HasSubstr("RELEASE_REQUIRED"));
  CtlRun sign =
      Ctl({"release", "sign", "--key", Path("rel.pem"), "--version", "models/llama/versions/1.0",
           "--out", Path("rel-1.0.json"), absl::StrCat("macos/x86_64/gguf=", Path("model.gguf"))});
  ASSERT_EQ(sign.code, kExitOk) << sign.err;
  std::vector<std::string> with_release = Publish("1.0", Path("model.gguf"));
  with_release.insert(with_release.begin() + 1, {"--release", Path("rel-1.0.json")});
  CtlRun published = Ctl(with_release);
  ASSERT_EQ(published.code, kExitOk) << published.err;

  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(
      server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_X86_64, &signed_manifest).ok());
  absl::StatusOr<v1::Manifest> manifest = VerifyManifest(root, signed_manifest);
  ASSERT_THAT(manifest, IsOk());
  EXPECT_EQ(manifest->artifact().digest(), FormatDigest(Sha256::HexOf(model)));
  v1::SignedManifest stripped = signed_manifest;
  stripped.clear_release();
  EXPECT_FALSE(VerifyManifest(root, stripped).ok()) << "the online signature alone";

  // The version from before the roles gets its statement attached.
  ASSERT_EQ(
      Ctl({"release", "sign", "--key", Path("rel.pem"), "--version", "models/llama/versions/0.9",
           "--out", Path("rel-0.9.json"), absl::StrCat("macos/x86_64/gguf=", Path("old.gguf"))})
          .code,
      kExitOk);
  CtlRun attach = Ctl({"release", "attach", Path("rel-0.9.json")});
  ASSERT_EQ(attach.code, kExitOk) << attach.err;
  EXPECT_THAT(attach.out, HasSubstr("attached"));
  // A statement for other bytes is refused.
  WriteFile(Path("other.gguf"), model + "x");
  ASSERT_EQ(
      Ctl({"release", "sign", "--key", Path("rel.pem"), "--version", "models/llama/versions/0.9",
           "--out", Path("rel-other.json"), absl::StrCat("macos/x86_64/gguf=", Path("other.gguf"))})
          .code,
      kExitOk);
  CtlRun mismatch = Ctl({"release", "attach", Path("rel-other.json")});
  EXPECT_EQ(mismatch.code, kExitRpc);
  EXPECT_THAT(mismatch.err, HasSubstr("RELEASE_MISMATCH"));
}

}  // namespace
}  // namespace modeldist::ctl
