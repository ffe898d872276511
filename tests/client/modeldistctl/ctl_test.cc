// Unit tests of modeldistctl: argument and enum parsing, exit codes, the retry policy,
// progress formatting, and the resumable uploader and publish flow against a small
// hand-written fake RegistryService (upload and publish rpcs only) served in-process; and, at
// the end, publish reruns against a real in-process server, whose tier sequences, audit log and
// blob store are what idempotence is about.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/commands.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/upload.h"
#include "common/digest.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/status.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/test_server.h"
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

constexpr char kToken[] = "test-admin-token-0123456789";

std::function<std::optional<std::string>(const std::string&)> Env(
    std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

// --- Enums -----------------------------------------------------------------------------------

TEST(EnumsTest, AcceptsShortAndProtoNamesInAnyCase) {
  EXPECT_EQ(*ParsePlatform("platform", "macos"), v1::PLATFORM_MACOS);
  EXPECT_EQ(*ParsePlatform("platform", "IOS"), v1::PLATFORM_IOS);
  EXPECT_EQ(*ParsePlatform("platform", "PLATFORM_ANDROID"), v1::PLATFORM_ANDROID);
  EXPECT_EQ(*ParseArch("arch", "x86_64"), v1::ARCH_X86_64);
  EXPECT_EQ(*ParseArch("arch", "X86-64"), v1::ARCH_X86_64);
  EXPECT_EQ(*ParseArch("arch", "ARCH_ARM64"), v1::ARCH_ARM64);
  EXPECT_EQ(*ParseArch("arch", "any"), v1::ARCH_ANY);
  EXPECT_EQ(*ParseFormat("format", "coreml-zip"), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(*ParseFormat("format", "COREML_ZIP"), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(*ParseFormat("format", "FORMAT_GGUF"), v1::FORMAT_GGUF);
  EXPECT_EQ(*ParseFormat("format", "tflite"), v1::FORMAT_TFLITE);
}

TEST(EnumsTest, RejectsUnknownAndUnspecifiedAsUsageErrors) {
  auto bad = ParsePlatform("platform", "beos");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("--platform"), HasSubstr("beos"),
                                  HasSubstr("macos, ios, linux, windows, android"))));
  EXPECT_EQ(ExitCodeFor(bad.status()), kExitUsage);
  EXPECT_FALSE(ParsePlatform("platform", "PLATFORM_UNSPECIFIED").ok());
  EXPECT_FALSE(ParseArch("arch", "").ok());
  EXPECT_FALSE(ParseFormat("format", "zip").ok());
}

TEST(EnumsTest, NamesRoundTrip) {
  for (v1::Format f : {v1::FORMAT_COREML_ZIP, v1::FORMAT_GGUF, v1::FORMAT_SAFETENSORS,
                       v1::FORMAT_ONNX, v1::FORMAT_TFLITE}) {
    EXPECT_EQ(*ParseFormat("format", FormatName(f)), f);
  }
  EXPECT_EQ(PlatformName(v1::PLATFORM_MACOS), "macos");
  EXPECT_EQ(ArchName(v1::ARCH_X86_64), "x86_64");
  EXPECT_EQ(FormatName(v1::FORMAT_UNSPECIFIED), "unspecified");
  EXPECT_EQ(StateName(v1::Version::PUBLISHED), "PUBLISHED");
}

// --- Errors ----------------------------------------------------------------------------------

TEST(ErrorsTest, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(UsageError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(LocalError(absl::NotFoundError("x"))), kExitLocal);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("x")), kExitRpc);
  EXPECT_THAT(LocalError(absl::OkStatus()), IsOk());
  // A DATA_LOSS from the server is an RPC error; only the CLI's own finding means "damage".
  EXPECT_EQ(ExitCodeFor(DamageFound("1 damaged")), kExitDamage);
  EXPECT_EQ(ExitCodeFor(absl::DataLossError("x")), kExitRpc);
  EXPECT_EQ(DescribeError(DamageFound("the scrub found 1 damaged")), "the scrub found 1 damaged");
}

TEST(ErrorsTest, DescribeNamesCodeAndReasonOfServerErrors) {
  absl::Status status = MakeError(absl::StatusCode::kFailedPrecondition, "ARTIFACT_NOT_UPLOADED",
                                  "artifact sha256:ab is not uploaded");
  EXPECT_EQ(DescribeError(status),
            "FAILED_PRECONDITION: artifact sha256:ab is not uploaded [ARTIFACT_NOT_UPLOADED]");
  EXPECT_EQ(DescribeError(UsageError("--model is required")), "--model is required");
}

TEST(FromGrpcStatusTest, KeepsCodeMessageAndErrorInfoReason) {
  v1::ErrorInfo info;
  info.set_reason("VERSION_EXISTS");
  info.set_domain("modeldist.dev");
  v1::RpcStatus details;
  details.set_code(grpc::ALREADY_EXISTS);
  details.set_message("exists");
  auto* any = details.add_details();
  any->set_type_url(std::string(kErrorInfoPayload));
  any->set_value(info.SerializeAsString());
  absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::ALREADY_EXISTS, "exists", details.SerializeAsString()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAlreadyExists, "exists"));
  EXPECT_EQ(ErrorReason(status), "VERSION_EXISTS");
  EXPECT_EQ(ErrorReason(FromGrpcStatus(grpc::Status(grpc::UNAVAILABLE, "down"))), "");
}

// --- Command line ----------------------------------------------------------------------------

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

// Runs RunCtl with captured output.
struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

CtlRun RunInProcess(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  std::ostringstream out, err;
  Console console;
  console.out = &out;
  console.err = &err;
  console.getenv = Env(std::move(env));
  args.insert(args.begin(), "modeldistctl");
  CtlRun run;
  run.code = RunCtl(args, console);
  run.out = out.str();
  run.err = err.str();
  return run;
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
  EXPECT_THAT(run.out, HasSubstr("--actor NAME"));
  for (const char* c : kCommands) {
    CtlRun sub = RunInProcess({c, "--help"});
    EXPECT_EQ(sub.code, kExitOk) << c;
    EXPECT_THAT(sub.out, HasSubstr("usage: modeldistctl")) << c;
    EXPECT_THAT(sub.out, HasSubstr("example:")) << c;
  }
  EXPECT_EQ(RunInProcess({"help", "publish"}).out, RunInProcess({"publish", "--help"}).out);
}

TEST(RunCtlTest, PublishHelpShowsBothFormsAndTheTwoArtifactExample) {
  constexpr char kExample[] =
      "macos/arm64/coreml-zip=llama-3.1-8b-instruct-coreml.zip \\\n"
      "      macos/x86_64/gguf=llama-3.1-8b-instruct-q4_0.gguf";
  CtlRun main = RunInProcess({"--help"});
  EXPECT_THAT(main.out, HasSubstr(kExample));
  CtlRun publish = RunInProcess({"publish", "--help"});
  EXPECT_THAT(publish.out, HasSubstr(kExample));
  EXPECT_THAT(publish.out, HasSubstr("PLATFORM/ARCH/FORMAT=FILE..."));
  EXPECT_THAT(publish.out, HasSubstr("--platform P --arch A"));
}

