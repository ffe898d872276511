// End-to-end tests of modeldistctl against the real modeldist-server: the server binary runs
// on 127.0.0.1:0 with a scratch data dir (tests/testing/server_process.h), and the modeldistctl
// binary is run as a user would, checking its output and exit codes. Resumption is driven
// through the library (a byte cap, a server killed mid-stream) and then finished by the binary.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/upload.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_util.h"

extern char** environ;

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "ctl-e2e-admin-token-0123456789";
constexpr int64_t kFileSize = 3 * (1 << 20) + 4321;

// The server's clock, in microseconds since the Unix epoch: a new sequence is never below it
// (TierBinding.sequence), so a first bind's sequence is the clock when the server made it.
int64_t ClockMicros() { return absl::ToUnixMicros(absl::Now()); }

// The number after "sequence " in modeldistctl's output; -1 when there is none.
int64_t SequenceIn(absl::string_view out) {
  const size_t at = out.find("sequence ");
  if (at == absl::string_view::npos) return -1;
  absl::string_view digits = out.substr(at + std::strlen("sequence "));
  digits = digits.substr(0, digits.find_first_not_of("0123456789"));
  int64_t value = -1;
  return absl::SimpleAtoi(digits, &value) ? value : -1;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Writes `contents` into the FIFO at `path` from a thread, once a reader has opened it (within
// a minute; then it gives up, so that a failing test does not hang). Joined on destruction.
class FifoWriter {
 public:
  FifoWriter(std::string path, std::string contents)
      : thread_([path = std::move(path), contents = std::move(contents)] {
          int fd = -1;
          // O_NONBLOCK: ENXIO until a reader has the FIFO open, instead of blocking forever.
          for (int i = 0; i < 6000 && fd < 0; ++i) {
            fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) ::usleep(10000);
          }
          if (fd < 0) return;
          ::fcntl(fd, F_SETFL, 0);  // Blocking writes from here on.
          WriteAll(fd, contents.data(), contents.size()).IgnoreError();
          ::close(fd);
        }) {}
  ~FifoWriter() { thread_.join(); }

 private:
  std::thread thread_;
};

struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

class CtlE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.Join("token")) << kToken << "\n";
    ASSERT_EQ(::mkdir(dir_.Join("data").c_str(), 0755), 0);
    server_ = std::make_unique<testing::ServerProcess>(ServerBinary(), dir_.Join("data"),
                                                   dir_.Join("token"), dir_.path());
    ASSERT_TRUE(server_->Start());
    contents_ = modeldist::testing::RandomBytes(kFileSize, 42);
    file_ = dir_.Join("model.gguf");
    std::ofstream(file_, std::ios::binary) << contents_;
    digest_ = FormatDigest(Sha256::HexOf(contents_));
  }

  void TearDown() override {
    if (server_ && HasFailure()) std::cerr << "server log:\n" << server_->LogTail();
    server_.reset();  // Kills and reaps by PID.
  }

  static std::string ServerBinary() {
    return modeldist::testing::BuildDir() + "/services/modeldist-server";
  }
  static std::string CtlBinary() { return modeldist::testing::BuildDir() + "/client/modeldistctl/modeldistctl"; }

  // Runs the modeldistctl binary with `--server <test server>` prepended, with MODELDIST_*
  // variables of the test's own environment removed and `env` added (replacing any variable
  // of the same name).
  CtlRun Ctl(std::vector<std::string> args, std::map<std::string, std::string> env = {},
             bool with_token_file = true) {
    return WaitCtl(StartCtl(std::move(args), std::move(env), with_token_file));
  }

  // Ctl in two halves, for a test that does something while the command runs. Returns the
  // child's pid, or -1 after a test failure.
  pid_t StartCtl(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                 bool with_token_file = true) {
    std::vector<std::string> argv_strings = {CtlBinary(), "--server", server_->address()};
    if (with_token_file) argv_strings.insert(argv_strings.end(), {"--token-file", Token()});
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      bool replaced = absl::StartsWith(*e, "MODELDIST_ADMIN_TOKEN=") ||
                      absl::StartsWith(*e, "MODELDIST_SERVER=");
      for (const auto& [k, v] : env) replaced = replaced || absl::StartsWith(*e, k + "=");
      if (!replaced) env_strings.push_back(*e);
    }
    for (const auto& [k, v] : env) env_strings.push_back(absl::StrCat(k, "=", v));
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, OutPath().c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, ErrPath().c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int err = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) {
      ADD_FAILURE() << "cannot start " << argv[0] << ": " << strerror(err);
      return -1;
    }
    return pid;
  }

  CtlRun WaitCtl(pid_t pid) {
    CtlRun run;
    if (pid < 0) return run;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    run.out = ReadAll(OutPath());
    run.err = ReadAll(ErrPath());
    return run;
  }

  std::string OutPath() const { return dir_.Join("ctl.out"); }
  std::string ErrPath() const { return dir_.Join("ctl.err"); }

  std::vector<std::string> PublishArgs(const std::string& version) const {
    return {"publish", "--model", "e2e-model", "--version", version,  "--platform", "macos",
            "--arch",  "arm64",   "--format",  "gguf",      "--tier", "llama8b",    file_};
  }

  std::string Token() const { return dir_.Join("token"); }

  // What a device of `platform`/`arch` on `tier` gets: a manifest that verifies against the
  // server's trust root and names `digest`, and bytes (ArtifactService.Read) that are
  // `contents` and hash to it.
  void ExpectDeviceGets(const std::string& tier, v1::Platform platform, v1::Arch arch,
                        const std::string& digest, const std::string& contents) {
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    absl::StatusOr<v1::SignedTrustRoot> signed_root = FetchTrustRoot(channel, 1);
    ASSERT_THAT(signed_root, IsOk());
    absl::StatusOr<v1::TrustRoot> root = VerifyFirstRoot(*signed_root);
    ASSERT_THAT(root, IsOk());
    v1::GetManifestRequest request;
    request.set_tier(tier);
    request.set_platform(platform);
    request.set_arch(arch);
    grpc::ClientContext context;
    v1::SignedManifest signed_manifest;
    grpc::Status status =
        v1::ManifestService::NewStub(channel)->GetManifest(&context, request, &signed_manifest);
    ASSERT_TRUE(status.ok()) << status.error_message();
    absl::StatusOr<v1::Manifest> manifest = VerifyManifest(*root, signed_manifest);
    ASSERT_THAT(manifest, IsOk());
    EXPECT_EQ(manifest->artifact().digest(), digest);
    EXPECT_EQ(manifest->artifact().size_bytes(), static_cast<int64_t>(contents.size()));

    v1::ReadRequest read;
    read.set_digest(digest);
    grpc::ClientContext read_context;
    auto reader = v1::ArtifactService::NewStub(channel)->Read(&read_context, read);
    Sha256 hash;
    std::string got;
    v1::ReadResponse chunk;
    while (reader->Read(&chunk)) {
      hash.Update(chunk.data());
      got += chunk.data();
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(FormatDigest(hash.FinishHex()), digest);
    EXPECT_TRUE(got == contents) << "the served bytes differ from the published ones";
  }

  std::unique_ptr<RegistryClient> Client() const {
    return std::make_unique<RegistryClient>(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()), kToken);
  }

  PublishSpec Spec(const std::string& version) const {
    PublishSpec spec;
    spec.model_id = "e2e-model";
    spec.version_id = version;
    spec.tier = "llama8b";
    spec.channel = "stable";
    spec.artifacts = {{v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, file_}};
    return spec;
  }

  ScratchDir dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::string contents_;
  std::string file_;
  std::string digest_;
};

