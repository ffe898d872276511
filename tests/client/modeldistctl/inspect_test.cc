// `modeldistctl inspect` and `publish --check` run the server's model checks on local files;
// `publish` of a broken file to a real server with the checks on is refused with the server's
// message, and `show` prints what a good file holds.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/server.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/model_files.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::CoreMlZipSpec;
using ::modeldist::testing::GgufSpec;
using ::modeldist::testing::MakeCoreMlZip;
using ::modeldist::testing::MakeGguf;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;
using ::testing::Not;

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(gguf_, MakeGguf(GgufSpec{}));
    GgufSpec broken;
    broken.omit_tokens = true;
    WriteFile(broken_gguf_, MakeGguf(broken));
    WriteFile(zip_, MakeCoreMlZip(CoreMlZipSpec{}));
    WriteFile(text_, "just some text\n");
  }

  ScratchDir dir_;
  const std::string gguf_ = dir_.Join("tiny.gguf");
  const std::string broken_gguf_ = dir_.Join("broken.gguf");
  const std::string zip_ = dir_.Join("tiny-coreml.zip");
  const std::string text_ = dir_.Join("notes.txt");
};

TEST_F(InspectTest, GoodFilesPrintWhatTheyHold) {
  CtlRun run = RunInProcess({"inspect", gguf_, zip_});
  EXPECT_EQ(run.code, kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr(gguf_ + ": gguf ok"));
  EXPECT_THAT(run.out, HasSubstr("llama"));
  EXPECT_THAT(run.out, HasSubstr("Q4_K_M"));
  EXPECT_THAT(run.out, HasSubstr("2048"));
  EXPECT_THAT(run.out, HasSubstr(zip_ + ": coreml-zip ok"));
  EXPECT_THAT(run.out, HasSubstr("TinyLlama"));
}

TEST_F(InspectTest, BrokenFileExitsFourAndSaysWhy) {
  CtlRun run = RunInProcess({"inspect", gguf_, broken_gguf_});
  EXPECT_EQ(run.code, kExitDamage);
  EXPECT_THAT(run.out, HasSubstr(broken_gguf_ + ": gguf INVALID"));
  EXPECT_THAT(run.out, HasSubstr("tokenizer.ggml.tokens"));
  EXPECT_THAT(run.err, HasSubstr("1 of 2 files would be refused"));
}

TEST_F(InspectTest, JsonNamesEachFile) {
  CtlRun run = RunInProcess({"inspect", "--json", gguf_, broken_gguf_});
  EXPECT_EQ(run.code, kExitDamage);
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("{\"file\":\"", gguf_,
                                              "\",\"format\":\"gguf\",\"valid\":true")));
  EXPECT_THAT(run.out, HasSubstr("\"contextLength\":\"2048\""));
  EXPECT_THAT(run.out,
              HasSubstr(absl::StrCat("{\"file\":\"", broken_gguf_,
                                     "\",\"format\":\"gguf\",\"valid\":false,\"error\":")));
}

TEST_F(InspectTest, FormatComesFromTheBytesOrTheFlag) {
  CtlRun unknown = RunInProcess({"inspect", text_});
  EXPECT_EQ(unknown.code, kExitUsage);
  EXPECT_THAT(unknown.err, HasSubstr("give its --format"));
  // Told it is a GGUF, the text file is checked as one and refused.
  CtlRun forced = RunInProcess({"inspect", "--format", "gguf", text_});
  EXPECT_EQ(forced.code, kExitDamage);
  EXPECT_THAT(forced.out, HasSubstr("INVALID"));
  CtlRun missing = RunInProcess({"inspect", dir_.Join("nope.gguf")});
  EXPECT_EQ(missing.code, kExitLocal);
}

TEST_F(InspectTest, RequiredFilesAreConfigurable) {
  CtlRun run = RunInProcess({"inspect", "--require-file", "merges.txt", zip_});
  EXPECT_EQ(run.code, kExitDamage);
  EXPECT_THAT(run.out, HasSubstr("merges.txt"));
}

// A GGUF whose name is not UTF-8 and whose architecture carries a terminal escape sequence.
std::string HostileTextGguf() {
  GgufSpec spec;
  spec.name = "Tiny \xff\xfe Llama";
  spec.architecture = "llama\x1b]0;owned\x07";
  return MakeGguf(spec);
}

TEST_F(InspectTest, HostileTextIsPrintedEscaped) {
  const std::string hostile = dir_.Join("hostile.gguf");
  WriteFile(hostile, HostileTextGguf());
  CtlRun text = RunInProcess({"inspect", hostile});
  EXPECT_EQ(text.code, kExitOk) << text.err;
  EXPECT_THAT(text.out, HasSubstr("  name: Tiny \\xff\\xfe Llama\n"));
  EXPECT_THAT(text.out, HasSubstr("  architecture: llama\\x1b]0;owned\\x07\n"));
  EXPECT_THAT(text.out, Not(HasSubstr("\x1b")));
  // The valid file's model info is printed, not null.
  CtlRun json = RunInProcess({"inspect", "--json", hostile});
  EXPECT_EQ(json.code, kExitOk) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"valid\":true"));
  EXPECT_THAT(json.out, HasSubstr("\"name\":\"Tiny \\\\xff\\\\xfe Llama\""));
  EXPECT_THAT(json.out, Not(HasSubstr("\"modelInfo\":null")));
}