TEST(RunCtlTest, PublishUsageErrorsOfThePositionalFormExitOne) {
  const std::vector<std::string> head = {"publish", "--model", "m", "--version",
                                         "1",       "--tier",  "t"};
  auto run = [&head](std::vector<std::string> rest) {
    std::vector<std::string> args = head;
    args.insert(args.end(), rest.begin(), rest.end());
    return RunInProcess(args, {{"MODELDIST_ADMIN_TOKEN", kToken}});
  };
  CtlRun mixed = run({"--platform", "macos", "--arch", "arm64", "--format", "coreml-zip",
                      "llama.zip", "macos/x86_64/gguf=llama.gguf"});
  EXPECT_EQ(mixed.code, kExitUsage);
  EXPECT_THAT(mixed.err, HasSubstr("cannot be mixed with --platform"));
  EXPECT_THAT(mixed.err, HasSubstr("publish --help"));
  CtlRun twice = run({"macos/arm64/gguf=a.gguf", "macos/arm64/gguf=b.gguf"});
  EXPECT_EQ(twice.code, kExitUsage);
  EXPECT_THAT(twice.err, HasSubstr("given twice"));
  CtlRun no_eq = run({"macos/arm64/gguf"});
  EXPECT_EQ(no_eq.code, kExitUsage);
  EXPECT_THAT(no_eq.err, HasSubstr("missing '='"));
  CtlRun bad = run({"macos/arm64/coreml-zip=a.zip", "beos/x86_64/gguf=b.gguf"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("unknown platform \"beos\""));
  EXPECT_EQ(run({}).code, kExitUsage);
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

TEST(RunCtlTest, MissingSecondFileExitsThree) {
  ScratchDir dir;
  WriteFile(dir.Join("llama.zip"), "zip bytes");
  CtlRun run = RunInProcess({"publish", "--model", "m", "--version", "1", "--tier", "t",
                             absl::StrCat("macos/arm64/coreml-zip=", dir.Join("llama.zip")),
                             absl::StrCat("macos/x86_64/gguf=", dir.Join("absent.gguf"))},
                            {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitLocal);
  EXPECT_THAT(run.err, HasSubstr("absent.gguf"));
}

TEST(RunCtlTest, MissingFileExitsThree) {
  ScratchDir dir;
  CtlRun run =
      RunInProcess({"publish", "--model", "m", "--version", "1", "--platform", "macos", "--arch",
                    "arm64", "--format", "COREML_ZIP", "--tier", "t", dir.Join("absent.zip")},
                   {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitLocal);
  EXPECT_THAT(run.err, HasSubstr("absent.zip"));
}

TEST(RunCtlTest, UnreachableServerExitsTwoWithCodeName) {
  // Port 1 on loopback refuses connections at once.
  CtlRun run =
      RunInProcess({"--server", "127.0.0.1:1", "list"}, {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitRpc);
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(run.err, Not(HasSubstr(kToken)));
}

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

// --- Percent, actor, constraints -------------------------------------------------------------

TEST(ParsePercentTest, DecimalsBecomeBasisPoints) {
  EXPECT_EQ(*ParsePercent("percent", "0.5"), 50);
  EXPECT_EQ(*ParsePercent("percent", "1"), 100);
  EXPECT_EQ(*ParsePercent("percent", "10"), 1000);
  EXPECT_EQ(*ParsePercent("percent", "50"), 5000);
  EXPECT_EQ(*ParsePercent("percent", "100"), 10000);
  EXPECT_EQ(*ParsePercent("percent", "100.000"), 10000);
  EXPECT_EQ(*ParsePercent("percent", "0"), 0);
  EXPECT_EQ(*ParsePercent("percent", "0.01"), 1);
  EXPECT_EQ(*ParsePercent("percent", "12.34"), 1234);
  EXPECT_EQ(*ParsePercent("percent", ".5"), 50);
  EXPECT_EQ(*ParsePercent("percent", "007"), 700);
  EXPECT_EQ(*ParsePercent("percent", "25%"), 2500);
  // Rounded half up at the third decimal, exactly (0.285 * 100 is 28.499... as a double).
  EXPECT_EQ(*ParsePercent("percent", "0.285"), 29);
  EXPECT_EQ(*ParsePercent("percent", "0.125"), 13);
  EXPECT_EQ(*ParsePercent("percent", "0.004"), 0);
  EXPECT_EQ(*ParsePercent("percent", "99.999"), 10000);
}

TEST(ParsePercentTest, RejectsOutOfRangeAndNonNumbersAsUsageErrors) {
  for (const char* text : {"101", "100.01", "1000", "99999999999999999999"}) {
    absl::StatusOr<int32_t> bp = ParsePercent("percent", text);
    EXPECT_THAT(bp, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("--percent"), HasSubstr("out of range"))))
        << text;
    EXPECT_EQ(ExitCodeFor(bp.status()), kExitUsage);
  }
  for (const char* text : {"", ".", "-1", "+5", "abc", "1e2", "0x10", "5 %", "1.2.3", "nan"}) {
    EXPECT_THAT(ParsePercent("percent", text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a percent")))
        << text;
  }
}

TEST(ParsePercentTest, FormatsBasisPointsAsTheyWouldBeTyped) {
  EXPECT_EQ(FormatBasisPoints(50), "0.5%");
  EXPECT_EQ(FormatBasisPoints(1000), "10%");
  EXPECT_EQ(FormatBasisPoints(1234), "12.34%");
  EXPECT_EQ(FormatBasisPoints(5), "0.05%");
  EXPECT_EQ(FormatBasisPoints(0), "0%");
  EXPECT_EQ(FormatBasisPoints(10000), "100%");
  for (int32_t bp : {1, 50, 99, 1234, 10000}) {
    EXPECT_EQ(*ParsePercent("percent", FormatBasisPoints(bp)), bp);
  }
}

TEST(ActorTest, SanitizesToPrintableAsciiOfAtMost128Bytes) {
  EXPECT_EQ(SanitizeActor("  alice@build-01 \n"), "alice@build-01");
  EXPECT_EQ(SanitizeActor("bob\x01@h\xc3\xa9st"), "bob?@h??st");
  EXPECT_EQ(SanitizeActor(std::string(300, 'x')).size(), kMaxActorBytes);
}

TEST(ActorTest, DefaultIsUserAtHost) {
  std::string actor = DefaultActor(Env({{"USER", "carol"}}));
  EXPECT_TRUE(absl::StartsWith(actor, "carol@")) << actor;
  EXPECT_GT(actor.size(), std::string("carol@").size());
  // Without $USER the password database names the user; either way there is a user@host.
  std::string fallback = DefaultActor(Env({}));
  EXPECT_THAT(fallback, HasSubstr("@"));
  EXPECT_NE(fallback.front(), '@');
  EXPECT_LE(DefaultActor(Env({{"USER", std::string(200, 'u')}})).size(), kMaxActorBytes);
}

TEST(ActorTest, ExplicitActorIsCheckedNotRewritten) {
  EXPECT_EQ(*ValidateActor("release-bot"), "release-bot");
  EXPECT_EQ(ExitCodeFor(ValidateActor("").status()), kExitUsage);
  EXPECT_THAT(ValidateActor(std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 128")));
  EXPECT_THAT(ValidateActor("tab\there"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("printable ASCII")));
  auto line = ParseCommandLine({"modeldistctl", "--actor", "ci@runner-7", "pins"}, Env({}));
  ASSERT_THAT(line, IsOk());
  EXPECT_EQ(line->global.actor, "ci@runner-7");
  EXPECT_EQ(ExitCodeFor(ParseCommandLine({"modeldistctl", "--actor=", "pins"}, Env({})).status()),
            kExitUsage);
}

TEST(EnumsTest, AcceleratorListsAreDeduplicatedAndStrict) {
  auto list = ParseAccelerators("requires", "ane,METAL, cuda,ACCELERATOR_VULKAN,ane");
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(*list, (std::vector<v1::Accelerator>{v1::ACCELERATOR_ANE, v1::ACCELERATOR_METAL,
                                                 v1::ACCELERATOR_CUDA, v1::ACCELERATOR_VULKAN}));
  EXPECT_THAT(ParseAccelerators("requires", "ane,tpu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--requires"), HasSubstr("\"tpu\""), HasSubstr("metal"))));
  EXPECT_THAT(ParseAccelerators("requires", "ane,"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty item")));
  EXPECT_EQ(AcceleratorName(v1::ACCELERATOR_METAL), "metal");
  EXPECT_EQ(RolloutStateName(v1::Rollout::PAUSED), "PAUSED");
}

TEST(PublishArgsTest, ConstraintFlagsFillTheSpec) {
  PublishSpec spec;
  ASSERT_THAT(ParsePublishConstraints("14.4.1", "8GiB", "ane,metal", "3G", &spec), IsOk());
  EXPECT_EQ(spec.constraints.min_os_version(), "14.4.1");
  EXPECT_EQ(spec.constraints.min_ram_bytes(), int64_t{8} << 30);
  ASSERT_EQ(spec.constraints.required_accelerators_size(), 2);
  EXPECT_EQ(spec.constraints.required_accelerators(1), v1::ACCELERATOR_METAL);
  EXPECT_EQ(spec.unpacked_size_bytes, int64_t{3} << 30);

  ASSERT_THAT(ParsePublishConstraints("", "", "", "", &spec), IsOk());
  EXPECT_EQ(spec.constraints.ByteSizeLong(), 0u);
  EXPECT_EQ(spec.unpacked_size_bytes, 0);

  for (const char* os : {"14.", ".14", "14..1", "fourteen", "14.0-beta"}) {
    EXPECT_THAT(ParsePublishConstraints(os, "", "", "", &spec),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--min-os")))
        << os;
  }
  for (const char* size : {"8GB", "0", "-1", "lots"}) {
    absl::Status status = ParsePublishConstraints("", size, "", "", &spec);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--min-ram")))
        << size;
    EXPECT_EQ(ExitCodeFor(status), kExitUsage);
  }
  EXPECT_THAT(ParsePublishConstraints("", "", "", "0", &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--unpacked-size")));
  EXPECT_THAT(ParsePublishConstraints("", "", "gpu", "", &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--requires")));
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

TEST(RunCtlTest, KeysRootNeedsNoToken) {
  // Port 1 refuses at once: the failure is the connection, not a missing token.
  CtlRun run = RunInProcess({"--server", "127.0.0.1:1", "keys", "root"});
  EXPECT_EQ(run.code, kExitRpc) << run.err;
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
}

// --- Publish arguments -----------------------------------------------------------------------

TEST(PublishArgsTest, ParsesPlatformArchFormatEqualsFile) {
  absl::StatusOr<PublishArtifact> a = ParseArtifactArg("macos/arm64/coreml-zip=llama.zip");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->platform, v1::PLATFORM_MACOS);
  EXPECT_EQ(a->arch, v1::ARCH_ARM64);
  EXPECT_EQ(a->format, v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(a->file, "llama.zip");
  // The same names as the flags, and a file name that contains '=' and '/'.
  absl::StatusOr<PublishArtifact> b = ParseArtifactArg("MACOS/X86-64/FORMAT_GGUF=out/q=4.gguf");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->arch, v1::ARCH_X86_64);
  EXPECT_EQ(b->format, v1::FORMAT_GGUF);
  EXPECT_EQ(b->file, "out/q=4.gguf");
  EXPECT_EQ(TargetName(b->platform, b->arch, b->format), "macos/x86_64/gguf");
}

TEST(PublishArgsTest, RejectsBadPartsQuotingTheArgument) {
  auto platform = ParseArtifactArg("beos/arm64/gguf=m.gguf");
  EXPECT_THAT(platform, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("\"beos/arm64/gguf=m.gguf\""),
                                       HasSubstr("unknown platform \"beos\""),
                                       HasSubstr("macos, ios"), Not(HasSubstr("--platform")))));
  EXPECT_EQ(ExitCodeFor(platform.status()), kExitUsage);
  EXPECT_THAT(ParseArtifactArg("macos/sparc/gguf=m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown arch \"sparc\"")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/zip=m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown format \"zip\"")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("missing '='"), HasSubstr("PLATFORM/ARCH/FORMAT=FILE"))));
  EXPECT_THAT(ParseArtifactArg("llama.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing '='")));
  EXPECT_THAT(
      ParseArtifactArg("macos/gguf=m.gguf"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PLATFORM/ARCH/FORMAT before")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/gguf="),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no FILE")));
}

TEST(PublishArgsTest, SeveralTargetsInOrder) {
  auto artifacts = ParsePublishArtifacts(
      "", "", "", {"macos/arm64/coreml-zip=llama.zip", "macos/x86_64/gguf=llama.gguf"});
  ASSERT_THAT(artifacts, IsOk());
  ASSERT_EQ(artifacts->size(), 2u);
  EXPECT_EQ((*artifacts)[0].format, v1::FORMAT_COREML_ZIP);
  EXPECT_EQ((*artifacts)[0].file, "llama.zip");
  EXPECT_EQ((*artifacts)[1].arch, v1::ARCH_X86_64);
  EXPECT_EQ((*artifacts)[1].file, "llama.gguf");
}

TEST(PublishArgsTest, TheSameTargetTwiceIsAUsageError) {
  auto twice =
      ParsePublishArtifacts("", "", "", {"macos/arm64/gguf=a.gguf", "MACOS/ARM64/GGUF=b.gguf"});
  EXPECT_THAT(twice, StatusIs(absl::StatusCode::kInvalidArgument,
                              AllOf(HasSubstr("macos/arm64/gguf is given twice"),
                                    HasSubstr("a.gguf"), HasSubstr("b.gguf"))));
  EXPECT_EQ(ExitCodeFor(twice.status()), kExitUsage);
  // Other arch, other format: both fine.
  EXPECT_THAT(
      ParsePublishArtifacts(
          "", "", "", {"macos/arm64/gguf=a", "macos/x86_64/gguf=b", "macos/arm64/coreml-zip=c"}),
      IsOk());

  PublishSpec spec;
  spec.model_id = "m";
  spec.version_id = "1";
  spec.tier = "t";
  spec.artifacts = {{v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_ONNX, "a"},
                    {v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_ONNX, "b"}};
  EXPECT_THAT(ValidatePublishSpec(spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("ios/arm64/onnx is given twice")));
}

TEST(PublishArgsTest, FlagFormTakesExactlyOneFile) {
  auto one = ParsePublishArtifacts("macos", "arm64", "coreml-zip", {"out/a=b.zip"});
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].platform, v1::PLATFORM_MACOS);
  EXPECT_EQ((*one)[0].file, "out/a=b.zip");  // Not a PLATFORM/ARCH/FORMAT=FILE argument.
  EXPECT_THAT(
      ParsePublishArtifacts("macos", "arm64", "gguf", {"a", "b"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("exactly one FILE"), HasSubstr("PLATFORM/ARCH/FORMAT=FILE"))));
  EXPECT_THAT(ParsePublishArtifacts("macos", "arm64", "gguf", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one FILE")));
  EXPECT_THAT(ParsePublishArtifacts("macos", "", "gguf", {"a"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--arch is required")));
  EXPECT_THAT(ParsePublishArtifacts("beos", "arm64", "gguf", {"a"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--platform: unknown")));
}

TEST(PublishArgsTest, MixingTheFormsIsAUsageErrorThatSaysSo) {
  for (const auto& [platform, args] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"macos", {"macos/x86_64/gguf=llama.gguf"}},
           {"macos", {"llama.zip", "macos/x86_64/gguf=llama.gguf"}},
           {"", {"macos/x86_64/gguf=llama.gguf"}}}) {
    // The last case gives only --arch: still the flag form.
    auto mixed =
        ParsePublishArtifacts(platform, "arm64", platform.empty() ? "" : "coreml-zip", args);
    EXPECT_THAT(mixed, StatusIs(absl::StatusCode::kInvalidArgument,
                                AllOf(HasSubstr("cannot be mixed with --platform"),
                                      HasSubstr("macos/x86_64/gguf=llama.gguf"))))
        << platform;
    EXPECT_EQ(ExitCodeFor(mixed.status()), kExitUsage);
  }
  // Without any of the flags, a bare FILE is the error instead.
  EXPECT_THAT(ParsePublishArtifacts("", "", "", {"macos/arm64/gguf=a", "llama.gguf"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("\"llama.gguf\""), HasSubstr("missing '='"))));
  EXPECT_THAT(ParsePublishArtifacts("", "", "", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PLATFORM/ARCH/FORMAT=FILE")));
}

// --- Retry policy ----------------------------------------------------------------------------

TEST(RetryPolicyTest, RetriesOnlyTheNamedCodesOfServerErrors) {
  RetryPolicy policy;
  EXPECT_TRUE(policy.IsRetryable(absl::UnavailableError("x")));
  EXPECT_TRUE(policy.IsRetryable(absl::DeadlineExceededError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::OkStatus()));
  EXPECT_FALSE(policy.IsRetryable(absl::NotFoundError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::DataLossError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::UnauthenticatedError("x")));
  EXPECT_FALSE(policy.IsRetryable(LocalError(absl::UnavailableError("disk"))));
  policy.retryable_codes.insert(absl::StatusCode::kAborted);
  EXPECT_TRUE(policy.IsRetryable(absl::AbortedError("x")));
}

TEST(RetryPolicyTest, BackoffGrowsExponentiallyUpToTheCapWithJitterBelow) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Seconds(1);
  policy.max_backoff = absl::Seconds(10);
  policy.multiplier = 2;
  policy.jitter = 0.5;
  EXPECT_EQ(policy.Backoff(1, 0.0), absl::Seconds(1));
  EXPECT_EQ(policy.Backoff(2, 0.0), absl::Seconds(2));
  EXPECT_EQ(policy.Backoff(3, 0.0), absl::Seconds(4));
  EXPECT_EQ(policy.Backoff(5, 0.0), absl::Seconds(10));
  EXPECT_EQ(policy.Backoff(50, 0.0), absl::Seconds(10));
  EXPECT_EQ(policy.Backoff(2, 0.5), absl::Milliseconds(1500));
  EXPECT_GT(policy.Backoff(2, 0.999), absl::Seconds(1));
}

// --- Progress --------------------------------------------------------------------------------

TEST(ProgressTest, FormatsBytesAndEta) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytes(1500), "1.50 kB");
  EXPECT_EQ(FormatBytes(52'400'000), "52.4 MB");
  EXPECT_EQ(FormatBytes(4'812'345'678), "4.81 GB");
  EXPECT_EQ(FormatEta(absl::Seconds(7)), "0:07");
  EXPECT_EQ(FormatEta(absl::Seconds(754)), "12:34");
  EXPECT_EQ(FormatEta(absl::Seconds(3723)), "1:02:03");
  EXPECT_EQ(FormatEta(absl::InfiniteDuration()), "--:--");
}

TEST(ProgressTest, LineShowsPercentRateAndEtaOfThisRunOnly) {
  // Resumed at 20 MB, now at 30 MB of 50 MB after 2 s: 5 MB/s, 4 s left.
  EXPECT_EQ(FormatProgressLine("uploading", 20'000'000, 30'000'000, 50'000'000, absl::Seconds(2)),
            "uploading  60.0%  30.0 MB / 50.0 MB  5.00 MB/s  ETA 0:04");
  EXPECT_EQ(FormatProgressLine("hashing", 0, 0, 10, absl::ZeroDuration()),
            "hashing   0.0%  0 B / 10 B  -- MB/s  ETA --:--");
  EXPECT_THAT(FormatProgressLine("x", 0, 10, 10, absl::Seconds(1)), HasSubstr("100.0%"));
}

TEST(ProgressTest, APipeOfUnknownSizeShowsAmountAndRateOnly) {
  EXPECT_EQ(FormatProgressLine("uploading", 0, 21'000'000, -1, absl::Seconds(2)),
            "uploading 21.0 MB  10.5 MB/s");
  EXPECT_EQ(FormatProgressLine("uploading", 0, 0, -1, absl::ZeroDuration()),
            "uploading 0 B  -- MB/s");
}

TEST(ProgressTest, MeterRedrawsInPlaceAtMostEveryIntervalAndClearsAtTheEnd) {
  absl::Time now = absl::FromUnixSeconds(1000);
  std::ostringstream out;
  {
    ProgressMeter meter(&out, true, "up", 0, 100, [&] { return now; });
    meter.Update(10);
    std::string first = out.str();
    EXPECT_EQ(first.front(), '\r');
    meter.Update(20);  // Same instant: no redraw.
    EXPECT_EQ(out.str(), first);
    now += absl::Seconds(1);
    meter.Update(30);
    EXPECT_THAT(out.str(), HasSubstr("30 B / 100 B"));
  }
  EXPECT_EQ(out.str().back(), '\r');

  std::ostringstream quiet;
  {
    ProgressMeter meter(&quiet, false, "up", 0, 100, [&] { return now; });
    meter.Update(50);
  }
  EXPECT_EQ(quiet.str(), "");
}

// --- Fake RegistryService --------------------------------------------------------------------

// Just enough of RegistryService for publish (models, versions, upload sessions, tiers) and for
// the fleet commands (rollouts, pins, audit log, key changes). Faults are injected per test:
// drop the next WriteArtifact stream after N bytes, corrupt a byte on its way in, fail
// QueryUpload, or fail the Nth PinDevices.
// Every call's `x-modeldist-actor` is recorded; the calls that change something also append
// it to the audit log, as the real server does.
class FakeRegistry final : public v1::RegistryService::Service {
 public:
  struct Blob {
    std::string data;
    int64_t size = 0;
    bool complete = false;
  };

  // The next WriteArtifact stream fails with UNAVAILABLE once it has committed `bytes`.
  void DropNextStreamAfter(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    drop_after_ = bytes;
  }
  // The next byte received is flipped, as a bad link or disk would, so the session's digest
  // cannot match.
  void CorruptNextByte() {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_next_byte_ = true;
  }
  // What the upload session `id` holds, committed (not yet finished).
  std::string session_data(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return sessions_[id].data;
  }
  // The next `n` QueryUpload calls fail with UNAVAILABLE.
  void FailQueries(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_queries_ = n;
  }
  Blob blob(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    return blobs_[digest];
  }
  int write_streams() {
    std::lock_guard<std::mutex> lock(mu_);
    return write_streams_;
  }
  int set_tier_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_tier_calls_;
  }
  int64_t bytes_received() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_received_;
  }
  v1::Version version(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return versions_[name];
  }
  bool has_version(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return versions_.count(name) > 0;
  }
  // The `x-modeldist-actor` of every call so far ("<none>" when absent), in order.
  std::vector<std::string> actors() {
    std::lock_guard<std::mutex> lock(mu_);
    return actors_;
  }
  // The device_ids count of every PinDevices call so far.
  std::vector<int> pin_batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return pin_batches_;
  }
  std::map<std::string, v1::DevicePin> pins() {
    std::lock_guard<std::mutex> lock(mu_);
    return pins_;
  }
  // The page_size of every ListAuditLog call so far.
  std::vector<int> audit_page_sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return audit_page_sizes_;
  }
  // PinDevices call number `n` (1-based) fails with UNAVAILABLE.
  void FailPinCall(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_pin_call_ = n;
  }
  // What the key-changing rpcs return.
  void SetKeyChangeResult(v1::SignedTrustRoot root) {
    std::lock_guard<std::mutex> lock(mu_);
    key_change_result_ = std::move(root);
  }
  v1::RotateSigningKeysRequest last_rotate() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_rotate_;
  }

  grpc::Status CreateModel(grpc::ServerContext* context, const v1::CreateModelRequest* request,
                           v1::Model* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    std::string name = absl::StrCat("models/", request->model_id());
    if (!models_.insert(name).second) return grpc::Status(grpc::ALREADY_EXISTS, name);
    response->set_name(name);
    return grpc::Status::OK;
  }

  grpc::Status CreateVersion(grpc::ServerContext* context, const v1::CreateVersionRequest* request,
                             v1::Version* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    if (models_.count(request->parent()) == 0) return grpc::Status(grpc::NOT_FOUND, "model");
    std::string name = absl::StrCat(request->parent(), "/versions/", request->version_id());
    if (versions_.count(name) > 0) return grpc::Status(grpc::ALREADY_EXISTS, name);
    v1::Version& v = versions_[name];
    v.set_name(name);
    v.set_state(v1::Version::DRAFT);
    *v.mutable_artifacts() = request->artifacts();
    for (const v1::Artifact& a : request->artifacts()) blobs_[a.digest()].size = a.size_bytes();
    *response = v;
    return grpc::Status::OK;
  }

  grpc::Status GetVersion(grpc::ServerContext* context, const v1::GetVersionRequest* request,
                          v1::Version* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    auto it = versions_.find(request->name());
    if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->name());
    *response = it->second;
    for (v1::Artifact& a : *response->mutable_artifacts()) {
      a.set_uploaded(blobs_[a.digest()].complete);
    }
    return grpc::Status::OK;
  }

  // Upload sessions only: modeldistctl uploads nothing by digest.
  grpc::Status QueryUpload(grpc::ServerContext* context, const v1::QueryUploadRequest* request,
                           v1::QueryUploadResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    if (failing_queries_ > 0) {
      --failing_queries_;
      return grpc::Status(grpc::UNAVAILABLE, "injected");
    }
    if (request->upload_id().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "upload_id");
    const Session& session = sessions_[request->upload_id()];
    if (!session.digest.empty()) {
      response->set_committed_size(blobs_[session.digest].size);
      response->set_complete(true);
      response->set_digest(session.digest);
    } else {
      response->set_committed_size(static_cast<int64_t>(session.data.size()));
    }
    return grpc::Status::OK;
  }

  grpc::Status WriteArtifact(grpc::ServerContext* context,
                             grpc::ServerReader<v1::WriteArtifactRequest>* reader,
                             v1::WriteArtifactResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    ++write_streams_;
    v1::WriteArtifactRequest request;
    std::string id;
    int64_t declared_size = 0;
    int64_t drop_after = drop_after_;
    drop_after_ = -1;
    int64_t received = 0;
    while (reader->Read(&request)) {
      if (id.empty()) {
        id = request.upload_id();
        declared_size = request.size_bytes();
        if (id.empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "upload_id is required");
      }
      Session& session = sessions_[id];
      if (!session.digest.empty()) {
        if (request.finish_write() && request.digest() == session.digest) {
          response->set_committed_size(blobs_[session.digest].size);
          return grpc::Status::OK;
        }
        return grpc::Status(grpc::ALREADY_EXISTS, "session finished");
      }
      if (request.write_offset() != static_cast<int64_t>(session.data.size())) {
        return grpc::Status(grpc::INVALID_ARGUMENT, "write_offset is not the committed size");
      }
      std::string data = request.data();
      if (corrupt_next_byte_ && !data.empty()) {
        data[0] ^= 0x01;
        corrupt_next_byte_ = false;
      }
      session.data += data;
      received += static_cast<int64_t>(data.size());
      bytes_received_ += static_cast<int64_t>(data.size());
      response->set_committed_size(static_cast<int64_t>(session.data.size()));
      if (request.finish_write()) {
        const int64_t size = static_cast<int64_t>(session.data.size());
        if ((declared_size > 0 && size != declared_size) ||
            FormatDigest(Sha256::HexOf(session.data)) != request.digest()) {
          session = Session();
          return grpc::Status(grpc::DATA_LOSS, "digest mismatch");
        }
        Blob& blob = blobs_[request.digest()];
        blob.data = std::move(session.data);
        blob.size = size;
        blob.complete = true;
        session = Session{.data = "", .digest = request.digest()};
        response->set_digest(request.digest());
        return grpc::Status::OK;
      }
      if (drop_after >= 0 && received >= drop_after) {
        return grpc::Status(grpc::UNAVAILABLE, "injected drop");
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status PublishVersion(grpc::ServerContext* context,
                              const v1::PublishVersionRequest* request,
                              v1::Version* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    auto it = versions_.find(request->name());
    if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->name());
    if (it->second.state() != v1::Version::DRAFT) {
      return grpc::Status(grpc::FAILED_PRECONDITION, "not a draft");
    }
    for (auto& a : *it->second.mutable_artifacts()) {
      if (!blobs_[a.digest()].complete) {
        return grpc::Status(grpc::FAILED_PRECONDITION, "not uploaded");
      }
      a.set_uploaded(true);
    }
    it->second.set_state(v1::Version::PUBLISHED);
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status SetTier(grpc::ServerContext* context, const v1::SetTierRequest* request,
                       v1::TierBinding* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    auto it = versions_.find(request->version());
    if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->version());
    if (it->second.state() != v1::Version::PUBLISHED) {
      return grpc::Status(grpc::FAILED_PRECONDITION, "not published");
    }
    response->set_tier(request->tier());
    response->set_channel(request->channel().empty() ? "stable" : request->channel());
    response->set_version(request->version());
    response->set_sequence(++sequence_);
    bound_[{response->tier(), response->channel()}] = *response;
    ++set_tier_calls_;
    return grpc::Status::OK;
  }

  // Every binding in one page, in (tier, channel) order as the real server lists them.
  grpc::Status ListTiers(grpc::ServerContext* context, const v1::ListTiersRequest*,
                         v1::ListTiersResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    for (const auto& [key, binding] : bound_) *response->add_tiers() = binding;
    return grpc::Status::OK;
  }

  grpc::Status StartRollout(grpc::ServerContext* context, const v1::StartRolloutRequest* request,
                            v1::Rollout* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    if (request->basis_points() < 0 || request->basis_points() > 10000) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "basis_points");
    }
    const std::string channel = request->channel().empty() ? "stable" : request->channel();
    if (Open(request->tier(), channel) != nullptr) {
      return grpc::Status(grpc::FAILED_PRECONDITION, "a rollout is active");
    }
    v1::Rollout& r = rollouts_.emplace_back();
    r.set_id(absl::StrCat("r-", rollouts_.size()));
    r.set_tier(request->tier());
    r.set_channel(channel);
    r.set_from_version(bound_[{request->tier(), channel}].version());
    r.set_to_version(request->to_version());
    r.set_basis_points(request->basis_points());
    r.set_state(v1::Rollout::ACTIVE);
    r.mutable_update_time()->set_seconds(1767225600 + static_cast<int64_t>(rollouts_.size()));
    Audit(context, "StartRollout", r.tier(), r.channel(), absl::StrCat(r.basis_points(), " bp"));
    *response = r;
    return grpc::Status::OK;
  }

  grpc::Status AdvanceRollout(grpc::ServerContext* context,
                              const v1::AdvanceRolloutRequest* request,
                              v1::Rollout* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    v1::Rollout* r =
        Open(request->tier(), request->channel().empty() ? "stable" : request->channel());
    if (r == nullptr) return grpc::Status(grpc::NOT_FOUND, "no rollout");
    if (request->basis_points() < r->basis_points() || request->basis_points() > 10000) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "lower share than now");
    }
    r->set_basis_points(request->basis_points());
    Audit(context, "AdvanceRollout", r->tier(), r->channel(), "");
    *response = *r;
    return grpc::Status::OK;
  }

  grpc::Status PauseRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override {
    return EndOrChange(context, *request, v1::Rollout::PAUSED, response);
  }
  grpc::Status ResumeRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                             v1::Rollout* response) override {
    return EndOrChange(context, *request, v1::Rollout::ACTIVE, response);
  }
  grpc::Status CompleteRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                               v1::Rollout* response) override {
    return EndOrChange(context, *request, v1::Rollout::COMPLETED, response);
  }
  grpc::Status AbortRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override {
    return EndOrChange(context, *request, v1::Rollout::ABORTED, response);
  }

  // Newest first, two per page, so that the client has to follow the page token.
  grpc::Status ListRollouts(grpc::ServerContext* context, const v1::ListRolloutsRequest* request,
                            v1::ListRolloutsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    std::vector<const v1::Rollout*> matching;
    for (auto it = rollouts_.rbegin(); it != rollouts_.rend(); ++it) {
      if (!request->tier().empty() && it->tier() != request->tier()) continue;
      if (!request->channel().empty() && it->channel() != request->channel()) continue;
      matching.push_back(&*it);
    }
    size_t begin = request->page_token().empty() ? 0 : std::stoul(request->page_token());
    for (size_t i = begin; i < matching.size() && i < begin + 2; ++i) {
      *response->add_rollouts() = *matching[i];
    }
    if (begin + 2 < matching.size()) response->set_next_page_token(std::to_string(begin + 2));
    return grpc::Status::OK;
  }

  grpc::Status PinDevices(grpc::ServerContext* context, const v1::PinDevicesRequest* request,
                          v1::PinDevicesResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    pin_batches_.push_back(request->device_ids_size());
    if (static_cast<int>(pin_batches_.size()) == fail_pin_call_) {
      return grpc::Status(grpc::UNAVAILABLE, "injected");
    }
    if (request->device_ids_size() < 1 || request->device_ids_size() > 1000) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "1 to 1000 device_ids");
    }
    const std::string channel = request->channel().empty() ? "stable" : request->channel();
    for (const std::string& id : request->device_ids()) {
      v1::DevicePin& pin = pins_[absl::StrCat(request->tier(), "/", channel, "/", id)];
      pin.set_tier(request->tier());
      pin.set_channel(channel);
      pin.set_device_id(id);
      pin.set_version(request->version());
    }
    response->set_changed(request->device_ids_size());
    response->set_sequence(++sequence_);
    Audit(context, "PinDevices", request->tier(), channel,
          absl::StrCat(request->device_ids_size(), " devices"));
    return grpc::Status::OK;
  }

  grpc::Status UnpinDevices(grpc::ServerContext* context, const v1::UnpinDevicesRequest* request,
                            v1::PinDevicesResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    const std::string channel = request->channel().empty() ? "stable" : request->channel();
    int changed = 0;
    for (const std::string& id : request->device_ids()) {
      changed +=
          static_cast<int>(pins_.erase(absl::StrCat(request->tier(), "/", channel, "/", id)));
    }
    response->set_changed(changed);
    response->set_sequence(++sequence_);
    return grpc::Status::OK;
  }

  grpc::Status ListPins(grpc::ServerContext* context, const v1::ListPinsRequest* request,
                        v1::ListPinsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    for (const auto& [key, pin] : pins_) *response->add_pins() = pin;
    return grpc::Status::OK;
  }

  // Newest first, honouring page_size, so that --limit and paging can be checked.
  grpc::Status ListAuditLog(grpc::ServerContext* context, const v1::ListAuditLogRequest* request,
                            v1::ListAuditLogResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    audit_page_sizes_.push_back(request->page_size());
    const size_t page = request->page_size() == 0 ? 100 : request->page_size();
    size_t begin = request->page_token().empty() ? 0 : std::stoul(request->page_token());
    for (size_t i = begin; i < audit_.size() && i < begin + page; ++i) {
      *response->add_entries() = audit_[audit_.size() - 1 - i];
    }
    if (begin + page < audit_.size()) response->set_next_page_token(std::to_string(begin + page));
    return grpc::Status::OK;
  }

  grpc::Status AddSigningKey(grpc::ServerContext* context, const v1::AddSigningKeyRequest*,
                             v1::SignedTrustRoot* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    *response = key_change_result_;
    return grpc::Status::OK;
  }

  grpc::Status RevokeSigningKey(grpc::ServerContext* context,
                                const v1::RevokeSigningKeyRequest* request,
                                v1::SignedTrustRoot* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    if (request->key_id() == "unknown") return grpc::Status(grpc::NOT_FOUND, "no such key");
    *response = key_change_result_;
    return grpc::Status::OK;
  }

  grpc::Status RotateSigningKeys(grpc::ServerContext* context,
                                 const v1::RotateSigningKeysRequest* request,
                                 v1::SignedTrustRoot* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    last_rotate_ = *request;
    *response = key_change_result_;
    return grpc::Status::OK;
  }

 private:
  // The ACTIVE or PAUSED rollout of tier/channel, or null.
  v1::Rollout* Open(const std::string& tier, const std::string& channel) {
    for (v1::Rollout& r : rollouts_) {
      if (r.tier() == tier && r.channel() == channel &&
          (r.state() == v1::Rollout::ACTIVE || r.state() == v1::Rollout::PAUSED)) {
        return &r;
      }
    }
    return nullptr;
  }

  grpc::Status EndOrChange(grpc::ServerContext* context, const v1::RolloutRequest& request,
                           v1::Rollout::State state, v1::Rollout* response) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!Authorized(context)) return Unauthenticated();
    v1::Rollout* r = Open(request.tier(), request.channel().empty() ? "stable" : request.channel());
    if (r == nullptr) return grpc::Status(grpc::NOT_FOUND, "no rollout");
    r->set_state(state);
    Audit(context, v1::Rollout::State_Name(state), r->tier(), r->channel(), "");
    *response = *r;
    return grpc::Status::OK;
  }

  void Audit(grpc::ServerContext*, const std::string& action, const std::string& tier,
             const std::string& channel, const std::string& details) {
    v1::AuditEntry& e = audit_.emplace_back();
    e.set_id(static_cast<int64_t>(audit_.size()));
    e.mutable_time()->set_seconds(1767225600 + e.id());
    e.set_actor(actors_.empty() || actors_.back() == "<none>" ? "admin" : actors_.back());
    e.set_action(action);
    e.set_resource(absl::StrCat("tiers/", tier, "/channels/", channel));
    e.set_details(details);
  }
  // Called with mu_ held by every rpc, so it also records the actor.
  bool Authorized(grpc::ServerContext* context) {
    auto actor = context->client_metadata().find("x-modeldist-actor");
    actors_.push_back(actor == context->client_metadata().end()
                          ? "<none>"
                          : std::string(actor->second.data(), actor->second.size()));
    auto [begin, end] = context->client_metadata().equal_range("authorization");
    return begin != end && std::string(begin->second.data(), begin->second.size()) ==
                               absl::StrCat("Bearer ", kToken);
  }
  static grpc::Status Unauthenticated() {
    return grpc::Status(grpc::UNAUTHENTICATED, "missing or wrong admin token");
  }

  std::mutex mu_;
  std::set<std::string> models_;
  std::map<std::string, v1::Version> versions_;
  std::map<std::string, Blob> blobs_;
  struct Session {
    std::string data;    // Committed bytes, until finished.
    std::string digest;  // Set once finished: the blob it became.
  };
  std::map<std::string, Session> sessions_;
  bool corrupt_next_byte_ = false;
  int64_t drop_after_ = -1;
  int failing_queries_ = 0;
  int write_streams_ = 0;
  int64_t bytes_received_ = 0;
  int64_t sequence_ = 0;
  std::vector<std::string> actors_;
  std::map<std::pair<std::string, std::string>, v1::TierBinding> bound_;  // By (tier, channel).
  int set_tier_calls_ = 0;
  std::vector<v1::Rollout> rollouts_;          // Oldest first.
  std::map<std::string, v1::DevicePin> pins_;  // By "tier/channel/device".
  std::vector<int> pin_batches_;
  int fail_pin_call_ = 0;
  std::vector<v1::AuditEntry> audit_;  // Oldest first.
  std::vector<int> audit_page_sizes_;
  v1::SignedTrustRoot key_change_result_;
  v1::RotateSigningKeysRequest last_rotate_;
};

