// Tests of the command line as a whole (commands.h): global flags, the admin token, the
// removed --actor, help, usage errors of every command before any call, and exit codes.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/modeldistctl/commands.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(FlagsParsePrefixTest, StopsAtTheCommand) {
  Flags flags;
  flags.Add("server", "HOST:PORT", "d", "");
  flags.AddBool("json", "");
  std::vector<std::string> args = {"ctl", "--server", "h:1", "--json", "publish", "--model", "m"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  absl::StatusOr<int> at = flags.ParsePrefix(static_cast<int>(argv.size()), argv.data());
  ASSERT_THAT(at, IsOk());
  EXPECT_EQ(*at, 4);
  EXPECT_EQ(flags.Get("server"), "h:1");
  EXPECT_TRUE(flags.GetBool("json"));
  EXPECT_TRUE(flags.positional().empty());
}

TEST(FlagsParsePrefixTest, DoubleDashEndsFlagsAndUnknownFlagsFail) {
  Flags flags;
  flags.Add("server", "HOST:PORT", "d", "");
  std::vector<std::string> args = {"ctl", "--server=x:2", "--", "--weird"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  EXPECT_EQ(*flags.ParsePrefix(4, argv.data()), 3);
  EXPECT_EQ(flags.Get("server"), "x:2");

  Flags other;
  other.Add("server", "HOST:PORT", "d", "");
  std::vector<std::string> bad = {"ctl", "--nope", "list"};
  std::vector<char*> bad_argv;
  for (auto& a : bad) bad_argv.push_back(a.data());
  EXPECT_THAT(other.ParsePrefix(3, bad_argv.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--nope")));
  std::vector<std::string> trailing = {"ctl", "--server"};
  std::vector<char*> trailing_argv;
  for (auto& a : trailing) trailing_argv.push_back(a.data());
  EXPECT_THAT(other.ParsePrefix(2, trailing_argv.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
}

TEST(ParseCommandLineTest, GlobalFlagsBeforeTheCommand) {
  auto line = ParseCommandLine(
      {"modeldistctl", "--server", "h:9", "--token-file", "t", "--json", "list", "--tiers"},
      Env({}));
  ASSERT_THAT(line, IsOk());
  EXPECT_EQ(line->global.server, "h:9");
  EXPECT_EQ(line->global.token_file, "t");
  EXPECT_TRUE(line->global.json);
  EXPECT_EQ(line->command_args, (std::vector<std::string>{"list", "--tiers"}));
}

TEST(ParseCommandLineTest, ServerDefaultsFromEnvironmentThenLoopback) {
  EXPECT_EQ(ParseCommandLine({"modeldistctl", "list"}, Env({}))->global.server, kDefaultServer);
  EXPECT_EQ(
      ParseCommandLine({"modeldistctl", "list"}, Env({{"MODELDIST_SERVER", "e:1"}}))->global.server,
      "e:1");
  EXPECT_EQ(
      ParseCommandLine({"modeldistctl", "--server=f:2", "list"}, Env({{"MODELDIST_SERVER", "e:1"}}))
          ->global.server,
      "f:2");
}

TEST(ParseCommandLineTest, CommandFlagsAreNotGlobal) {
  auto line = ParseCommandLine({"modeldistctl", "--model", "m", "list"}, Env({}));
  EXPECT_THAT(line, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--model")));
  EXPECT_EQ(ExitCodeFor(line.status()), kExitUsage);
}

TEST(LoadAdminTokenTest, FirstLineOfFileTrimmedElseEnvironment) {
  ScratchDir dir;
  WriteFile(dir.Join("token"), "  secret-token-value \nsecond line\n");
  EXPECT_EQ(*LoadAdminToken(dir.Join("token"), Env({{"MODELDIST_ADMIN_TOKEN", "env"}})),
            "secret-token-value");
  EXPECT_EQ(*LoadAdminToken("", Env({{"MODELDIST_ADMIN_TOKEN", "env-token"}})), "env-token");
}

TEST(LoadAdminTokenTest, ErrorsNeverShowTheToken) {
  ScratchDir dir;
  auto none = LoadAdminToken("", Env({}));
  EXPECT_EQ(ExitCodeFor(none.status()), kExitUsage);
  EXPECT_THAT(none,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MODELDIST_ADMIN_TOKEN")));
  auto missing = LoadAdminToken(dir.Join("absent"), Env({}));
  EXPECT_EQ(ExitCodeFor(missing.status()), kExitLocal);
  WriteFile(dir.Join("bad"), std::string("sekrit\x01value"));
  auto bad = LoadAdminToken(dir.Join("bad"), Env({}));
  EXPECT_EQ(ExitCodeFor(bad.status()), kExitUsage);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("sekrit"))));
  WriteFile(dir.Join("empty"), "\n");
  EXPECT_EQ(ExitCodeFor(LoadAdminToken(dir.Join("empty"), Env({})).status()), kExitUsage);
}

TEST(RunCtlTest, HelpListsEveryCommandWithAnExample) {
  CtlRun run = RunInProcess({"--help"});
  EXPECT_EQ(run.code, kExitOk);
  constexpr const char* kCommands[] = {"publish", "list",  "show", "set-tier", "yank", "rollout",
                                       "pin",     "unpin", "pins", "audit",    "keys"};
  for (const char* c : kCommands) {
    EXPECT_THAT(run.out, HasSubstr(absl::StrCat("\n  ", c, " ")));
    EXPECT_THAT(run.out, HasSubstr(absl::StrCat("modeldistctl ", c, " ")));
  }
  EXPECT_THAT(run.out, Not(HasSubstr("--actor")));
  for (const char* c : kCommands) {
    CtlRun sub = RunInProcess({c, "--help"});
    EXPECT_EQ(sub.code, kExitOk) << c;
    EXPECT_THAT(sub.out, HasSubstr("usage: modeldistctl")) << c;
    EXPECT_THAT(sub.out, HasSubstr("example:")) << c;
  }
  EXPECT_EQ(RunInProcess({"help", "publish"}).out, RunInProcess({"publish", "--help"}).out);
}

TEST(RunCtlTest, UsageErrorsExitOne) {
  EXPECT_EQ(RunInProcess({}).code, kExitUsage);
  CtlRun unknown = RunInProcess({"frobnicate"});
  EXPECT_EQ(unknown.code, kExitUsage);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command \"frobnicate\""));
  CtlRun no_model =
      RunInProcess({"publish", "--version", "1", "f"}, {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(no_model.code, kExitUsage);
  EXPECT_THAT(no_model.err, HasSubstr("--model is required"));
  CtlRun bad_id = RunInProcess({"publish", "--model", "../etc", "--version", "1", "--platform",
                                "macos", "--arch", "arm64", "--format", "gguf", "--tier", "t", "f"},
                               {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(bad_id.code, kExitUsage);
  EXPECT_THAT(bad_id.err, HasSubstr("--model"));
  EXPECT_EQ(RunInProcess({"show", "models/m"}).code, kExitUsage);
  EXPECT_EQ(RunInProcess({"show", "a", "b", "c"}).code, kExitUsage);
  EXPECT_EQ(RunInProcess({"set-tier", "--tier", "t"}).code, kExitUsage);
  EXPECT_EQ(RunInProcess({"list", "--tiers", "m"}).code, kExitUsage);
  EXPECT_EQ(RunInProcess({"keys", "rotate", "--out", "x"}).code, kExitUsage);
  CtlRun no_token = RunInProcess({"list"});
  EXPECT_EQ(no_token.code, kExitUsage);
  EXPECT_THAT(no_token.err, HasSubstr("--token-file"));
}

TEST(RunCtlTest, UnreachableServerExitsTwoWithCodeName) {
  // Port 1 on loopback refuses connections at once.
  CtlRun run =
      RunInProcess({"--server", "127.0.0.1:1", "list"}, {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitRpc);
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(run.err, Not(HasSubstr(kToken)));
}

TEST(ActorTest, TheRemovedActorFlagIsAUsageErrorThatSaysWhy) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"modeldistctl", "--actor", "ci@runner-7", "pins"},
        std::vector<std::string>{"modeldistctl", "--actor=ci", "pins"},
        std::vector<std::string>{"modeldistctl", "pins", "--actor", "ci"}}) {
    auto line = ParseCommandLine(args, Env({}));
    EXPECT_EQ(ExitCodeFor(line.status()), kExitUsage) << absl::StrJoin(args, " ");
    EXPECT_THAT(line.status().message(),
                HasSubstr("--actor was removed: the audit log records the authenticated "
                          "credential's name"));
  }
  CtlRun run = RunInProcess({"--actor", "ci", "pins"});
  EXPECT_EQ(run.code, kExitUsage);
  EXPECT_THAT(run.err, HasSubstr("--actor was removed"));
}

TEST(RunCtlTest, FleetCommandUsageErrorsExitOneBeforeAnyCall) {
  // No token is set: each of these must fail on its arguments first, and say why.
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"rollout", "start", "--version", "models/m/versions/1", "--percent", "5"},
       "--tier is required"},
      {{"rollout", "start", "--tier", "t", "--version", "models/m/versions/1", "--percent", "150"},
       "out of range"},
      {{"rollout", "start", "--tier", "t", "--percent", "5"}, "--version is required"},
      {{"rollout", "start", "--tier", "t", "--version", "models/m/versions/1"},
       "--percent is required"},
      {{"rollout", "advance", "--tier", "t", "--percent", "half"}, "is not a percent"},
      {{"rollout", "pause", "--tier", "t", "--percent", "5"},
       "rollout pause does not take --percent"},
      {{"rollout", "abort"}, "--tier is required"},
      {{"rollout", "list", "--channel", "beta"}, "--channel needs --tier"},
      {{"rollout", "rewind", "--tier", "t"}, "unknown rollout subcommand \"rewind\""},
      {{"rollout"}, "rollout needs a subcommand"},
      {{"pin", "--tier", "t", "--version", "models/m/versions/1"}, "pin needs device ids"},
      {{"pin", "--tier", "t", "d1"}, "--version is required"},
      {{"pin", "--version", "models/m/versions/1", "d1"}, "--tier is required"},
      {{"pin", "--tier", "t", "--version", "models/m/versions/1", std::string(129, 'd')},
       "at most 128"},
      {{"unpin", "--tier", "t"}, "unpin needs device ids"},
      {{"pins", "extra"}, "unexpected argument"},
      {{"audit", "--limit", "-1"}, "--limit"},
      {{"audit", "--limit", "ten"}, "--limit"},
      {{"keys", "revoke"}, "exactly one KEY_ID"},
      {{"keys", "rotate", "--count", "17"}, "--count"},
      {{"keys", "add", "--threshold", "0"}, "--threshold"},
      {{"keys", "add", "--count", "2"}, "keys add does not take --count"},
      {{"keys", "generate", "--out", "x", "--threshold", "2"}, "does not take --threshold"},
      {{"keys", "root", "--version", "-3"}, "--version"},
      {{"keys", "root", "--threshold", "1"}, "does not take --threshold"},
      {{"keys", "lose"}, "unknown keys subcommand"},
      {{"publish", "--model", "m", "--version", "1", "--tier", "t", "--min-ram", "8GB",
        "macos/arm64/gguf=f"},
       "--min-ram"},
      {{"publish", "--model", "m", "--version", "1", "--tier", "t", "--requires", "tpu",
        "macos/arm64/gguf=f"},
       "unknown accelerator \"tpu\""},
  };
  for (const auto& [args, message] : cases) {
    CtlRun run = RunInProcess(args);
    EXPECT_EQ(run.code, kExitUsage) << absl::StrJoin(args, " ") << "\n" << run.err;
    EXPECT_THAT(run.err, HasSubstr(message)) << absl::StrJoin(args, " ");
  }
}

TEST_F(FakeServerTest, NoCallCarriesAnActorHeaderTheTokenNamesTheCaller) {
  CtlRun run = RunInProcess(Ctl({"pins"}), {{"USER", "dora"}});
  ASSERT_EQ(run.code, kExitOk) << run.err;

  // Publish makes many calls, the upload stream included.
  CtlRun publish = RunInProcess(Ctl({"publish", "--model", "llama", "--version", "9.0", "--tier",
                                     "llama8b", absl::StrCat("macos/x86_64/gguf=", path_)}));
  ASSERT_EQ(publish.code, kExitOk) << publish.err;
  EXPECT_EQ(fake_.actor_headers(), 0);
  std::vector<std::string> callers = fake_.callers();
  EXPECT_GE(callers.size(), 6u);
  for (const std::string& caller : callers) EXPECT_EQ(caller, "admin");
}

}  // namespace
}  // namespace modeldist::ctl
