// Tests of publish against FakeRegistry: the flow (upload, declare, publish, bind), reruns
// that resume or find nothing to do, versions that differ, constraints, and what the command
// prints.
#include "client/modeldistctl/publish.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(FakeServerTest, WrongTokenIsUnauthenticatedAndNotRetried) {
  RegistryClient wrong(grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()),
                       "not-the-token");
  PublishResult result;
  EXPECT_THAT(Publish(wrong, Spec(), PublishOptions{.upload = FastUpload()}, &result),
              StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(FakeServerTest, PublishCreatesUploadsPublishesAndBindsTheTier) {
  std::ostringstream log;
  PublishResult result;
  ASSERT_THAT(
      Publish(*client_, Spec(), PublishOptions{.upload = FastUpload(), .log = &log}, &result),
      IsOk());
  EXPECT_TRUE(result.model_created);
  EXPECT_TRUE(result.version_created);
  ASSERT_EQ(result.artifacts.size(), 1u);
  EXPECT_EQ(result.artifacts[0].digest, digest_);
  EXPECT_EQ(result.artifacts[0].file.size, kFileSize);
  EXPECT_EQ(result.version.state(), v1::Version::PUBLISHED);
  EXPECT_EQ(result.binding.version(), "models/llama/versions/1.0");
  EXPECT_EQ(result.binding.sequence(), 1);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_EQ(result.artifacts[0].upload.bytes_read, kFileSize);  // Hashed while it was sent.
  EXPECT_EQ(log.str(), "");  // Not a terminal, nothing unusual: no notes, no progress.
}

TEST_F(FakeServerTest, RerunAfterAnInterruptionResumesTheUpload) {
  PublishResult first;
  EXPECT_THAT(Publish(*client_, Spec(), PublishOptions{.upload = WithCap(2 << 20)}, &first),
              StatusIs(absl::StatusCode::kAborted, _));
  // The version is declared with its digests, which are known only once the files are read.
  EXPECT_FALSE(first.version_created);
  EXPECT_FALSE(fake_.has_version("models/llama/versions/1.0"));

  std::ostringstream log;
  PublishResult second;
  ASSERT_THAT(
      Publish(*client_, Spec(), PublishOptions{.upload = FastUpload(), .log = &log}, &second),
      IsOk());
  EXPECT_FALSE(second.model_created);
  EXPECT_TRUE(second.version_created);
  EXPECT_EQ(second.artifacts[0].upload.resumed_from, 2 << 20);
  EXPECT_EQ(second.artifacts[0].upload.bytes_sent, kFileSize - (2 << 20));
  // The 2 MiB the server held were read again, only to hash them: once over the whole file.
  EXPECT_EQ(second.artifacts[0].upload.bytes_read, kFileSize);
  EXPECT_THAT(log.str(),
              HasSubstr(absl::StrCat("resumed the upload of ", path_, " at byte ", 2 << 20)));
  EXPECT_EQ(second.version.state(), v1::Version::PUBLISHED);
  EXPECT_EQ(fake_.bytes_received(), kFileSize);

  // A third run finds it published with this file and the tier bound to it: nothing to do.
  PublishResult third;
  ASSERT_THAT(Publish(*client_, Spec(), PublishOptions{.upload = FastUpload()}, &third), IsOk());
  EXPECT_TRUE(third.was_published);
  EXPECT_TRUE(third.tier_already_bound);
  EXPECT_EQ(third.BytesSent(), 0);
  EXPECT_EQ(third.binding.sequence(), 1);
  EXPECT_EQ(fake_.set_tier_calls(), 1);
}

TEST_F(FakeServerTest, ADraftLeftByAnotherClientIsUploadedToAndPublished) {
  DeclareDraft(Spec());
  std::ostringstream log;
  PublishResult result;
  ASSERT_THAT(
      Publish(*client_, Spec(), PublishOptions{.upload = FastUpload(), .log = &log}, &result),
      IsOk());
  EXPECT_FALSE(result.version_created);
  EXPECT_THAT(log.str(), HasSubstr("resuming draft models/llama/versions/1.0"));
  EXPECT_EQ(result.artifacts[0].upload.bytes_sent, kFileSize);
  EXPECT_EQ(result.artifacts[0].upload.bytes_read, kFileSize);
  EXPECT_EQ(result.version.state(), v1::Version::PUBLISHED);
}

TEST_F(FakeServerTest, ExistingVersionWithAnotherFileIsAClearError) {
  ASSERT_THAT(Publish(*client_, Spec(), PublishOptions{.upload = FastUpload()}, &ignored_), IsOk());
  WriteFile(path_, "different bytes");
  PublishResult result;
  absl::Status status = Publish(*client_, Spec(), PublishOptions{.upload = FastUpload()}, &result);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAlreadyExists,
                               AllOf(HasSubstr("models/llama/versions/1.0 already exists"),
                                     HasSubstr("PUBLISHED"), HasSubstr("new --version"))));
  EXPECT_EQ(ExitCodeFor(status), kExitRpc);
}