// ManifestService.GetTrustRoot over a list of signed roots (version N at index N-1).
class FakeManifests final : public v1::ManifestService::Service {
 public:
  void AddRoot(v1::SignedTrustRoot root) {
    std::lock_guard<std::mutex> lock(mu_);
    roots_.push_back(std::move(root));
  }
  // Whether any GetTrustRoot call carried an authorization header (it must not need one).
  bool saw_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return saw_authorization_;
  }

  grpc::Status GetTrustRoot(grpc::ServerContext* context, const v1::GetTrustRootRequest* request,
                            v1::SignedTrustRoot* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (context->client_metadata().count("authorization") > 0) saw_authorization_ = true;
    const int64_t version =
        request->version() == 0 ? static_cast<int64_t>(roots_.size()) : request->version();
    if (version < 1 || version > static_cast<int64_t>(roots_.size())) {
      return grpc::Status(grpc::NOT_FOUND, "no such root");
    }
    *response = roots_[version - 1];
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  std::vector<v1::SignedTrustRoot> roots_;
  bool saw_authorization_ = false;
};

class FakeServerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kFileSize = 5 * (1 << 20) + 123;  // Not a multiple of the chunk.
  static constexpr int64_t kZipSize = 3 * (1 << 20) + 77;

  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&fake_);
    builder.RegisterService(&manifests_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<RegistryClient>(
        grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()), kToken);
    contents_ = modeldist::testing::RandomBytes(kFileSize, 7);
    path_ = dir_.Join("model.gguf");
    WriteFile(path_, contents_);
    digest_ = FormatDigest(Sha256::HexOf(contents_));
    zip_contents_ = modeldist::testing::RandomBytes(kZipSize, 9);
    zip_path_ = dir_.Join("model-coreml.zip");
    WriteFile(zip_path_, zip_contents_);
    zip_digest_ = FormatDigest(Sha256::HexOf(zip_contents_));
  }

  void TearDown() override { server_->Shutdown(); }

  std::string Address() const { return absl::StrCat("127.0.0.1:", port_); }

  PublishSpec Spec(const std::string& version = "1.0") const {
    PublishSpec spec;
    spec.model_id = "llama";
    spec.version_id = version;
    spec.tier = "llama8b";
    spec.channel = "stable";
    spec.artifacts = {{v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF, path_}};
    return spec;
  }

  // The macOS pair of the hosting guide: a CoreML zip for arm64 next to the GGUF for x86_64.
  PublishSpec TwoArtifactSpec(const std::string& version = "1.0") const {
    PublishSpec spec = Spec(version);
    spec.artifacts.insert(spec.artifacts.begin(),
                          {v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_path_});
    return spec;
  }

  // Options whose retries do not sleep, recording the waits instead.
  UploadOptions FastUpload() {
    UploadOptions options;
    options.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
    options.random = [] { return 0.0; };
    return options;
  }

  // A DRAFT of `spec`'s model and version declaring the GGUF file alone, as another client
  // (or an older modeldistctl, which declared before uploading) could leave it.
  void DeclareDraft(const PublishSpec& spec) {
    v1::CreateModelRequest model;
    model.set_model_id(spec.model_id);
    ASSERT_THAT(client_->CreateModel(model), IsOk());
    v1::CreateVersionRequest version;
    version.set_parent(absl::StrCat("models/", spec.model_id));
    version.set_version_id(spec.version_id);
    v1::Artifact* a = version.add_artifacts();
    a->set_platform(v1::PLATFORM_MACOS);
    a->set_arch(v1::ARCH_X86_64);
    a->set_format(v1::FORMAT_GGUF);
    a->set_digest(digest_);
    a->set_size_bytes(kFileSize);
    ASSERT_THAT(client_->CreateVersion(version), IsOk());
  }
  // The model file, opened for an upload as publish opens it.
  HashingFileReader OpenFile() {
    absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(path_);
    EXPECT_THAT(file, IsOk());
    return *std::move(file);
  }
  UploadOptions WithCap(int64_t cap) {
    UploadOptions options = FastUpload();
    options.max_bytes_to_send = cap;
    return options;
  }

  // Global flags that reach the fake with the token, as a user would run modeldistctl.
  std::vector<std::string> Ctl(std::vector<std::string> args) {
    if (token_file_.empty()) {
      token_file_ = dir_.Join("token");
      WriteFile(token_file_, absl::StrCat(kToken, "\n"));
    }
    args.insert(args.begin(), {"--server", Address(), "--token-file", token_file_});
    return args;
  }

  // A published version of the fake to roll out or pin to.
  void PublishFakeVersion(const std::string& version) {
    ASSERT_THAT(Publish(*client_, Spec(version), PublishOptions{.upload = FastUpload()}, &ignored_),
                IsOk());
  }

  FakeRegistry fake_;
  FakeManifests manifests_;
  std::string token_file_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RegistryClient> client_;
  ScratchDir dir_;
  std::string path_;
  std::string contents_;
  std::string digest_;
  std::string zip_path_;
  std::string zip_contents_;
  std::string zip_digest_;
  std::vector<absl::Duration> sleeps_;
  PublishResult ignored_;
};