TEST_F(CtlE2eTest, PublishListShowSetTierYank) {
  int64_t before = ClockMicros();
  CtlRun publish = Ctl(PublishArgs("1.0"));
  int64_t after = ClockMicros();
  ASSERT_EQ(publish.code, 0) << publish.err;
  const int64_t stable_sequence = SequenceIn(publish.out);
  EXPECT_GE(stable_sequence, before);
  EXPECT_LE(stable_sequence, after);
  EXPECT_EQ(publish.out,
            absl::StrCat("published models/e2e-model/versions/1.0 digest ", digest_, " size ",
                         kFileSize, " (3.15 MB) tier llama8b/stable sequence ", stable_sequence,
                         " (sent ", kFileSize, " bytes)\n"));

  CtlRun models = Ctl({"list"});
  ASSERT_EQ(models.code, 0) << models.err;
  EXPECT_THAT(models.out, HasSubstr("models/e2e-model"));

  CtlRun versions = Ctl({"list", "e2e-model"});
  ASSERT_EQ(versions.code, 0) << versions.err;
  EXPECT_THAT(versions.out, HasSubstr("models/e2e-model/versions/1.0"));
  EXPECT_THAT(versions.out, HasSubstr("PUBLISHED"));
  EXPECT_THAT(versions.out, HasSubstr(digest_));

  CtlRun json = Ctl({"--json", "list", "models/e2e-model"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"state\":\"PUBLISHED\""));
  EXPECT_THAT(json.out, HasSubstr("\"uploaded\":true"));

  CtlRun show = Ctl({"show", "e2e-model", "1.0"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat("digest:   ", digest_)));
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat("size:     ", kFileSize, " bytes")));
  EXPECT_THAT(show.out, HasSubstr("uploaded: yes"));
  EXPECT_EQ(Ctl({"show", "models/e2e-model/versions/1.0"}).out, show.out);

  before = ClockMicros();
  CtlRun set_tier = Ctl({"set-tier", "--tier", "llama8b", "--channel", "beta", "--model",
                         "e2e-model", "--version", "1.0"});
  after = ClockMicros();
  ASSERT_EQ(set_tier.code, 0) << set_tier.err;
  const int64_t beta_sequence = SequenceIn(set_tier.out);
  EXPECT_GE(beta_sequence, before);
  EXPECT_LE(beta_sequence, after);
  EXPECT_EQ(set_tier.out,
            absl::StrCat("tier llama8b/beta -> models/e2e-model/versions/1.0 sequence ",
                         beta_sequence, "\n"));

  CtlRun tiers = Ctl({"list", "--tiers"});
  ASSERT_EQ(tiers.code, 0) << tiers.err;
  EXPECT_THAT(tiers.out, HasSubstr("llama8b  beta"));
  EXPECT_THAT(tiers.out, HasSubstr("llama8b  stable"));

  CtlRun yank = Ctl({"yank", "models/e2e-model/versions/1.0", "--reason", "bad answers"});
  ASSERT_EQ(yank.code, 0) << yank.err;
  EXPECT_EQ(yank.out, "yanked models/e2e-model/versions/1.0\n");
  EXPECT_THAT(Ctl({"show", "e2e-model", "1.0"}).out, HasSubstr("reason:     bad answers"));
  EXPECT_THAT(Ctl({"list", "--tiers"}).out, HasSubstr("(none"));

  CtlRun again = Ctl({"yank", "models/e2e-model/versions/1.0"});
  EXPECT_EQ(again.code, 2);
  EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION"));

  CtlRun missing = Ctl({"show", "e2e-model", "9.9"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));

  CtlRun republish = Ctl(PublishArgs("1.0"));
  EXPECT_EQ(republish.code, 2);
  EXPECT_THAT(republish.err, HasSubstr("yanked"));
}