TEST_F(FakeServerTest, PublishDeclaresAllArtifactsInOneVersionAndUploadsEach) {
  PublishResult result;
  ASSERT_THAT(Publish(*client_, TwoArtifactSpec(), PublishOptions{.upload = FastUpload()}, &result),
              IsOk());
  ASSERT_EQ(result.artifacts.size(), 2u);
  EXPECT_EQ(result.artifacts[0].digest, zip_digest_);
  EXPECT_EQ(result.artifacts[0].file.size, kZipSize);
  EXPECT_EQ(result.artifacts[0].upload.bytes_sent, kZipSize);
  EXPECT_EQ(result.artifacts[1].digest, digest_);
  EXPECT_EQ(result.artifacts[1].upload.bytes_sent, kFileSize);
  EXPECT_EQ(result.BytesSent(), kZipSize + kFileSize);
  EXPECT_EQ(fake_.blob(zip_digest_).data, zip_contents_);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);

  v1::Version version = fake_.version("models/llama/versions/1.0");
  EXPECT_EQ(version.state(), v1::Version::PUBLISHED);
  ASSERT_EQ(version.artifacts_size(), 2);
  EXPECT_EQ(version.artifacts(0).format(), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(version.artifacts(0).arch(), v1::ARCH_ARM64);
  EXPECT_EQ(version.artifacts(0).digest(), zip_digest_);
  EXPECT_EQ(version.artifacts(1).format(), v1::FORMAT_GGUF);
  EXPECT_EQ(version.artifacts(1).arch(), v1::ARCH_X86_64);
  EXPECT_TRUE(version.artifacts(0).uploaded());
  EXPECT_TRUE(version.artifacts(1).uploaded());
  EXPECT_EQ(result.binding.sequence(), 1);
}

TEST_F(FakeServerTest, RerunResumesEachArtifactAndSkipsCompleteOnes) {
  // The cap applies per file: the zip stops at 1 MiB and the GGUF is never started.
  PublishResult first;
  EXPECT_THAT(
      Publish(*client_, TwoArtifactSpec(), PublishOptions{.upload = WithCap(1 << 20)}, &first),
      StatusIs(absl::StatusCode::kAborted, _));
  ASSERT_EQ(first.artifacts.size(), 2u);
  EXPECT_EQ(first.artifacts[0].upload.bytes_sent, 1 << 20);
  EXPECT_EQ(first.artifacts[1].upload.resumed_from, -1);
  EXPECT_EQ(static_cast<int64_t>(fake_.blob(digest_).data.size()), 0);

  // A cap of the zip's size finishes the zip and stops the GGUF part-way.
  PublishResult second;
  EXPECT_THAT(
      Publish(*client_, TwoArtifactSpec(), PublishOptions{.upload = WithCap(kZipSize)}, &second),
      StatusIs(absl::StatusCode::kAborted, _));
  EXPECT_FALSE(second.version_created);
  EXPECT_EQ(second.artifacts[0].upload.resumed_from, 1 << 20);
  EXPECT_EQ(second.artifacts[0].upload.bytes_sent, kZipSize - (1 << 20));
  EXPECT_TRUE(fake_.blob(zip_digest_).complete);
  EXPECT_EQ(second.artifacts[1].upload.bytes_sent, kZipSize);
  // Not declared until every file is uploaded and hashed.
  EXPECT_FALSE(fake_.has_version("models/llama/versions/1.0"));

  std::ostringstream log;
  PublishResult third;
  ASSERT_THAT(Publish(*client_, TwoArtifactSpec(),
                      PublishOptions{.upload = FastUpload(), .log = &log}, &third),
              IsOk());
  EXPECT_TRUE(third.artifacts[0].upload.already_complete);
  EXPECT_EQ(third.artifacts[0].upload.bytes_sent, 0);
  EXPECT_EQ(third.artifacts[1].upload.resumed_from, kZipSize);
  EXPECT_EQ(third.artifacts[1].upload.bytes_sent, kFileSize - kZipSize);
  EXPECT_TRUE(third.version_created);
  EXPECT_THAT(log.str(), HasSubstr(absl::StrCat("resumed the upload of ", path_, " at byte ")));
  EXPECT_EQ(third.version.state(), v1::Version::PUBLISHED);
  // Every byte crossed the wire once over the three runs.
  EXPECT_EQ(fake_.bytes_received(), kZipSize + kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);

  PublishResult fourth;
  ASSERT_THAT(Publish(*client_, TwoArtifactSpec(), PublishOptions{.upload = FastUpload()}, &fourth),
              IsOk());
  EXPECT_TRUE(fourth.was_published);
  EXPECT_TRUE(fourth.tier_already_bound);
  EXPECT_EQ(fourth.BytesSent(), 0);
  EXPECT_EQ(fourth.binding.sequence(), 1);
}