constexpr char kUploadId[] = "ctl-test-0123456789abcdef";

TEST_F(FakeServerTest, UploadReadsTheFileOnceHashingItAsItSends) {
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(uploaded->size, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_TRUE(fake_.blob(digest_).complete);
  EXPECT_EQ(stats.resumed_from, 0);
  EXPECT_EQ(stats.bytes_sent, kFileSize);
  EXPECT_EQ(stats.bytes_read, kFileSize);  // One pass: hashing did not read it again.
  EXPECT_EQ(stats.streams, 1);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(FakeServerTest, DroppedStreamIsRetriedFromTheCommittedSize) {
  fake_.DropNextStreamAfter(2 << 20);
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_EQ(stats.streams, 2);
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(sleeps_[0], RetryPolicy().initial_backoff);
  // The server received each byte once: the retry resumed instead of starting over. Only
  // what was in flight when the stream broke may have been read from the file again.
  EXPECT_EQ(fake_.bytes_received(), kFileSize);
  EXPECT_GE(stats.bytes_read, kFileSize);
  EXPECT_LE(stats.bytes_read, stats.bytes_sent + (1 << 20));  // Resent bytes, one message.
}

TEST_F(FakeServerTest, GivesUpAfterMaxAttemptsWithoutProgress) {
  fake_.FailQueries(100);
  UploadOptions options = FastUpload();
  options.retry.max_attempts = 3;
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), options);
  UploadStats stats;
  EXPECT_THAT(uploader.Upload(file, kUploadId, &stats),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("gave up after 3 attempts")));
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(sleeps_[1], 2 * sleeps_[0]);
  EXPECT_EQ(fake_.write_streams(), 0);
  EXPECT_EQ(stats.bytes_read, 0);
}