TEST_F(InspectTest, RequireFileDoesNotAllowMoreNextToThePackage) {
  CoreMlZipSpec spec;
  spec.top_level_files = {"tokenizer.json", "labels.txt"};
  const std::string zip = dir_.Join("labels.zip");
  WriteFile(zip, MakeCoreMlZip(spec));
  // The server refuses the file with its default options; so must the local check that asks
  // for it.
  CtlRun run = RunInProcess({"publish", "--check", "--require-file", "labels.txt", "--model", "m",
                             "--version", "1", "--tier", "t", "macos/arm64/coreml-zip=" + zip});
  EXPECT_EQ(run.code, kExitDamage) << run.err;
  EXPECT_THAT(run.out, HasSubstr("entry \"labels.txt\": outside the package"));
}

TEST_F(InspectTest, PublishCheckSendsNothing) {
  // No --server: --check must not need one.
  CtlRun good = RunInProcess({"publish", "--check", "--model", "m", "--version", "1", "--tier", "t",
                              "macos/arm64/coreml-zip=" + zip_, "macos/x86_64/gguf=" + gguf_});
  EXPECT_EQ(good.code, kExitOk) << good.err;
  EXPECT_THAT(good.out, HasSubstr(zip_ + ": coreml-zip ok"));
  EXPECT_THAT(good.out, HasSubstr(gguf_ + ": gguf ok"));
  // The declared format is what is checked: a GGUF declared as a CoreML zip is refused.
  CtlRun wrong = RunInProcess({"publish", "--check", "--model", "m", "--version", "1", "--tier",
                               "t", "macos/arm64/coreml-zip=" + gguf_});
  EXPECT_EQ(wrong.code, kExitDamage);
  EXPECT_THAT(wrong.out, HasSubstr("coreml-zip INVALID"));
}

// Publishing through a real in-process server with the checks on.
class InspectRealServerTest : public InspectTest {
 protected:
  void SetUp() override {
    InspectTest::SetUp();
    WriteFile(token_file_, absl::StrCat(modeldist::testing::kTestToken, "\n"));
  }
  CtlRun Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                               "--token-file", token_file_});
    return RunInProcess(args);
  }

  modeldist::testing::TestServer server_{services::ServerConfig{},
                                         modeldist::testing::TestServer::ModelChecks::kOn};
  const std::string token_file_ = dir_.Join("token");
};

TEST_F(InspectRealServerTest, BrokenFileIsRefusedByTheServer) {
  CtlRun run = Ctl({"publish", "--model", "m", "--version", "1", "--tier", "t",
                    "macos/x86_64/gguf=" + broken_gguf_});
  EXPECT_EQ(run.code, kExitRpc);
  EXPECT_THAT(run.err, HasSubstr("GGUF_INVALID"));
  EXPECT_THAT(run.err, HasSubstr("tokenizer.ggml.tokens"));
  CtlRun show = Ctl({"show", "models/m/versions/1"});
  EXPECT_THAT(show.out, HasSubstr("state:      DRAFT"));
}

TEST_F(InspectRealServerTest, ShowPrintsWhatTheServerRead) {
  CtlRun publish = Ctl(
      {"publish", "--model", "m", "--version", "1", "--tier", "t", "macos/x86_64/gguf=" + gguf_});
  ASSERT_EQ(publish.code, kExitOk) << publish.err;
  CtlRun show = Ctl({"show", "models/m/versions/1"});
  EXPECT_EQ(show.code, kExitOk) << show.err;
  EXPECT_THAT(show.out, HasSubstr("    model:\n"));
  EXPECT_THAT(show.out, HasSubstr("Q4_K_M"));
  EXPECT_THAT(show.out, Not(HasSubstr("model:\n      \n")));
}

// The server keeps what it read of a file whose text is hostile, and `show` prints it escaped.
TEST_F(InspectRealServerTest, HostileTextSurvivesTheCatalog) {
  const std::string hostile = dir_.Join("hostile.gguf");
  WriteFile(hostile, HostileTextGguf());
  CtlRun publish = Ctl(
      {"publish", "--model", "m", "--version", "1", "--tier", "t", "macos/x86_64/gguf=" + hostile});
  ASSERT_EQ(publish.code, kExitOk) << publish.err;
  CtlRun show = Ctl({"show", "models/m/versions/1"});
  EXPECT_EQ(show.code, kExitOk) << show.err;
  EXPECT_THAT(show.out, HasSubstr("name: Tiny \\xff\\xfe Llama"));
  EXPECT_THAT(show.out, HasSubstr("Q4_K_M"));
  EXPECT_THAT(show.out, Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace modeldist::ctl
