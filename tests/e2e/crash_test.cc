// Crash safety of the real modeldist-server binary: a client publishes versions back to back
// while the server is killed with SIGKILL at a random moment, over and over on the same data
// directory. After every crash the test checks, before and after restarting the server, that
// the catalog is an intact SQLite database, that everything the server acknowledged is still
// there, and that nothing is visible half done.
//
// MODELDIST_CRASH_ROUNDS raises the number of rounds (default 50); MODELDIST_CRASH_SEED
// replays a failing run (the seed is printed at the start).
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::e2e {
namespace {

using ::modeldist::testing::BuildDir;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::ServerProcess;

constexpr char kModel[] = "crash-model";
constexpr char kTier[] = "crash";
constexpr int kDefaultRounds = 50;
// The kill comes this long (uniformly random) after the server is up and the client started.
constexpr int kMaxKillDelayMs = 300;
// Artifact sizes are log-uniform in [kMinArtifactBytes, kMaxArtifactBytes]: mostly small, so
// many publishes fit in a round, with some large enough to be killed mid-upload.
constexpr double kMinArtifactBytes = 4 * 1024;
constexpr double kMaxArtifactBytes = 1024 * 1024;
// Older published versions re-read in full after each crash (besides the current round's).
constexpr int kOlderVersionsReadPerRound = 2;

int RoundsFromEnv() {
  const char* env = std::getenv("MODELDIST_CRASH_ROUNDS");
  int rounds = env != nullptr ? std::atoi(env) : 0;
  return rounds > 0 ? rounds : kDefaultRounds;
}

uint64_t SeedFromEnv() {
  if (const char* env = std::getenv("MODELDIST_CRASH_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 10);
  }
  return std::random_device()();
}

// One version the publisher tried, and how far the server acknowledged it. Only calls that
// returned OK count; a call cut off by the kill may or may not have taken effect.
struct Attempt {
  std::string name;  // models/{model}/versions/{version}
  std::string digest;
  int64_t size = 0;
  bool created = false;    // CreateVersion returned OK
  bool uploaded = false;   // WriteArtifact returned OK
  bool published = false;  // PublishVersion returned OK
  bool tier_tried = false;
  bool tier_set = false;   // SetTier returned OK
  int64_t sequence = 0;    // the sequence the acknowledged SetTier returned
};

// What the publisher thread saw: its attempts and the status that stopped it.
struct PublishLog {
  std::vector<Attempt> attempts;
  grpc::Status stopped_by;
};

// Publishes versions of kModel back to back, binding kTier to each, until an rpc fails (the
// server died) or `stop` is set.
void PublishUntilFailure(const std::string& address, const std::string& token, int round,
                         uint64_t seed, const std::atomic<bool>& stop, PublishLog* log) {
  E2eClient client(address, token, std::chrono::seconds(30));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> log_size(std::log(kMinArtifactBytes),
                                                  std::log(kMaxArtifactBytes));
  for (int i = 0; !stop.load(); ++i) {
    Attempt& a = log->attempts.emplace_back();
    ArtifactSpec artifact;
    artifact.bytes = RandomBytes(static_cast<size_t>(std::exp(log_size(rng))),
                                 static_cast<uint32_t>(rng()));
    a.name = absl::StrCat("models/", kModel, "/versions/r", round, ".", i);
    a.digest = DigestOf(artifact.bytes);
    a.size = static_cast<int64_t>(artifact.bytes.size());

    v1::Version version;
    log->stopped_by =
        client.CreateVersion(kModel, absl::StrCat("r", round, ".", i), artifact, &version);
    if (!log->stopped_by.ok()) return;
    a.created = true;
    log->stopped_by = client.WriteArtifact(a.digest, artifact.bytes);
    if (!log->stopped_by.ok()) return;
    a.uploaded = true;
    log->stopped_by = client.PublishVersion(a.name, &version);
    if (!log->stopped_by.ok()) return;
    a.published = true;
    v1::TierBinding binding;
    a.tier_tried = true;
    log->stopped_by = client.SetTier(kTier, a.name, &binding);
    if (!log->stopped_by.ok()) return;
    a.tier_set = true;
    a.sequence = binding.sequence();
  }
}

// Runs `PRAGMA integrity_check` on a separate read-only connection; returns its rows joined
// by newlines ("ok" when the database is intact) or the SQLite error.
std::string IntegrityCheck(const std::string& db_path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    std::string error = absl::StrCat("cannot open ", db_path, ": ", sqlite3_errstr(rc));
    sqlite3_close(db);
    return error;
  }
  std::string result;
  sqlite3_stmt* stmt = nullptr;
  rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!result.empty()) result += "\n";
      result += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
  }
  if (rc != SQLITE_DONE) result = absl::StrCat("integrity_check failed: ", sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = "crash-test-token-0123456789abcdef";
    MD_ASSERT_OK(WriteFileAtomically(scratch_.Join("admin.token"), token_ + "\n", 0600));
    server_ = std::make_unique<ServerProcess>(BuildDir() + "/services/modeldist-server",
                                              scratch_.Join("data"), scratch_.Join("admin.token"),
                                              scratch_.path());
  }

  // Kills the server if a failed assertion left it running; the destructor would too, but
  // doing it here keeps the order explicit: server gone before the scratch dir is removed.
  void TearDown() override { server_->Kill(); }

  // Checks the versions the last round tried, against a freshly restarted server.
  void CheckAttempts(E2eClient& client, const std::vector<Attempt>& attempts) {
    for (const Attempt& a : attempts) {
      SCOPED_TRACE(a.name);
      v1::Version version;
      grpc::Status status = client.GetVersion(a.name, &version);
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        EXPECT_FALSE(a.created) << "an acknowledged CreateVersion was lost";
        continue;
      }
      ASSERT_TRUE(status.ok()) << StatusText(status);
      ASSERT_EQ(version.artifacts_size(), 1);
      const v1::Artifact& artifact = version.artifacts(0);
      EXPECT_EQ(artifact.digest(), a.digest);
      EXPECT_EQ(artifact.size_bytes(), a.size);
      if (a.published) {
        EXPECT_EQ(version.state(), v1::Version::PUBLISHED)
            << "an acknowledged PublishVersion was lost";
      } else {
        EXPECT_NE(version.state(), v1::Version::YANKED);
      }
      if (a.uploaded) {
        EXPECT_TRUE(artifact.uploaded()) << "an acknowledged WriteArtifact was lost";
      }
      if (version.state() == v1::Version::PUBLISHED) {
        EXPECT_TRUE(artifact.uploaded()) << "PUBLISHED with its artifact not uploaded";
      }
      if (artifact.uploaded()) {
        ExpectReadable(client, a.digest, a.size);
        if (version.state() == v1::Version::PUBLISHED) published_.push_back(a);
      }
    }
  }

  // Reads a whole blob back and checks its bytes hash to its digest.
  void ExpectReadable(E2eClient& client, const std::string& digest, int64_t size) {
    std::string bytes;
    grpc::Status status = client.ReadAll(digest, &bytes);
    ASSERT_TRUE(status.ok()) << "Read " << digest << ": " << StatusText(status);
    EXPECT_EQ(static_cast<int64_t>(bytes.size()), size) << digest;
    EXPECT_EQ(DigestOf(bytes), digest) << "Read returned other bytes than the digest names";
    ++blobs_read_;
  }

  // Every version in the catalog, whoever made it: PUBLISHED ones must have their bytes.
  void CheckNoHalfPublishedVersion(E2eClient& client) {
    std::vector<v1::Version> versions;
    grpc::Status status = client.ListAllVersions(kModel, &versions);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    for (const v1::Version& v : versions) {
      if (v.state() != v1::Version::PUBLISHED) continue;
      for (const v1::Artifact& artifact : v.artifacts()) {
        EXPECT_TRUE(artifact.uploaded())
            << v.name() << " is PUBLISHED but " << artifact.digest() << " is not uploaded";
      }
    }
  }

  // The tier must be at least where the last acknowledged SetTier left it, bound to a
  // PUBLISHED version, and its signed manifest must say the same.
  void CheckTier(E2eClient& client, const std::vector<Attempt>& attempts) {
    v1::TierBinding binding;
    grpc::Status status = client.GetTier(kTier, &binding);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      EXPECT_EQ(acked_sequence_, 0) << "an acknowledged SetTier was lost";
      return;
    }
    ASSERT_TRUE(status.ok()) << StatusText(status);
    ASSERT_GE(binding.sequence(), acked_sequence_) << "the tier's sequence went backwards";
    if (binding.sequence() == acked_sequence_) {
      EXPECT_EQ(binding.version(), acked_version_);
    } else {
      // Only a SetTier cut off by this kill may have moved it further.
      auto tried = std::find_if(attempts.begin(), attempts.end(), [&](const Attempt& a) {
        return a.tier_tried && a.name == binding.version();
      });
      EXPECT_NE(tried, attempts.end())
          << "tier bound to " << binding.version() << " at sequence " << binding.sequence()
          << ", which no SetTier of this round asked for";
    }
    v1::Version bound;
    status = client.GetVersion(binding.version(), &bound);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    EXPECT_EQ(bound.state(), v1::Version::PUBLISHED) << binding.version();
    ASSERT_EQ(bound.artifacts_size(), 1);

    v1::SignedManifest signed_manifest;
    status = client.GetManifest(kTier, &signed_manifest);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    v1::Manifest manifest;
    ASSERT_TRUE(manifest.ParseFromString(signed_manifest.manifest()));
    EXPECT_EQ(manifest.sequence(), binding.sequence());
    EXPECT_EQ(manifest.version(), binding.version());
    EXPECT_EQ(manifest.artifact().digest(), bound.artifacts(0).digest());
    ASSERT_GE(signed_manifest.signatures_size(), 1);
    EXPECT_TRUE(signing_key_->Verify(kManifestSignatureContext, signed_manifest.manifest(),
                                     signed_manifest.signatures(0).signature()))
        << "the manifest's signature does not verify";

    // What the restarted server shows is durable from now on: later rounds compare with it.
    acked_sequence_ = binding.sequence();
    acked_version_ = binding.version();
  }

  void LoadSigningKey(E2eClient& client) {
    v1::GetSigningKeysResponse keys;
    grpc::Status status = client.GetSigningKeys(&keys);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    ASSERT_GE(keys.keys_size(), 1);
    auto key = Ed25519PublicKey::FromPem(keys.keys(0).public_key_pem());
    MD_ASSERT_OK(key);
    signing_key_ = std::make_unique<Ed25519PublicKey>(*std::move(key));
  }

  ScratchDir scratch_;
  std::string token_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Ed25519PublicKey> signing_key_;
  // The highest acknowledged (or since observed) tier sequence and the version it binds.
  int64_t acked_sequence_ = 0;
  std::string acked_version_;
  // Every version seen PUBLISHED with readable bytes, for the final re-read.
  std::vector<Attempt> published_;
  int blobs_read_ = 0;
};