TEST_F(CtlE2eTest, PublishesACoreMlZipAndAGgufAsOneVersion) {
  // The macOS case: Apple Silicon gets CoreML, Intel Macs the GGUF, both in version 4.0.
  const std::string zip_contents = modeldist::testing::RandomBytes((1 << 20) + 99, 43);
  const std::string zip = dir_.Join("model-coreml.zip");
  std::ofstream(zip, std::ios::binary) << zip_contents;
  const std::string zip_digest = FormatDigest(Sha256::HexOf(zip_contents));
  const std::vector<std::string> args = {"publish",
                                         "--model",
                                         "e2e-model",
                                         "--version",
                                         "4.0",
                                         "--tier",
                                         "llama8b",
                                         absl::StrCat("macos/arm64/coreml-zip=", zip),
                                         absl::StrCat("macos/x86_64/gguf=", file_)};

  const int64_t before = ClockMicros();
  CtlRun publish = Ctl(args);
  const int64_t after = ClockMicros();
  ASSERT_EQ(publish.code, 0) << publish.err;
  const int64_t sequence = SequenceIn(publish.out);
  EXPECT_GE(sequence, before);
  EXPECT_LE(sequence, after);
  EXPECT_THAT(publish.out,
              HasSubstr(absl::StrCat("published models/e2e-model/versions/4.0 with 2 artifacts "
                                     "tier llama8b/stable sequence ",
                                     sequence, "\n")));
  EXPECT_THAT(publish.out, HasSubstr(absl::StrCat("  macos/arm64/coreml-zip digest ", zip_digest,
                                                  " size ", zip_contents.size())));
  EXPECT_THAT(publish.out,
              HasSubstr(absl::StrCat("  macos/x86_64/gguf digest ", digest_, " size ", kFileSize)));

  CtlRun show = Ctl({"show", "e2e-model", "4.0"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("state:      PUBLISHED"));
  EXPECT_THAT(show.out, HasSubstr("artifacts:  2\n"));
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat(
                            "  - macos/arm64 coreml-zip\n    digest:   ", zip_digest, "\n")));
  EXPECT_THAT(show.out,
              HasSubstr(absl::StrCat("  - macos/x86_64 gguf\n    digest:   ", digest_, "\n")));
  EXPECT_THAT(show.out, Not(HasSubstr("uploaded: no")));
  std::string::size_type first = show.out.find("uploaded: yes");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(show.out.find("uploaded: yes", first + 1), std::string::npos);

  CtlRun list = Ctl({"list", "e2e-model"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("macos/arm64   coreml-zip"));
  EXPECT_THAT(list.out, HasSubstr("macos/x86_64  gguf"));

  // What the fleet sees: each Mac gets the file for its arch from the one tier binding.
  auto manifests = v1::ManifestService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  for (const auto& [arch, format, digest] :
       {std::tuple(v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_digest),
        std::tuple(v1::ARCH_X86_64, v1::FORMAT_GGUF, digest_)}) {
    v1::GetManifestRequest request;
    request.set_tier("llama8b");
    request.set_platform(v1::PLATFORM_MACOS);
    request.set_arch(arch);
    grpc::ClientContext context;
    v1::SignedManifest signed_manifest;
    grpc::Status status = manifests->GetManifest(&context, request, &signed_manifest);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::Manifest manifest;
    ASSERT_TRUE(manifest.ParseFromString(signed_manifest.manifest()));
    EXPECT_EQ(manifest.version(), "models/e2e-model/versions/4.0");
    EXPECT_EQ(manifest.artifact().format(), format);
    EXPECT_EQ(manifest.artifact().digest(), digest);
  }

  // Running it again changes nothing, the tier's sequence included (the tier is bound to it
  // already); a different set of files is refused.
  CtlRun again = Ctl(args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr(absl::StrCat("already published models/e2e-model/versions/4.0 "
                                                "with 2 artifacts; tier llama8b/stable already "
                                                "bound to it (sequence ",
                                                sequence, ")")));
  CtlRun fewer = Ctl({"publish", "--model", "e2e-model", "--version", "4.0", "--tier", "llama8b",
                      absl::StrCat("macos/x86_64/gguf=", file_)});
  EXPECT_EQ(fewer.code, 2);
  EXPECT_THAT(fewer.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(fewer.err, HasSubstr("it also declares macos/arm64/coreml-zip"));

  CtlRun mixed = Ctl({"publish", "--model", "e2e-model", "--version", "5.0", "--tier", "llama8b",
                      "--platform", "macos", "--arch", "arm64", "--format", "coreml-zip", zip,
                      absl::StrCat("macos/x86_64/gguf=", file_)});
  EXPECT_EQ(mixed.code, 1);
  EXPECT_THAT(mixed.err, HasSubstr("cannot be mixed"));
}

TEST_F(CtlE2eTest, WrongTokenExitsTwoWithUnauthenticated) {
  CtlRun run = Ctl({"list"}, {{"MODELDIST_ADMIN_TOKEN", "wrong-token-but-long-enough"}},
                   /*with_token_file=*/false);
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(run.err, Not(HasSubstr("wrong-token")));

  CtlRun from_env = Ctl({"list"}, {{"MODELDIST_ADMIN_TOKEN", kToken}}, false);
  EXPECT_EQ(from_env.code, 0) << from_env.err;
}

TEST_F(CtlE2eTest, InterruptedPublishResumesWithTheRemainder) {
  // The first run stops after 1 MiB + 1000 bytes, closing the stream as a killed client would.
  constexpr int64_t kCap = (1 << 20) + 1000;
  std::unique_ptr<RegistryClient> client = Client();
  PublishOptions capped;
  capped.upload.max_bytes_to_send = kCap;
  PublishResult first;
  ASSERT_THAT(Publish(*client, Spec("2.0"), capped, &first),
              StatusIs(absl::StatusCode::kAborted, _));
  EXPECT_EQ(first.BytesSent(), kCap);
  EXPECT_FALSE(first.version_created);  // Declared only once the file is uploaded and hashed.
  // The session the command line will find: its id follows the file's identity.
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(file_);
  ASSERT_THAT(file, IsOk());
  v1::QueryUploadRequest query;
  query.set_upload_id(UploadIdFor(*file));
  absl::StatusOr<v1::QueryUploadResponse> progress = client->QueryUpload(query);
  ASSERT_THAT(progress, IsOk());
  ASSERT_GT(progress->committed_size(), 0);
  ASSERT_FALSE(progress->complete());
  const int64_t committed = progress->committed_size();

  CtlRun rerun = Ctl({"--json", "publish", "--model", "e2e-model", "--version", "2.0", "--platform",
                      "macos", "--arch", "arm64", "--format", "gguf", "--tier", "llama8b", file_});
  ASSERT_EQ(rerun.code, 0) << rerun.err;
  EXPECT_THAT(rerun.out, HasSubstr(absl::StrCat("\"resumedFrom\":", committed, ",")));
  EXPECT_THAT(rerun.out, HasSubstr(absl::StrCat("\"bytesSent\":", kFileSize - committed, ",")));
  // The committed prefix was read again only to hash it: each byte once in this run.
  EXPECT_THAT(rerun.out, HasSubstr(absl::StrCat("\"bytesRead\":", kFileSize, "}")));
  EXPECT_THAT(rerun.err,
              HasSubstr(absl::StrCat("resumed the upload of ", file_, " at byte ", committed)));
  EXPECT_THAT(Ctl({"show", "e2e-model", "2.0"}).out, HasSubstr("state:      PUBLISHED"));
}

TEST_F(CtlE2eTest, UploadSurvivesAServerRestartMidStream) {
  std::unique_ptr<RegistryClient> client = Client();
  // Kill the server once 1 MiB is on the wire, and bring it back on the same port.
  const std::string address = server_->address();
  const std::string port = std::to_string(server_->port());
  bool restarted = false;
  int retries = 0;
  UploadOptions options;
  options.retry.initial_backoff = absl::Milliseconds(200);
  options.retry.max_attempts = 10;
  options.on_retry = [&](const absl::Status& failure, int, absl::Duration) {
    ++retries;
    EXPECT_TRUE(options.retry.IsRetryable(failure)) << failure;
  };
  options.on_progress = [&](int64_t position) {
    if (restarted || position < (1 << 20)) return;
    restarted = true;
    server_->Kill();
    server_ = std::make_unique<testing::ServerProcess>(
        ServerBinary(), dir_.Join("data"), dir_.Join("token"), dir_.path(),
        std::vector<std::string>{"--listen", absl::StrCat("127.0.0.1:", port)});
    ASSERT_TRUE(server_->Start());
  };
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(file_);
  ASSERT_THAT(file, IsOk());
  ArtifactUploader uploader(client.get(), options);
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(*file, UploadIdFor(*file), &stats);
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_TRUE(restarted);
  EXPECT_GE(retries, 1);
  EXPECT_GE(stats.streams, 2);
  ASSERT_EQ(server_->address(), address);

  // The stored session is found by the command line (the same file, so the same session):
  // it only hashes the file, sends nothing, and declares, publishes and binds.
  CtlRun finish = Ctl(PublishArgs("3.0"));
  ASSERT_EQ(finish.code, 0) << finish.err;
  EXPECT_THAT(finish.out, HasSubstr("(bytes already on the server)"));
  EXPECT_THAT(finish.out, HasSubstr(digest_));
}

// Publishes from named pipes, which can be read only once: publish succeeding proves that it
// hashes while it uploads. The published artifact is then checked as a device would: a
// manifest verified against the server's trust root, bytes that hash to its digest.
TEST_F(CtlE2eTest, PublishFromANamedPipeReadsItOnceAndTheArtifactVerifies) {
  const std::string fifo = dir_.Join("model.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  {
    FifoWriter writer(fifo, contents_);
    const int64_t before = ClockMicros();
    CtlRun publish =
        Ctl({"publish", "--model", "e2e-model", "--version", "6.0", "--platform", "linux", "--arch",
             "x86_64", "--format", "gguf", "--tier", "pipes", fifo});
    const int64_t after = ClockMicros();
    ASSERT_EQ(publish.code, 0) << publish.err;
    const int64_t sequence = SequenceIn(publish.out);
    EXPECT_GE(sequence, before);
    EXPECT_LE(sequence, after);
    EXPECT_EQ(publish.out,
              absl::StrCat("published models/e2e-model/versions/6.0 digest ", digest_, " size ",
                           kFileSize, " (3.15 MB) tier pipes/stable sequence ", sequence, " (sent ",
                           kFileSize, " bytes)\n"));
  }
  ExpectDeviceGets("pipes", v1::PLATFORM_LINUX, v1::ARCH_X86_64, digest_, contents_);

  // The multi-artifact form: a pipe next to a regular file, each read once.
  const std::string other = modeldist::testing::RandomBytes((1 << 20) + 5, 44);
  const std::string other_digest = FormatDigest(Sha256::HexOf(other));
  CtlRun both;
  {
    FifoWriter writer(fifo, other);
    both = Ctl({"--json", "publish", "--model", "e2e-model", "--version", "7.0", "--tier", "pipes",
                absl::StrCat("linux/arm64/gguf=", fifo), absl::StrCat("macos/arm64/gguf=", file_)});
  }
  ASSERT_EQ(both.code, 0) << both.err;
  EXPECT_THAT(both.out, HasSubstr(absl::StrCat(
                            "\"file\":\"", fifo, "\",\"digest\":\"", other_digest,
                            "\",\"sizeBytes\":", other.size(),
                            ",\"upload\":{\"resumedFrom\":0,\"bytesSent\":", other.size(),
                            ",\"alreadyComplete\":false,", "\"bytesRead\":", other.size(), "}")));
  EXPECT_THAT(both.out, HasSubstr(absl::StrCat(
                            "\"file\":\"", file_, "\",\"digest\":\"", digest_, "\",\"sizeBytes\":",
                            kFileSize, ",\"upload\":{\"resumedFrom\":0,\"bytesSent\":", kFileSize,
                            ",\"alreadyComplete\":false,", "\"bytesRead\":", kFileSize, "}")));
  ExpectDeviceGets("pipes", v1::PLATFORM_LINUX, v1::ARCH_ARM64, other_digest, other);
  ExpectDeviceGets("pipes", v1::PLATFORM_MACOS, v1::ARCH_ARM64, digest_, contents_);
}

// The command line killed (SIGKILL) half way through an upload: the same command again
// resumes where the server stopped, reading the committed prefix once more only to hash it.
TEST_F(CtlE2eTest, KilledPublishResumesWhereTheServerStopped) {
  const int64_t size = 48 << 20;
  const std::string contents = modeldist::testing::RandomBytes(static_cast<size_t>(size), 45);
  const std::string big = dir_.Join("big.gguf");
  std::ofstream(big, std::ios::binary) << contents;
  const std::vector<std::string> args = {
      "--json", "publish", "--model",  "e2e-model", "--version", "8.0", "--platform", "linux",
      "--arch", "x86_64",  "--format", "gguf",      "--tier",    "big", big};
  pid_t pid = StartCtl(args);
  ASSERT_GT(pid, 0);
  // Kill it once the server holds 4 MiB of the session.
  const std::string uploads = dir_.Join("data/uploads");
  bool killed = false;
  for (int i = 0; i < 60000 && !killed; ++i) {
    for (const auto& entry : std::filesystem::directory_iterator(uploads)) {
      if (absl::EndsWith(entry.path().string(), ".partial") && entry.file_size() >= (4 << 20)) {
        killed = ::kill(pid, SIGKILL) == 0;
        break;
      }
    }
    if (!killed) ::usleep(1000);
  }
  CtlRun first = WaitCtl(pid);
  ASSERT_TRUE(killed) << "the upload ended before it could be interrupted: " << first.out;
  ASSERT_EQ(first.code, 128 + SIGKILL);

  CtlRun rerun = Ctl(args);
  ASSERT_EQ(rerun.code, 0) << rerun.err;
  const std::string key = "\"resumedFrom\":";
  const size_t at = rerun.out.find(key);
  ASSERT_NE(at, std::string::npos) << rerun.out;
  const int64_t resumed = std::stoll(rerun.out.substr(at + key.size()));
  EXPECT_GE(resumed, 4 << 20);
  EXPECT_LT(resumed, size);
  EXPECT_THAT(rerun.out, HasSubstr(absl::StrCat("\"bytesSent\":", size - resumed, ",")));
  EXPECT_THAT(rerun.out, HasSubstr(absl::StrCat("\"bytesRead\":", size, "}")));
  ExpectDeviceGets("big", v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                   FormatDigest(Sha256::HexOf(contents)), contents);
}

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

  // --- rollout start / advance / list / abort ---
  CtlRun start = Ctl({"--actor", "e2e-releaser@ci", "rollout", "start", "--tier", "llama8b",
                      "--version", new_version, "--percent", "0.5"});
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
  EXPECT_THAT(entries[1], HasSubstr("e2e-pinner@"));
  EXPECT_THAT(entries[1], HasSubstr("PinDevices"));
  EXPECT_THAT(audit.out, HasSubstr("e2e-releaser@ci"));
  EXPECT_THAT(audit.out, HasSubstr("StartRollout"));
  EXPECT_THAT(audit.out, HasSubstr("AbortRollout"));
  CtlRun newest = Ctl({"audit", "--limit", "1"});
  ASSERT_EQ(newest.code, 0) << newest.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(newest.out, '\n', absl::SkipEmpty())).size(),
            2u)
      << newest.out;

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