TEST_F(FakeServerTest, DigestMismatchAtTheServerIsNotRetried) {
  // A byte damaged on its way in: the server's hash cannot match the digest sent.
  fake_.CorruptNextByte();
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  EXPECT_THAT(uploader.Upload(file, kUploadId, &stats),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest mismatch")));
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(stats.streams, 1);
  EXPECT_FALSE(fake_.blob(digest_).complete);
}

TEST_F(FakeServerTest, FileThatChangesDuringTheUploadIsALocalErrorAndNeverFinished) {
  UploadOptions options = FastUpload();
  bool changed = false;
  options.on_progress = [&](int64_t position) {
    if (changed || position < (1 << 20)) return;
    changed = true;
    std::ofstream(path_, std::ios::binary | std::ios::app) << "more";
  };
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), options);
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  EXPECT_THAT(uploaded, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("changed")));
  EXPECT_EQ(ExitCodeFor(uploaded.status()), kExitLocal);
  EXPECT_TRUE(changed);
  EXPECT_TRUE(sleeps_.empty());
  // Bytes went out (the stream was cancelled, so maybe not all arrived), but no finish_write
  // vouched for them.
  EXPECT_FALSE(fake_.blob(digest_).complete);
  EXPECT_TRUE(absl::StartsWith(contents_, fake_.session_data(kUploadId)));
}