TEST_F(CrashTest, AcknowledgedPublishesSurviveKillNine) {
  const int rounds = RoundsFromEnv();
  const uint64_t seed = SeedFromEnv();
  std::cout << "crash_test: " << rounds << " rounds, MODELDIST_CRASH_SEED=" << seed << "\n";
  std::mt19937_64 rng(seed);
  const std::string catalog = scratch_.Join("data/catalog.db");

  ASSERT_TRUE(server_->Start());
  {
    E2eClient client(server_->address(), token_);
    grpc::Status status = client.CreateModel(kModel);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    LoadSigningKey(client);
  }

  int acked_publishes = 0;
  int cut_off[4] = {0, 0, 0, 0};  // kills during create, upload, publish, set tier
  const auto started = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round, " (MODELDIST_CRASH_SEED=", seed, ")"));
    PublishLog log;
    std::atomic<bool> stop{false};
    std::thread publisher(PublishUntilFailure, server_->address(), token_, round, rng(),
                          std::cref(stop), &log);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, kMaxKillDelayMs)(rng)));
    server_->Kill();
    stop = true;
    publisher.join();

    // The kill is the only thing allowed to stop the publisher: its rpc fails UNAVAILABLE, or
    // (OK) it saw `stop` right after an rpc that beat the kill.
    EXPECT_TRUE(log.stopped_by.ok() ||
                log.stopped_by.error_code() == grpc::StatusCode::UNAVAILABLE)
        << "publisher stopped by " << StatusText(log.stopped_by) << "; server log:\n"
        << server_->LogTail();
    for (const Attempt& a : log.attempts) acked_publishes += a.published ? 1 : 0;
    if (!log.attempts.empty()) {
      const Attempt& last = log.attempts.back();
      ++cut_off[!last.created ? 0 : !last.uploaded ? 1 : !last.published ? 2 : 3];
    }

    // Checked on disk before the server gets a chance to repair anything.
    ASSERT_EQ(IntegrityCheck(catalog), "ok");

    ASSERT_TRUE(server_->Start());
    E2eClient client(server_->address(), token_);
    ASSERT_NO_FATAL_FAILURE(CheckAttempts(client, log.attempts));
    ASSERT_NO_FATAL_FAILURE(CheckNoHalfPublishedVersion(client));
    ASSERT_NO_FATAL_FAILURE(CheckTier(client, log.attempts));
    // Earlier rounds' versions must survive later crashes too; re-read a few each time.
    for (int i = 0; i < kOlderVersionsReadPerRound && !published_.empty(); ++i) {
      const Attempt& older = published_[std::uniform_int_distribution<size_t>(
          0, published_.size() - 1)(rng)];
      ASSERT_NO_FATAL_FAILURE(ExpectReadable(client, older.digest, older.size));
    }
    if (::testing::Test::HasFailure()) break;
  }

  // A clean shutdown and one more start: every version ever seen published is still whole.
  ASSERT_TRUE(server_->Stop());
  ASSERT_EQ(IntegrityCheck(catalog), "ok");
  ASSERT_TRUE(server_->Start());
  E2eClient client(server_->address(), token_);
  for (const Attempt& a : published_) {
    SCOPED_TRACE(a.name);
    v1::Version version;
    grpc::Status status = client.GetVersion(a.name, &version);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    EXPECT_EQ(version.state(), v1::Version::PUBLISHED);
    ASSERT_NO_FATAL_FAILURE(ExpectReadable(client, a.digest, a.size));
  }
  ASSERT_TRUE(server_->Stop());

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "crash_test: " << rounds << " kills in " << seconds << " s; " << acked_publishes
            << " acknowledged publishes, " << published_.size()
            << " published versions re-read at the end, " << blobs_read_
            << " blob reads in all; killed during create/upload/publish/set-tier: "
            << cut_off[0] << "/" << cut_off[1] << "/" << cut_off[2] << "/" << cut_off[3]
            << "\n";
  // A run where the kill never caught a publish in flight would prove little.
  EXPECT_GT(acked_publishes, 0);
}

}  // namespace
}  // namespace modeldist::e2e
