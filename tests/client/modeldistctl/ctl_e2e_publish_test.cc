// End-to-end tests of publish's resumption against the real modeldist-server
// (ctl_e2e_fixture.h): a capped upload, a server killed mid-stream and a command line killed
// mid-upload, each finished by the binary; and files read from named pipes, which can be read
// only once.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/upload.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

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
  ASSERT_TRUE(StartCtl(args));
  // Kill it once the server holds 4 MiB of the session.
  const std::string uploads = dir_.Join("data/uploads");
  bool killed = false;
  for (int i = 0; i < 60000 && !killed; ++i) {
    for (const auto& entry : std::filesystem::directory_iterator(uploads)) {
      if (absl::EndsWith(entry.path().string(), ".partial") && entry.file_size() >= (4 << 20)) {
        killed = ctl_.Signal(SIGKILL);
        break;
      }
    }
    if (!killed) ::usleep(1000);
  }
  CtlRun first = WaitCtl();
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

// The seed's way in: a model already hosted behind a URL (nginx on loopback), with the SHA-256
// and size its secrets hold. `publish --import` has the server fetch and verify it; devices then
// get it from the server like any published file. Wrong digests store nothing.
TEST_F(CtlE2eTest, PublishImportsAFileAlreadyHostedAtAUrl) {
  modeldist::testing::NginxServer nginx(dir_.Join("nginx"), /*tls=*/false);
  ASSERT_GT(nginx.port(), 0) << nginx.ErrorLog();
  WriteFile(nginx.www() + "/llama.gguf", contents_);
  const std::string url = nginx.Url("/llama.gguf");
  const std::string hex = digest_.substr(7);

  CtlRun wrong = Ctl({"publish", "--model", "seed", "--version", "1", "--platform", "linux",
                      "--arch", "x86_64", "--format", "gguf", "--tier", "seed", "--import", url,
                      "--sha256", std::string(64, 'a'), "--size", absl::StrCat(kFileSize)});
  EXPECT_EQ(wrong.code, 2);  // the server's answer
  EXPECT_THAT(wrong.err, HasSubstr("DIGEST_MISMATCH")) << wrong.err;
  CtlRun show_missing = Ctl({"show", "models/seed/versions/1"});
  EXPECT_NE(show_missing.code, 0);  // no version was created

  CtlRun publish = Ctl({"publish", "--model", "seed", "--version", "1", "--platform", "linux",
                        "--arch", "x86_64", "--format", "gguf", "--tier", "seed", "--import", url,
                        "--sha256", hex, "--size", absl::StrCat(kFileSize)});
  ASSERT_EQ(publish.code, 0) << publish.err;
  EXPECT_THAT(publish.out,
              HasSubstr(absl::StrCat("published models/seed/versions/1 digest ", digest_)));
  EXPECT_THAT(publish.out, HasSubstr("imported by the server from " + url));
  ExpectDeviceGets("seed", v1::PLATFORM_LINUX, v1::ARCH_X86_64, digest_, contents_);

  // Usage errors say what is missing, before any rpc.
  CtlRun no_size =
      Ctl({"publish", "--model", "seed", "--version", "2", "--platform", "linux", "--arch",
           "x86_64", "--format", "gguf", "--tier", "seed", "--import", url, "--sha256", hex});
  EXPECT_EQ(no_size.code, 1);  // usage
  EXPECT_THAT(no_size.err, HasSubstr("--size"));
  CtlRun bad_source = Ctl({"publish", "--model", "seed", "--version", "2", "--platform", "linux",
                           "--arch", "x86_64", "--format", "gguf", "--tier", "seed", "--import",
                           "no-colon", "--sha256", hex, "--size", "5"});
  EXPECT_EQ(bad_source.code, 1);
  EXPECT_THAT(bad_source.err, HasSubstr("ORIGIN:KEY"));
}

}  // namespace
}  // namespace modeldist::ctl