TEST_F(CtlE2eTest, ScrubExitsZeroWhenCleanAndFourWithTheDigestOfADamagedBlob) {
  ASSERT_EQ(Ctl(PublishArgs("1.0")).code, 0);
  CtlRun clean = Ctl({"scrub"});
  ASSERT_EQ(clean.code, 0) << clean.err;
  EXPECT_THAT(clean.out, HasSubstr("checked 1 blobs (3.15 MB) in "));
  EXPECT_THAT(clean.out, HasSubstr(": 0 damaged, 0 missing, 0 restored\n"));
  EXPECT_THAT(clean.out, Not(HasSubstr(digest_))) << "an intact blob is not listed";

  CtlRun json = Ctl({"--json", "scrub", "--rate", "64MiB"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"blobsChecked\":1,\"bytesChecked\":", kFileSize)));

  // A byte flipped on disk, written with pwrite so that the scrub's direct reads see it.
  const std::string hex = digest_.substr(kSha256Prefix.size());
  const std::string path =
      dir_.Join(absl::StrCat("data/blobs/sha256/", hex.substr(0, 2), "/", hex));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const char flipped = static_cast<char>(contents_[1000] ^ 0x20);
  ASSERT_EQ(::pwrite(fd, &flipped, 1, 1000), 1);
  ::close(fd);

  CtlRun damaged = Ctl({"scrub"});
  EXPECT_EQ(damaged.code, 4) << damaged.err;
  EXPECT_THAT(damaged.out, HasSubstr(absl::StrCat("damaged ", digest_, " (3.15 MB): ")));
  EXPECT_THAT(damaged.out, HasSubstr(": 1 damaged, 0 missing, 0 restored\n"));
  EXPECT_THAT(damaged.err, HasSubstr("the scrub found 1 damaged and 0 missing blobs"));

  // Quarantined now: the next scrub still exits 4, naming it as missing from the store.
  CtlRun again = Ctl({"--json", "scrub"});
  EXPECT_EQ(again.code, 4) << again.err;
  EXPECT_THAT(again.out, HasSubstr(absl::StrCat("\"outcome\":\"MISSING\",\"digest\":\"", digest_)));

  CtlRun bad_rate = Ctl({"scrub", "--rate", "-5"});
  EXPECT_EQ(bad_rate.code, 1);
  EXPECT_THAT(bad_rate.err, HasSubstr("--rate"));
}

}  // namespace
}  // namespace modeldist::ctl
