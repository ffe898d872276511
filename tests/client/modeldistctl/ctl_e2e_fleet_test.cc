// End-to-end test of the fleet commands (rollout, pin, pins, audit, keys) against the real
// modeldist-server (ctl_e2e_fixture.h).
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;

// The fleet commands against the real server: a staged rollout, pins that beat it, the audit
// log with the actors that made each change, and a key rotation a device can follow from the
// root it pinned with `keys root`.
TEST_F(CtlE2eTest, RolloutPinAuditAndKeyRotation) {
  // Published in this order, llama8b/stable ends up bound to 1.0 with 2.0 ready to roll out.
  ASSERT_EQ(Ctl(PublishArgs("2.0")).code, 0);
  CtlRun publish = Ctl(PublishArgs("1.0"));
  ASSERT_EQ(publish.code, 0) << publish.err;
  const std::string old_version = "models/e2e-model/versions/1.0";
  const std::string new_version = "models/e2e-model/versions/2.0";

  // --- creds create: the releaser's own credential; its token alone on stdout ---
  CtlRun creds = Ctl({"creds", "create", "e2e-releaser", "--scope", "rollout", "--scope", "read"});
  ASSERT_EQ(creds.code, 0) << creds.err;
  EXPECT_THAT(creds.out, ::testing::MatchesRegex("mdc_[A-Za-z0-9_-]{43}\n"));
  EXPECT_THAT(creds.err, HasSubstr("shown only now"));
  const std::string releaser_token = dir_.Join("releaser.token");
  std::ofstream(releaser_token) << creds.out;

  // --- rollout start / advance / list / abort ---
  // The audit log records the credential's name.
  CtlRun start = Ctl({"--token-file", releaser_token, "rollout", "start", "--tier", "llama8b",
                      "--version", new_version, "--percent", "0.5"},
                     {}, /*with_token_file=*/false);
  ASSERT_EQ(start.code, 0) << start.err;
  EXPECT_THAT(start.out, HasSubstr(absl::StrCat(" llama8b/stable: ", old_version, " -> ",
                                                new_version, " at 0.5% (ACTIVE)\n")));
  CtlRun start_json = Ctl({"--json", "rollout", "list", "--tier", "llama8b"});
  ASSERT_EQ(start_json.code, 0) << start_json.err;
  EXPECT_THAT(start_json.out, HasSubstr("\"basisPoints\":50"));

  CtlRun advance = Ctl({"rollout", "advance", "--tier", "llama8b", "--percent", "10"});
  ASSERT_EQ(advance.code, 0) << advance.err;
  EXPECT_THAT(advance.out, HasSubstr("at 10% (ACTIVE)\n"));
  CtlRun backwards = Ctl({"rollout", "advance", "--tier", "llama8b", "--percent", "5"});
  EXPECT_EQ(backwards.code, 2);
  EXPECT_THAT(backwards.err, HasSubstr("INVALID_ARGUMENT"));
  CtlRun twice =
      Ctl({"rollout", "start", "--tier", "llama8b", "--version", new_version, "--percent", "1"});
  EXPECT_EQ(twice.code, 2);
  EXPECT_THAT(twice.err, HasSubstr("FAILED_PRECONDITION"));

  CtlRun list = Ctl({"rollout", "list"});
  ASSERT_EQ(list.code, 0) << list.err;
  std::vector<std::string> rows = absl::StrSplit(list.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(rows.size(), 2u) << list.out;
  for (const char* column :
       {"ID", "TIER", "CHANNEL", "FROM", "TO", "PERCENT", "STATE", "UPDATED"}) {
    EXPECT_THAT(rows[0], HasSubstr(column));
  }
  EXPECT_THAT(rows[1], HasSubstr("llama8b"));
  EXPECT_THAT(rows[1], HasSubstr(old_version));
  EXPECT_THAT(rows[1], HasSubstr(new_version));
  EXPECT_THAT(rows[1], HasSubstr("10%"));
  EXPECT_THAT(rows[1], HasSubstr("ACTIVE"));

  CtlRun abort = Ctl({"rollout", "abort", "--tier", "llama8b"});
  ASSERT_EQ(abort.code, 0) << abort.err;
  EXPECT_THAT(abort.out, HasSubstr("(ABORTED)\n"));
  EXPECT_THAT(Ctl({"rollout", "list", "--tier", "llama8b", "--channel", "stable"}).out,
              HasSubstr("ABORTED"));

  // --- pin / pins: a pinned device gets 2.0 while the tier stays on 1.0 ---
  std::ofstream(dir_.Join("devices.txt")) << "# QA\nqa-device-2\n\nqa-device-3\n";
  CtlRun pin = Ctl({"pin", "--tier", "llama8b", "--version", new_version, "qa-device-1",
                    "--devices-file", dir_.Join("devices.txt")},
                   {{"USER", "e2e-pinner"}});
  ASSERT_EQ(pin.code, 0) << pin.err;
  EXPECT_THAT(pin.out, HasSubstr(absl::StrCat("pinned 3 devices of llama8b/stable to ", new_version,
                                              " (3 changed) sequence ")));
  CtlRun pins = Ctl({"pins"});
  ASSERT_EQ(pins.code, 0) << pins.err;
  for (const char* device : {"qa-device-1", "qa-device-2", "qa-device-3"}) {
    EXPECT_THAT(pins.out, HasSubstr(device));
  }
  EXPECT_THAT(pins.out, HasSubstr(new_version));

  auto manifests = v1::ManifestService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  auto manifest_for = [&](const std::string& device_id) -> absl::StatusOr<v1::SignedManifest> {
    v1::GetManifestRequest request;
    request.set_tier("llama8b");
    request.set_platform(v1::PLATFORM_MACOS);
    request.set_arch(v1::ARCH_ARM64);
    request.set_device_id(device_id);
    grpc::ClientContext context;
    v1::SignedManifest signed_manifest;
    grpc::Status status = manifests->GetManifest(&context, request, &signed_manifest);
    if (!status.ok()) return FromGrpcStatus(status);
    return signed_manifest;
  };
  auto version_for = [&](const std::string& device_id) -> std::string {
    absl::StatusOr<v1::SignedManifest> signed_manifest = manifest_for(device_id);
    if (!signed_manifest.ok()) return signed_manifest.status().ToString();
    v1::Manifest manifest;
    if (!manifest.ParseFromString(signed_manifest->manifest())) return "unparsable manifest";
    return manifest.version();
  };
  EXPECT_EQ(version_for("qa-device-2"), new_version);
  EXPECT_EQ(version_for("someone-else"), old_version);

  // --- audit: newest first, each change with who made it ---
  CtlRun audit = Ctl({"audit", "--limit", "50"});
  ASSERT_EQ(audit.code, 0) << audit.err;
  std::vector<std::string> entries = absl::StrSplit(audit.out, '\n', absl::SkipEmpty());
  ASSERT_GE(entries.size(), 3u) << audit.out;
  for (const char* column : {"TIME", "ACTOR", "ACTION", "RESOURCE", "DETAILS"}) {
    EXPECT_THAT(entries[0], HasSubstr(column));
  }
  EXPECT_THAT(entries[1], HasSubstr("admin"));  // the bootstrap token's name, not $USER
  EXPECT_THAT(entries[1], HasSubstr("PinDevices"));
  EXPECT_THAT(audit.out, HasSubstr("e2e-releaser"));
  EXPECT_THAT(audit.out, Not(HasSubstr("e2e-pinner")));
  EXPECT_THAT(audit.out, HasSubstr("StartRollout"));
  EXPECT_THAT(audit.out, HasSubstr("AbortRollout"));
  CtlRun newest = Ctl({"audit", "--limit", "1"});
  ASSERT_EQ(newest.code, 0) << newest.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(newest.out, '\n', absl::SkipEmpty())).size(),
            2u)
      << newest.out;

  // --- creds list / revoke: never a token; a revoked token stops working at once ---
  CtlRun listed = Ctl({"creds", "list"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("e2e-releaser"));
  EXPECT_THAT(listed.out, HasSubstr("read,rollout"));
  EXPECT_THAT(listed.out, Not(HasSubstr("mdc_")));
  CtlRun readable = Ctl({"--token-file", releaser_token, "rollout", "list"}, {}, false);
  EXPECT_EQ(readable.code, 0) << readable.err;
  CtlRun no_audit = Ctl({"--token-file", releaser_token, "audit"}, {}, /*with_token_file=*/false);
  EXPECT_EQ(no_audit.code, 2);
  EXPECT_THAT(no_audit.err, HasSubstr("SCOPE_MISSING"));
  CtlRun revoke = Ctl({"creds", "revoke", "e2e-releaser"});
  ASSERT_EQ(revoke.code, 0) << revoke.err;
  CtlRun revoked = Ctl({"--token-file", releaser_token, "rollout", "list"}, {}, false);
  EXPECT_EQ(revoked.code, 2);
  EXPECT_THAT(revoked.err, HasSubstr("WRONG_TOKEN"));

  // --- keys root, keys rotate, keys root: a device walks from the pinned root to the new one ---
  const std::string root1_path = dir_.Join("root-1.bin");
  CtlRun root1 = Ctl({"keys", "root", "--out", root1_path}, {}, /*with_token_file=*/false);
  ASSERT_EQ(root1.code, 0) << root1.err;
  EXPECT_THAT(root1.out, HasSubstr(absl::StrCat("wrote ", root1_path, ": trust root version ")));
  v1::SignedTrustRoot signed_root1;
  ASSERT_TRUE(signed_root1.ParseFromString(*ReadFileToString(root1_path)));
  absl::StatusOr<v1::TrustRoot> pinned = VerifyFirstRoot(signed_root1);
  ASSERT_THAT(pinned, IsOk());
  for (const v1::SigningKey& key : pinned->keys()) {
    EXPECT_THAT(root1.out, HasSubstr(absl::StrCat("  key ", key.key_id(), "\n")));
  }

  CtlRun rotate = Ctl({"keys", "rotate", "--count", "2", "--threshold", "2"});
  ASSERT_EQ(rotate.code, 0) << rotate.err;
  EXPECT_THAT(rotate.out,
              HasSubstr(absl::StrCat("rotated the signing keys: trust root version ",
                                     pinned->version() + 1, ", threshold 2 of 2 keys\n")));
  for (const v1::SigningKey& key : pinned->keys()) {
    EXPECT_THAT(rotate.out, Not(HasSubstr(key.key_id())));  // Every old key was replaced.
  }

  const std::string root2_path = dir_.Join("root-2.bin");
  CtlRun root2 = Ctl({"keys", "root", "--out", root2_path}, {}, /*with_token_file=*/false);
  ASSERT_EQ(root2.code, 0) << root2.err;
  v1::SignedTrustRoot signed_root2;
  ASSERT_TRUE(signed_root2.ParseFromString(*ReadFileToString(root2_path)));
  absl::StatusOr<v1::TrustRoot> next = VerifyNextRoot(*pinned, signed_root2);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->threshold(), 2);
  EXPECT_EQ(next->keys_size(), 2);
  for (const v1::SigningKey& key : next->keys()) {
    EXPECT_THAT(rotate.out, HasSubstr(absl::StrCat("  key ", key.key_id(), "\n")));
  }
  CtlRun old_root = Ctl({"keys", "root", "--version", absl::StrCat(pinned->version())}, {}, false);
  ASSERT_EQ(old_root.code, 0) << old_root.err;
  EXPECT_THAT(old_root.out, HasSubstr(absl::StrCat("trust root version ", pinned->version(), ",")));

  // Manifests were re-signed by the new keys: the device that walked to root 2 accepts them.
  absl::StatusOr<v1::SignedManifest> after = manifest_for("someone-else");
  ASSERT_THAT(after, IsOk());
  absl::StatusOr<v1::Manifest> verified = VerifyManifest(*next, *after);
  ASSERT_THAT(verified, IsOk());
  EXPECT_EQ(verified->version(), old_version);
}

}  // namespace
}  // namespace modeldist::ctl