TEST_F(FakeServerTest, ExistingVersionWithOtherArtifactsSaysWhatDiffers) {
  // A draft declaring only the GGUF cannot take the zip as well.
  DeclareDraft(Spec());
  PublishResult more;
  EXPECT_THAT(
      Publish(*client_, TwoArtifactSpec(), PublishOptions{.upload = FastUpload()}, &more),
      StatusIs(
          absl::StatusCode::kAlreadyExists,
          AllOf(HasSubstr("(DRAFT)"),
                HasSubstr(absl::StrCat("it does not declare macos/arm64/coreml-zip ", zip_digest_)),
                Not(HasSubstr("macos/x86_64/gguf")))));

  // Nor can a version with both be published with one of them, or another zip.
  ASSERT_THAT(
      Publish(*client_, TwoArtifactSpec("2.0"), PublishOptions{.upload = FastUpload()}, &ignored_),
      IsOk());
  PublishResult fewer;
  EXPECT_THAT(Publish(*client_, Spec("2.0"), PublishOptions{.upload = FastUpload()}, &fewer),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("(PUBLISHED)"),
                             HasSubstr("it also declares macos/arm64/coreml-zip"))));
  WriteFile(zip_path_, "another zip");
  PublishResult other;
  EXPECT_THAT(
      Publish(*client_, TwoArtifactSpec("2.0"), PublishOptions{.upload = FastUpload()}, &other),
      StatusIs(absl::StatusCode::kAlreadyExists,
               AllOf(HasSubstr(absl::StrCat("macos/arm64/coreml-zip is ", zip_digest_, " (",
                                            kZipSize, " bytes) there but sha256:")),
                     HasSubstr("(11 bytes) here"), HasSubstr("new --version"))));
}