TEST_F(FakeServerTest, ByteCapStopsAndAResumeReadsThePrefixOnlyToHashIt) {
  HashingFileReader first_run = OpenFile();
  ArtifactUploader capped(client_.get(), WithCap(3 << 20));
  UploadStats first;
  EXPECT_THAT(capped.Upload(first_run, kUploadId, &first), StatusIs(absl::StatusCode::kAborted, _));
  EXPECT_EQ(first.bytes_sent, 3 << 20);
  EXPECT_EQ(first.bytes_read, 3 << 20);
  EXPECT_EQ(fake_.session_data(kUploadId), contents_.substr(0, 3 << 20));

  // A new run (a new reader, as after a restart) hashes the 3 MiB the server holds, then
  // sends only the rest.
  HashingFileReader second_run = OpenFile();
  ArtifactUploader rest(client_.get(), FastUpload());
  UploadStats second;
  ASSERT_THAT(rest.Upload(second_run, kUploadId, &second), IsOk());
  EXPECT_EQ(second.resumed_from, 3 << 20);
  EXPECT_EQ(second.bytes_sent, kFileSize - (3 << 20));
  EXPECT_EQ(second.bytes_read, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);

  // Once finished, nothing more is sent; the file is hashed to check it is what was stored.
  HashingFileReader third_run = OpenFile();
  UploadStats third;
  absl::StatusOr<FileDigest> again = rest.Upload(third_run, kUploadId, &third);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(FormatDigest(again->hex), digest_);
  EXPECT_TRUE(third.already_complete);
  EXPECT_EQ(third.bytes_sent, 0);
  EXPECT_EQ(third.bytes_read, kFileSize);
  EXPECT_EQ(fake_.bytes_received(), kFileSize);
}

TEST_F(FakeServerTest, AFinishedSessionOfOtherBytesIsALocalError) {
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  ASSERT_THAT(uploader.Upload(file, kUploadId, &stats), IsOk());
  // Same size, other bytes, and the session id of the old file (as if the modification time
  // had been forged back).
  WriteFile(path_, modeldist::testing::RandomBytes(kFileSize, 8));
  HashingFileReader changed = OpenFile();
  UploadStats again;
  absl::StatusOr<FileDigest> status = uploader.Upload(changed, kUploadId, &again);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(digest_), HasSubstr("touch it"))));
  EXPECT_EQ(ExitCodeFor(status.status()), kExitLocal);
}