TEST_F(FakeServerTest, CommandLinePublishPrintsASummaryAndJson) {
  ScratchDir dir;
  WriteFile(dir.Join("token"), absl::StrCat(kToken, "\n"));
  CtlRun run = RunInProcess({"--server", Address(), "--token-file", dir.Join("token"), "publish",
                             "--model", "llama", "--version", "2.0", "--platform", "MACOS",
                             "--arch", "x86_64", "--format", "GGUF", "--tier", "llama8b", path_});
  ASSERT_EQ(run.code, kExitOk) << run.err;
  EXPECT_EQ(run.out, absl::StrCat("published models/llama/versions/2.0 digest ", digest_, " size ",
                                  kFileSize, " (5.24 MB) tier llama8b/stable sequence 1 (sent ",
                                  kFileSize, " bytes)\n"));

  CtlRun json =
      RunInProcess({"--server", Address(), "--token-file", dir.Join("token"), "--json", "publish",
                    "--model", "llama", "--version", "2.0", "--platform", "macos", "--arch",
                    "x86_64", "--format", "gguf", "--tier", "llama8b", path_});
  ASSERT_EQ(json.code, kExitOk) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"alreadyPublished\":true"));
  EXPECT_THAT(json.out, HasSubstr("\"tierAlreadyBound\":true"));
  EXPECT_THAT(json.out, HasSubstr("\"state\":\"PUBLISHED\""));
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"digest\":\"", digest_, "\"")));

  // Run once more as text: it says that nothing changed, and it bound nothing.
  CtlRun again = RunInProcess({"--server", Address(), "--token-file", dir.Join("token"), "publish",
                               "--model", "llama", "--version", "2.0", "--platform", "macos",
                               "--arch", "x86_64", "--format", "gguf", "--tier", "llama8b", path_});
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_EQ(again.out, absl::StrCat("already published models/llama/versions/2.0 digest ", digest_,
                                    " size ", kFileSize,
                                    " (5.24 MB); tier llama8b/stable already bound to it "
                                    "(sequence 1)\n"));
  EXPECT_EQ(fake_.set_tier_calls(), 1);

  CtlRun wrong = RunInProcess(
      {"--server", Address(), "publish", "--model", "llama", "--version", "3.0", "--platform",
       "macos", "--arch", "x86_64", "--format", "gguf", "--tier", "llama8b", path_},
      {{"MODELDIST_ADMIN_TOKEN", "wrong-token"}});
  EXPECT_EQ(wrong.code, kExitRpc);
  EXPECT_THAT(wrong.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("wrong-token")));
}

TEST_F(FakeServerTest, CommandLinePublishOfTwoArtifactsReportsEach) {
  ScratchDir dir;
  WriteFile(dir.Join("token"), absl::StrCat(kToken, "\n"));
  // The GGUF goes up first in a version of its own, so the second run finds its bytes stored.
  // (The fake numbers tier bindings with one counter, hence sequence 2 below.)
  CtlRun gguf = RunInProcess({"--server", Address(), "--token-file", dir.Join("token"), "publish",
                              "--model", "llama", "--version", "1.0", "--tier", "llama8b",
                              absl::StrCat("macos/x86_64/gguf=", path_)});
  ASSERT_EQ(gguf.code, kExitOk) << gguf.err;
  EXPECT_THAT(gguf.out,
              HasSubstr(absl::StrCat("published models/llama/versions/1.0 digest ", digest_)));

  const std::vector<std::string> args = {"--server",
                                         Address(),
                                         "--token-file",
                                         dir.Join("token"),
                                         "publish",
                                         "--model",
                                         "llama",
                                         "--version",
                                         "2.0",
                                         "--tier",
                                         "llama8b",
                                         "--channel",
                                         "beta",
                                         absl::StrCat("macos/arm64/coreml-zip=", zip_path_),
                                         absl::StrCat("macos/x86_64/gguf=", path_)};
  CtlRun run = RunInProcess(args);
  ASSERT_EQ(run.code, kExitOk) << run.err;
  EXPECT_EQ(run.out,
            absl::StrCat("published models/llama/versions/2.0 with 2 artifacts tier llama8b/beta "
                         "sequence 2\n",
                         "  macos/arm64/coreml-zip digest ", zip_digest_, " size ", kZipSize,
                         " (3.15 MB) ", zip_path_, " (sent ", kZipSize, " bytes)\n",
                         "  macos/x86_64/gguf digest ", digest_, " size ", kFileSize, " (5.24 MB) ",
                         path_, " (bytes already on the server)\n"));

  std::vector<std::string> json_args = args;
  json_args.insert(json_args.begin(), "--json");
  CtlRun json = RunInProcess(json_args);
  ASSERT_EQ(json.code, kExitOk) << json.err;
  EXPECT_THAT(json.out,
              HasSubstr(absl::StrCat("\"artifacts\":[{\"platform\":\"macos\",\"arch\":\"arm64\","
                                     "\"format\":\"coreml-zip\",\"file\":\"",
                                     zip_path_, "\",\"digest\":\"", zip_digest_,
                                     "\",\"sizeBytes\":", kZipSize,
                                     ",\"upload\":{\"resumedFrom\":-1,\"bytesSent\":0,")));
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"format\":\"gguf\",\"file\":\"", path_,
                                               "\",\"digest\":\"", digest_, "\"")));
  EXPECT_THAT(json.out, HasSubstr("\"alreadyPublished\":true}"));
  // The single-file fields are only for single-file runs: they would be ambiguous here.
  EXPECT_THAT(json.out, Not(HasSubstr("\"upload\":{\"resumedFrom\":-1,\"bytesSent\":0,"
                                      "\"alreadyComplete\":false,\"alreadyPublished\"")));
}

TEST_F(FakeServerTest, PublishDeclaresConstraintsOnEveryArtifactAndComparesThemOnRerun) {
  const std::vector<std::string> args = {"publish",
                                         "--model",
                                         "llama",
                                         "--version",
                                         "3.0",
                                         "--tier",
                                         "llama8b",
                                         "--min-os",
                                         "14.0",
                                         "--min-ram",
                                         "8GiB",
                                         "--requires",
                                         "ane,metal",
                                         "--unpacked-size",
                                         "6M",
                                         absl::StrCat("macos/arm64/coreml-zip=", zip_path_),
                                         absl::StrCat("macos/x86_64/gguf=", path_)};
  CtlRun run = RunInProcess(Ctl(args));
  ASSERT_EQ(run.code, kExitOk) << run.err;
  EXPECT_EQ(run.err, "");  // The fake keeps the constraints: no warning.
  v1::Version version = fake_.version("models/llama/versions/3.0");
  ASSERT_EQ(version.artifacts_size(), 2);
  for (const v1::Artifact& a : version.artifacts()) {
    EXPECT_EQ(a.constraints().min_os_version(), "14.0");
    EXPECT_EQ(a.constraints().min_ram_bytes(), int64_t{8} << 30);
    EXPECT_THAT(a.constraints().required_accelerators(),
                ::testing::ElementsAre(v1::ACCELERATOR_ANE, v1::ACCELERATOR_METAL));
    EXPECT_EQ(a.unpacked_size_bytes(), 6 << 20);
  }
  CtlRun show = RunInProcess(Ctl({"show", "llama", "3.0"}));
  EXPECT_THAT(show.out, HasSubstr("    needs:    min OS 14.0, min RAM 8589934592 bytes, needs "
                                  "ane+metal, unpacked 6291456 bytes\n"));

  // Same flags, accelerators in another order: the same version, already bound.
  std::vector<std::string> reordered = args;
  reordered[12] = "metal,ane";
  CtlRun again = RunInProcess(Ctl(reordered));
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_THAT(again.out, HasSubstr("already published models/llama/versions/3.0 with 2 artifacts; "
                                   "tier llama8b/stable already bound to it"));

  // Other constraints on the same bytes are another version, and the error says what differs.
  std::vector<std::string> more_ram = args;
  more_ram[10] = "16GiB";
  CtlRun differs = RunInProcess(Ctl(more_ram));
  EXPECT_EQ(differs.code, kExitRpc);
  EXPECT_THAT(differs.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(differs.err,
              HasSubstr("macos/x86_64/gguf has min OS 14.0, min RAM 8589934592 bytes"));
  EXPECT_THAT(differs.err, HasSubstr("min RAM 17179869184 bytes"));

  // No constraints at all against a version that has them: also a difference.
  CtlRun bare = RunInProcess(Ctl({"publish", "--model", "llama", "--version", "3.0", "--tier",
                                  "llama8b", absl::StrCat("macos/arm64/coreml-zip=", zip_path_),
                                  absl::StrCat("macos/x86_64/gguf=", path_)}));
  EXPECT_EQ(bare.code, kExitRpc);
  EXPECT_THAT(bare.err, HasSubstr("there but no constraints here"));
}

TEST_F(FakeServerTest, PublishWithoutConstraintsSendsNone) {
  PublishFakeVersion("1.0");
  v1::Version version = fake_.version("models/llama/versions/1.0");
  ASSERT_EQ(version.artifacts_size(), 1);
  EXPECT_FALSE(version.artifacts(0).has_constraints());
  EXPECT_EQ(version.artifacts(0).unpacked_size_bytes(), 0);
}

}  // namespace
}  // namespace modeldist::ctl