TEST_F(FakeServerTest, PipesAreReadOnceAndUploadedWithoutADeclaredSize) {
  const std::string fifo = dir_.Join("model.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << contents_; });
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(fifo);
  ASSERT_THAT(file, IsOk());
  EXPECT_TRUE(file->is_pipe());
  EXPECT_EQ(file->size(), -1);
  const std::string id = UploadIdFor(*file);
  EXPECT_THAT(ValidateUploadId("upload_id", id), IsOk());
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(*file, id, &stats);
  writer.join();
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(uploaded->size, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_EQ(stats.bytes_read, kFileSize);
}

TEST_F(FakeServerTest, UploadIdsFollowTheFilesIdentity) {
  const std::string id = UploadIdFor(OpenFile());
  EXPECT_THAT(ValidateUploadId("upload_id", id), IsOk());
  EXPECT_TRUE(absl::StartsWith(id, "ctl-"));
  EXPECT_EQ(UploadIdFor(OpenFile()), id);  // The same, unchanged file: resume.
  EXPECT_NE(UploadIdFor(*HashingFileReader::Open(zip_path_)), id);
  WriteFile(path_, contents_ + "x");
  EXPECT_NE(UploadIdFor(OpenFile()), id);  // Changed: a new session.
}

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

TEST_F(FakeServerTest, RolloutStartAdvanceListAbortSendBasisPointsAndTheActor) {
  // Published in this order, the tier ends up bound to 1.0: the rollout's from_version.
  PublishFakeVersion("2.0");
  PublishFakeVersion("1.0");

  CtlRun start =
      RunInProcess(Ctl({"--actor", "release-bot", "rollout", "start", "--tier", "llama8b",
                        "--model", "llama", "--version", "2.0", "--percent", "0.5"}));
  ASSERT_EQ(start.code, kExitOk) << start.err;
  EXPECT_EQ(start.out,
            "rollout r-1 llama8b/stable: models/llama/versions/1.0 -> models/llama/versions/2.0 "
            "at 0.5% (ACTIVE)\n");
  EXPECT_EQ(fake_.actors().back(), "release-bot");

  CtlRun advance =
      RunInProcess(Ctl({"--json", "rollout", "advance", "--tier", "llama8b", "--percent", "10"}));
  ASSERT_EQ(advance.code, kExitOk) << advance.err;
  EXPECT_THAT(advance.out, HasSubstr("\"basisPoints\":1000"));
  EXPECT_THAT(advance.out, HasSubstr("\"state\":\"ACTIVE\""));

  // The server refuses to move devices back; its error comes through as exit 2.
  CtlRun back = RunInProcess(Ctl({"rollout", "advance", "--tier", "llama8b", "--percent", "5"}));
  EXPECT_EQ(back.code, kExitRpc);
  EXPECT_THAT(back.err, HasSubstr("INVALID_ARGUMENT"));

  CtlRun pause = RunInProcess(Ctl({"rollout", "pause", "--tier", "llama8b"}));
  ASSERT_EQ(pause.code, kExitOk) << pause.err;
  EXPECT_THAT(pause.out, HasSubstr("at 10% (PAUSED)"));
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "resume", "--tier", "llama8b"})).code, kExitOk);
  CtlRun abort = RunInProcess(Ctl({"rollout", "abort", "--tier", "llama8b"}));
  ASSERT_EQ(abort.code, kExitOk) << abort.err;
  EXPECT_THAT(abort.out, HasSubstr("(ABORTED)"));

  // Three more, on two channels, so that the list spans pages of the fake (two per page).
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "start", "--tier", "llama8b", "--version",
                              "models/llama/versions/2.0", "--percent", "1"}))
                .code,
            kExitOk);
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "complete", "--tier", "llama8b"})).code, kExitOk);
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "start", "--tier", "llama8b", "--channel", "beta",
                              "--version", "models/llama/versions/1.0", "--percent", "100"}))
                .code,
            kExitOk);

  CtlRun list = RunInProcess(Ctl({"rollout", "list"}));
  ASSERT_EQ(list.code, kExitOk) << list.err;
  std::vector<std::string> lines = absl::StrSplit(list.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << list.out;
  EXPECT_THAT(lines[0], HasSubstr("ID   TIER     CHANNEL  FROM"));
  EXPECT_THAT(lines[0], HasSubstr("PERCENT  STATE      UPDATED"));
  EXPECT_THAT(lines[1], HasSubstr("r-3  llama8b  beta"));  // Newest first.
  EXPECT_THAT(lines[1], HasSubstr("100%     ACTIVE"));
  EXPECT_THAT(lines[1], HasSubstr("2026-01-01T00:00:03Z"));
  EXPECT_THAT(lines[2], HasSubstr("1%       COMPLETED"));
  EXPECT_THAT(lines[3], HasSubstr("10%      ABORTED"));

  CtlRun beta = RunInProcess(Ctl({"rollout", "list", "--tier", "llama8b", "--channel", "beta"}));
  ASSERT_EQ(beta.code, kExitOk) << beta.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(beta.out, '\n', absl::SkipEmpty())).size(), 2u);
  CtlRun none = RunInProcess(Ctl({"--json", "rollout", "list", "--tier", "other"}));
  ASSERT_EQ(none.code, kExitOk) << none.err;
  EXPECT_THAT(none.out, HasSubstr("\"rollouts\":[]"));
}

TEST_F(FakeServerTest, PinSendsBatchesOfAtMostAThousandFromFileAndArguments) {
  PublishFakeVersion("1.0");
  std::string ids = "# QA fleet\n\n";
  for (int i = 0; i < 2499; ++i) absl::StrAppend(&ids, "device-", i, "\n");
  absl::StrAppend(&ids, "device-0\n");  // A repeat: sent once.
  WriteFile(dir_.Join("devices.txt"), ids);

  CtlRun pin =
      RunInProcess(Ctl({"pin", "--tier", "llama8b", "--version", "models/llama/versions/1.0",
                        "--devices-file", dir_.Join("devices.txt"), "extra-device"}));
  ASSERT_EQ(pin.code, kExitOk) << pin.err;
  EXPECT_EQ(fake_.pin_batches(), (std::vector<int>{1000, 1000, 500}));
  EXPECT_EQ(fake_.pins().size(), 2500u);
  EXPECT_EQ(fake_.pins().count("llama8b/stable/extra-device"), 1u);
  EXPECT_THAT(pin.out, HasSubstr("pinned 2500 devices of llama8b/stable to "
                                 "models/llama/versions/1.0 (2500 changed) sequence "));

  CtlRun unpin = RunInProcess(
      Ctl({"--json", "unpin", "--tier", "llama8b", "extra-device", "device-1", "no-such"}));
  ASSERT_EQ(unpin.code, kExitOk) << unpin.err;
  EXPECT_THAT(
      unpin.out,
      HasSubstr("{\"tier\":\"llama8b\",\"channel\":\"stable\",\"devices\":3,\"changed\":2,"));
  EXPECT_EQ(fake_.pins().size(), 2498u);

  CtlRun pins = RunInProcess(Ctl({"pins"}));
  ASSERT_EQ(pins.code, kExitOk) << pins.err;
  EXPECT_THAT(pins.out, HasSubstr("TIER     CHANNEL  DEVICE"));
  EXPECT_THAT(pins.out, HasSubstr("llama8b  stable   device-0 "));
  EXPECT_THAT(pins.out, HasSubstr("models/llama/versions/1.0"));
  EXPECT_THAT(pins.out, Not(HasSubstr("extra-device")));
}

TEST_F(FakeServerTest, PinFailureSaysHowManyBatchesWereApplied) {
  PublishFakeVersion("1.0");
  std::vector<std::string> args = {"pin", "--tier", "llama8b", "--version",
                                   "models/llama/versions/1.0"};
  for (int i = 0; i < 1500; ++i) args.push_back(absl::StrCat("d", i));
  fake_.FailPinCall(2);
  CtlRun run = RunInProcess(Ctl(args));
  EXPECT_EQ(run.code, kExitRpc);
  EXPECT_THAT(run.err, HasSubstr("pinned 1000 of 1500 devices before this error"));
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(fake_.pins().size(), 1000u);

  CtlRun missing =
      RunInProcess(Ctl({"pin", "--tier", "llama8b", "--version", "models/llama/versions/1.0",
                        "--devices-file", dir_.Join("absent.txt")}));
  EXPECT_EQ(missing.code, kExitLocal);
  EXPECT_THAT(missing.err, HasSubstr("--devices-file"));
}

TEST_F(FakeServerTest, AuditShowsTheNewestEntriesWithTheirActors) {
  PublishFakeVersion("1.0");
  PublishFakeVersion("2.0");
  for (const char* actor : {"alice@a", "bob@b", "carol@c"}) {
    ASSERT_EQ(RunInProcess(Ctl({"--actor", actor, "rollout", "start", "--tier", "llama8b",
                                "--version", "models/llama/versions/2.0", "--percent", "1"}))
                  .code,
              kExitOk);
    ASSERT_EQ(RunInProcess(Ctl({"--actor", actor, "rollout", "abort", "--tier", "llama8b"})).code,
              kExitOk);
  }
  CtlRun run = RunInProcess(Ctl({"audit", "--limit", "3"}));
  ASSERT_EQ(run.code, kExitOk) << run.err;
  std::vector<std::string> lines = absl::StrSplit(run.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << run.out;
  EXPECT_THAT(lines[0], HasSubstr("TIME                  ACTOR    ACTION"));
  EXPECT_THAT(lines[0], HasSubstr("RESOURCE                       DETAILS"));
  EXPECT_THAT(lines[1], HasSubstr("carol@c  ABORTED       tiers/llama8b/channels/stable"));
  EXPECT_THAT(lines[2], HasSubstr("carol@c  StartRollout  tiers/llama8b/channels/stable  100 bp"));
  EXPECT_THAT(lines[3], HasSubstr("bob@b"));
  EXPECT_EQ(fake_.audit_page_sizes(), (std::vector<int>{3}));

  CtlRun all = RunInProcess(Ctl({"--json", "audit", "--limit", "0"}));
  ASSERT_EQ(all.code, kExitOk) << all.err;
  EXPECT_THAT(all.out, HasSubstr("\"actor\":\"alice@a\""));
}

TEST_F(FakeServerTest, EveryRegistryCallCarriesTheDefaultActor) {
  CtlRun run = RunInProcess(Ctl({"pins"}), {{"USER", "dora"}});
  ASSERT_EQ(run.code, kExitOk) << run.err;
  ASSERT_FALSE(fake_.actors().empty());
  EXPECT_TRUE(absl::StartsWith(fake_.actors().back(), "dora@")) << fake_.actors().back();

  // Publish sends it on every call, the upload stream included.
  ScratchDir dir;
  CtlRun publish =
      RunInProcess(Ctl({"--actor", "ci", "publish", "--model", "llama", "--version", "9.0",
                        "--tier", "llama8b", absl::StrCat("macos/x86_64/gguf=", path_)}));
  ASSERT_EQ(publish.code, kExitOk) << publish.err;
  std::vector<std::string> actors = fake_.actors();
  EXPECT_GE(actors.size(), 6u);
  for (size_t i = 1; i < actors.size(); ++i) EXPECT_EQ(actors[i], "ci") << i;
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

// --- publish against the real server (in-process, tests/testing/test_server.h) -------------
// Idempotence is about what the server records (tier sequence, audit log, blob store), so
// these runs go to a real ModeldistServer, not to the fake.

class RealServerPublishTest : public ::testing::Test {
 protected:
  static constexpr int64_t kFileSize = 2 * (1 << 20) + 321;

  void SetUp() override {
    client_ = std::make_unique<RegistryClient>(server_.channel(), modeldist::testing::kTestToken);
    WriteFile(path_, contents_);
    WriteFile(token_file_, absl::StrCat(modeldist::testing::kTestToken, "\n"));
  }

  PublishSpec Spec() const {
    PublishSpec spec;
    spec.model_id = "llama";
    spec.version_id = "1.0";
    spec.tier = "llama8b";
    spec.artifacts = {{v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF, path_}};
    return spec;
  }

  absl::Status Publish(PublishResult* result, std::ostream* log = nullptr) {
    return ctl::Publish(*client_, Spec(), PublishOptions{.upload = {}, .log = log}, result);
  }

  // modeldistctl publish of Spec(), as a user types it, over TCP to the test server.
  CtlRun PublishCommand() {
    return RunInProcess({"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                         "--token-file", token_file_, "publish", "--model", "llama", "--version",
                         "1.0", "--tier", "llama8b", absl::StrCat("macos/x86_64/gguf=", path_)});
  }

  // Every audit entry, newest first.
  std::vector<v1::AuditEntry> AuditLog() {
    std::vector<v1::AuditEntry> entries;
    v1::ListAuditLogRequest request;
    do {
      absl::StatusOr<v1::ListAuditLogResponse> page = client_->ListAuditLog(request);
      EXPECT_THAT(page, IsOk());
      if (!page.ok()) break;
      entries.insert(entries.end(), page->entries().begin(), page->entries().end());
      request.set_page_token(page->next_page_token());
    } while (!request.page_token().empty());
    return entries;
  }

  v1::Version GetVersion() {
    v1::GetVersionRequest request;
    request.set_name("models/llama/versions/1.0");
    absl::StatusOr<v1::Version> version = client_->GetVersion(request);
    EXPECT_THAT(version, IsOk());
    return version.ok() ? *version : v1::Version();
  }

  // Removes the stored blob and its chunk-chain sidecar, as a lost disk or a careless
  // operator would.
  void LoseBlob() {
    const std::string hex = Sha256::HexOf(contents_);
    const std::string blob =
        absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
    ASSERT_EQ(::unlink(blob.c_str()), 0) << blob;
    ASSERT_EQ(::unlink((blob + ".chain").c_str()), 0) << blob;
  }

  modeldist::testing::TestServer server_;
  std::unique_ptr<RegistryClient> client_;
  ScratchDir dir_;
  const std::string path_ = dir_.Join("model.gguf");
  const std::string token_file_ = dir_.Join("token");
  const std::string contents_ = modeldist::testing::RandomBytes(kFileSize, 11);
  const std::string digest_ = FormatDigest(Sha256::HexOf(contents_));
};

TEST_F(RealServerPublishTest, RerunThatChangesNothingChangesNothing) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  // Sequences come from the server's clock (TierBinding.sequence): compare with the first.
  const int64_t sequence = first.binding.sequence();
  ASSERT_GT(sequence, 0);
  const std::vector<v1::AuditEntry> audit = AuditLog();
  ASSERT_FALSE(audit.empty());

  PublishResult second;
  ASSERT_THAT(Publish(&second), IsOk());
  EXPECT_TRUE(second.was_published);
  EXPECT_TRUE(second.tier_already_bound);
  EXPECT_EQ(second.BytesSent(), 0);
  EXPECT_EQ(second.binding.sequence(), sequence);

  // The server agrees: no new sequence, no new audit entry.
  absl::StatusOr<v1::TierBinding> tier = client_->GetTier("llama8b", "");
  ASSERT_THAT(tier, IsOk());
  EXPECT_EQ(tier->version(), "models/llama/versions/1.0");
  EXPECT_EQ(tier->sequence(), sequence);
  const std::vector<v1::AuditEntry> after = AuditLog();
  ASSERT_EQ(after.size(), audit.size()) << "newest: " << after.front().ShortDebugString();
  EXPECT_EQ(after.front().id(), audit.front().id());

  // And the command says what it did, which was nothing.
  CtlRun again = PublishCommand();
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_EQ(again.out, absl::StrCat("already published models/llama/versions/1.0 digest ", digest_,
                                    " size ", kFileSize,
                                    " (2.10 MB); tier llama8b/stable already bound to it "
                                    "(sequence ",
                                    sequence, ")\n"));
  EXPECT_EQ(AuditLog().size(), audit.size());
}

TEST_F(RealServerPublishTest, RerunAfterALostBlobRestoresItsBytes) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  const size_t audit_entries = AuditLog().size();
  LoseBlob();
  ASSERT_EQ(GetVersion().artifacts_size(), 1);
  ASSERT_FALSE(GetVersion().artifacts(0).uploaded());

  std::ostringstream log;
  PublishResult second;
  ASSERT_THAT(Publish(&second, &log), IsOk());
  EXPECT_TRUE(second.was_published);
  ASSERT_EQ(second.artifacts.size(), 1u);
  EXPECT_TRUE(second.artifacts[0].restored);
  EXPECT_EQ(second.artifacts[0].upload.bytes_sent, kFileSize);
  EXPECT_EQ(second.artifacts[0].upload.bytes_read, kFileSize);  // Read once, hashed as sent.
  EXPECT_THAT(log.str(), HasSubstr(absl::StrCat("restored bytes of ", digest_)));
  EXPECT_TRUE(second.version.artifacts(0).uploaded());
  // The tier was bound to it all along.
  EXPECT_TRUE(second.tier_already_bound);
  EXPECT_EQ(second.binding.sequence(), first.binding.sequence());
  EXPECT_EQ(AuditLog().size(), audit_entries);

  // The server holds the bytes again, verified, and serves them.
  v1::Version version = GetVersion();
  ASSERT_EQ(version.artifacts_size(), 1);
  EXPECT_TRUE(version.artifacts(0).uploaded());
  std::string read;
  ASSERT_TRUE(server_.ReadBlob(digest_, &read).ok());
  EXPECT_EQ(read, contents_);

  // The command line says so too.
  LoseBlob();
  CtlRun restore = PublishCommand();
  ASSERT_EQ(restore.code, kExitOk) << restore.err;
  EXPECT_EQ(restore.out,
            absl::StrCat("already published models/llama/versions/1.0 digest ", digest_, " size ",
                         kFileSize, " (2.10 MB), restored bytes of ", digest_,
                         "; tier llama8b/stable already bound to it (sequence ",
                         first.binding.sequence(), ")\n"));
  EXPECT_TRUE(GetVersion().artifacts(0).uploaded());
}

TEST_F(RealServerPublishTest, RerunAfterDetectedDamageHealsIt) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  // One byte flipped on disk: the next read fails, and the server quarantines the blob.
  const std::string hex = Sha256::HexOf(contents_);
  const std::string blob =
      absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
  modeldist::testing::DamageFile(blob, modeldist::testing::FileDamage::kFlip, 1000);
  std::string read;
  ASSERT_EQ(server_.ReadBlob(digest_, &read).error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(AuditLog().front().action(), "BlobDamaged");
  EXPECT_FALSE(GetVersion().artifacts(0).uploaded());

  CtlRun heal = PublishCommand();
  ASSERT_EQ(heal.code, kExitOk) << heal.err;
  EXPECT_THAT(heal.out, HasSubstr(absl::StrCat("restored bytes of ", digest_)));
  EXPECT_EQ(AuditLog().front().action(), "BlobRestored");
  read.clear();
  ASSERT_TRUE(server_.ReadBlob(digest_, &read).ok());
  EXPECT_EQ(read, contents_);
  EXPECT_TRUE(server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_X86_64).ok());
}

TEST_F(RealServerPublishTest, LostBlobIsNotRestoredFromAnotherFile) {
  PublishResult first;
  ASSERT_THAT(Publish(&first), IsOk());
  LoseBlob();
  // Same size, other bytes: it cannot be the file the version declares.
  const std::string other = modeldist::testing::RandomBytes(kFileSize, 12);
  WriteFile(path_, other);

  PublishResult second;
  EXPECT_THAT(Publish(&second),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("models/llama/versions/1.0 already exists (PUBLISHED)"),
                             HasSubstr(absl::StrCat("macos/x86_64/gguf is ", digest_, " (",
                                                    kFileSize, " bytes) there but ",
                                                    FormatDigest(Sha256::HexOf(other)))),
                             HasSubstr("new --version"))));
  EXPECT_FALSE(second.artifacts[0].restored);
  EXPECT_FALSE(GetVersion().artifacts(0).uploaded());
  // finish_write was withheld, so the other bytes were not stored as a blob either.
  const std::string other_hex = Sha256::HexOf(other);
  EXPECT_NE(::access(absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", other_hex.substr(0, 2),
                                  "/", other_hex)
                         .c_str(),
                     F_OK),
            0);
}

}  // namespace
}  // namespace modeldist::ctl
