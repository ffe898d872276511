// Bundles end to end: a real server on loopback, `modeldistctl bundle export` (in-process), then
// InstallBundle into a fresh device dir; and each way a bundle can be wrong refused with
// nothing activated and nothing left in staging/. Also adopting a model file an app ships.
#include "client/agent/bundle_install.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/agent/agent.h"
#include "client/agent/trial_state.h"
#include "common/bundle_format.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/tar.h"
#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "tests/client/agent/agent_cli.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/tar_entries.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;
using Entries = TarEntries;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteEntries(const std::string& path, const Entries& entries) {
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  TarWriter tar(fd.get(), path);
  for (const auto& [name, body] : entries) ASSERT_TRUE(tar.Add(name, body).ok());
  ASSERT_TRUE(tar.Finish().ok());
}

class BundleInstallTest : public AgentFixture {
 protected:
  void SetUp() override {
    version1_ = Publish("1", v1_);
    server_.SetTier("llama8b", "", version1_);
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
  }

  // `modeldistctl bundle export` for linux/x86_64 `tier` (llama8b) into `out`; its exit code.
  int Export(const std::string& out, bool blobs = true, const std::string& tier = "llama8b",
             const std::string& channel = "") {
    std::vector<std::string> args = {
        "--server",   ServerAddress(), "bundle", "export", "--tier",   tier,
        "--platform", "linux",         "--arch", "x86_64", "--output", out};
    if (!blobs) args.push_back("--no-blobs");
    if (!channel.empty()) {
      args.push_back("--channel");
      args.push_back(channel);
    }
    ctl::CtlRun run = ctl::RunInProcess(args);
    EXPECT_EQ(run.code, 0) << run.err;
    return run.code;
  }

  agent::BundleInstallOptions Install(const std::string& bundle, const std::string& dir = "") {
    agent::BundleInstallOptions o;
    o.bundle = bundle;
    o.dir = dir.empty() ? dir_.Join("device") : dir;
    o.trust_root_file = root_file_;
    o.platform = v1::PLATFORM_LINUX;
    o.arch = v1::ARCH_X86_64;
    o.fsync = false;
    return o;
  }

  // Nothing activated and nothing half-written: no `current`, an empty staging/.
  void ExpectNothingInstalled(const std::string& dir) {
    EXPECT_FALSE(std::filesystem::exists(dir + "/current"));
    if (std::filesystem::exists(dir + "/staging")) {
      EXPECT_TRUE(std::filesystem::is_empty(dir + "/staging"));
    }
  }

  // 9 MiB + 5: three 4 MiB chunks.
  const std::string v1_ = RandomBytes((9 << 20) + 5, 1);
  std::string version1_;
  const std::string bundle_ = dir_.Join("llama8b.bundle");
};

TEST_F(BundleInstallTest, InstallsWhatANetworkSyncInstalls) {
  ASSERT_EQ(Export(bundle_), 0);
  const Entries entries = ReadTarEntries(bundle_);
  ASSERT_EQ(entries.size(), 4u);  // INDEX, roots/1.pb, manifest.pb, the blob
  EXPECT_EQ(entries[0].first, "INDEX");
  EXPECT_EQ(entries[1].first, "roots/1.pb");
  EXPECT_EQ(entries[2].first, "manifest.pb");
  EXPECT_EQ(entries[3].second, v1_);

  auto installed = agent::InstallBundle(Install(bundle_));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->action, agent::BundleInstallResult::Action::kActivated);
  EXPECT_EQ(installed->placement, "bundle");
  EXPECT_FALSE(installed->expiry_waived);
  EXPECT_EQ(installed->stats.chunks_total, 3);
  EXPECT_EQ(ReadAll(installed->installed.path), v1_);

  // The same layout, file and state a network sync gives another device.
  agent::SyncOptions o = Options();
  o.dir = dir_.Join("networked");
  auto synced = agent::Sync(o);
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(installed->installed.version, synced->installed.version);
  EXPECT_EQ(installed->installed.digest, synced->installed.digest);
  EXPECT_EQ(
      std::filesystem::path(installed->installed.path).lexically_relative(dir_.Join("device")),
      std::filesystem::path(synced->installed.path).lexically_relative(o.dir));
  EXPECT_EQ(ReadAll(dir_.Join("device/trust/sequence")), ReadAll(o.dir + "/trust/sequence"));
  EXPECT_EQ(ReadAll(dir_.Join("device/trust/root.bin")), ReadAll(o.dir + "/trust/root.bin"));
  // Installed from a bundle as from the network: on trial until the app confirms it loads.
  const std::optional<agent::TrialRecord> bundled_trial = agent::ReadTrial(dir_.Join("device"));
  const std::optional<agent::TrialRecord> synced_trial = agent::ReadTrial(o.dir);
  ASSERT_TRUE(bundled_trial.has_value());
  ASSERT_TRUE(synced_trial.has_value());
  EXPECT_EQ(bundled_trial->digest, installed->installed.digest);
  EXPECT_EQ(bundled_trial->key, synced_trial->key);
  EXPECT_EQ(bundled_trial->tier, synced_trial->tier);

  // The bundled device is then as current as the networked one: no byte to fetch.
  o.dir = dir_.Join("device");
  auto after = agent::Sync(o);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->action, agent::SyncResult::Action::kUpToDate);
  // And the same bundle again is a no-op.
  auto again = agent::InstallBundle(Install(bundle_));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->action, agent::BundleInstallResult::Action::kUpToDate);
}

TEST_F(BundleInstallTest, FollowsRootRotationCarriedInTheBundle) {
  v1::RotateSigningKeysRequest rotate;
  rotate.set_count(2);
  rotate.set_threshold(2);
  v1::SignedTrustRoot root;
  ASSERT_TRUE(server_.registry().RotateSigningKeys(server_.Admin().get(), rotate, &root).ok());
  ASSERT_EQ(Export(bundle_), 0);
  // The device pinned root 1; the manifest is signed by root 2's keys only.
  auto installed = agent::InstallBundle(Install(bundle_));
  ASSERT_TRUE(installed.ok()) << installed.status();
  v1::SignedTrustRoot kept;
  ASSERT_TRUE(kept.ParseFromString(ReadAll(dir_.Join("device/trust/root.bin"))));
  v1::TrustRoot kept_root;
  ASSERT_TRUE(kept_root.ParseFromString(kept.root()));
  EXPECT_EQ(kept_root.version(), 2);
}

TEST_F(BundleInstallTest, FlippedBlobByteIsRefused) {
  ASSERT_EQ(Export(bundle_), 0);
  Entries entries = ReadTarEntries(bundle_);
  entries[3].second[5'000'000] ^= 0x01;
  ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
  auto installed = agent::InstallBundle(Install(bundle_));
  EXPECT_EQ(ErrorReason(installed.status()), "BUNDLE_BLOB_MISMATCH") << installed.status();
  EXPECT_EQ(agent::ExitCodeFor(installed.status()), 20);
  ExpectNothingInstalled(dir_.Join("device"));
}

TEST_F(BundleInstallTest, TamperedManifestIsRefused) {
  ASSERT_EQ(Export(bundle_), 0);
  Entries entries = ReadTarEntries(bundle_);
  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(signed_manifest.ParseFromString(entries[2].second));
  std::string bytes = signed_manifest.manifest();
  bytes[bytes.size() / 2] ^= 0x01;
  signed_manifest.set_manifest(bytes);
  entries[2].second = signed_manifest.SerializeAsString();
  ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
  auto installed = agent::InstallBundle(Install(bundle_));
  EXPECT_EQ(ErrorReason(installed.status()), "SIGNATURE_THRESHOLD_NOT_MET") << installed.status();
  EXPECT_EQ(agent::ExitCodeFor(installed.status()), 10);
  ExpectNothingInstalled(dir_.Join("device"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("device/trust/sequence")));
}

TEST_F(BundleInstallTest, RootChainOfAnotherServerIsRefused) {
  // Another server (its own keys) rotates once: its bundle carries its roots 1 and 2, which
  // do not chain from the root this device pinned.
  TestServer other;
  other.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, v1_);
  other.SetTier("llama8b", "", "models/llama/versions/1");
  v1::RotateSigningKeysRequest rotate;
  rotate.set_count(1);
  v1::SignedTrustRoot root;
  ASSERT_TRUE(other.registry().RotateSigningKeys(other.Admin().get(), rotate, &root).ok());
  ctl::CtlRun run = ctl::RunInProcess(
      {"--server", absl::StrCat("127.0.0.1:", other.server().port()), "bundle", "export", "--tier",
       "llama8b", "--platform", "linux", "--arch", "x86_64", "--output", bundle_});
  ASSERT_EQ(run.code, 0) << run.err;
  auto installed = agent::InstallBundle(Install(bundle_));
  EXPECT_EQ(ErrorReason(installed.status()), "ROOT_SIGNATURE_THRESHOLD_NOT_MET")
      << installed.status();
  EXPECT_EQ(agent::ExitCodeFor(installed.status()), 11);
  ExpectNothingInstalled(dir_.Join("device"));

  // Without the rotation step in the bundle (only its root 1, which the device skips as
  // already at version 1), the manifest's signatures are not the pinned root's.
  Entries entries = ReadTarEntries(bundle_);
  entries.erase(entries.begin() + 2);  // roots/2.pb
  entries[0].second = SerializeBundleIndex(
      {.first_root = 1,
       .root_count = 1,
       .blob = BundleBlob{FormatDigest(Sha256::HexOf(v1_)), static_cast<int64_t>(v1_.size())}});
  ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
  installed = agent::InstallBundle(Install(bundle_));
  EXPECT_EQ(ErrorReason(installed.status()), "SIGNATURE_THRESHOLD_NOT_MET") << installed.status();
  ExpectNothingInstalled(dir_.Join("device"));
}

TEST_F(BundleInstallTest, TruncatedBundleIsRefused) {
  ASSERT_EQ(Export(bundle_), 0);
  const std::string whole = ReadAll(bundle_);
  for (size_t cut : {size_t{700}, whole.size() / 2, whole.size() - 600}) {
    SCOPED_TRACE(cut);
    ASSERT_TRUE(WriteFileAtomically(bundle_, whole.substr(0, cut), 0644).ok());
    auto installed = agent::InstallBundle(Install(bundle_));
    EXPECT_EQ(ErrorReason(installed.status()), "TAR_TRUNCATED") << installed.status();
    EXPECT_EQ(agent::ExitCodeFor(installed.status()), 20);
    ExpectNothingInstalled(dir_.Join("device"));
  }
}

TEST_F(BundleInstallTest, UnexpectedEntriesAreRefused) {
  ASSERT_EQ(Export(bundle_), 0);
  const Entries good = ReadTarEntries(bundle_);
  {
    SCOPED_TRACE("an entry after the blob");
    Entries entries = good;
    entries.emplace_back("blobs/extra", "surprise");
    ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
    auto installed = agent::InstallBundle(Install(bundle_));
    EXPECT_EQ(ErrorReason(installed.status()), "BUNDLE_UNEXPECTED_ENTRY") << installed.status();
    ExpectNothingInstalled(dir_.Join("device"));
  }
  {
    SCOPED_TRACE("an entry between the roots and the manifest");
    Entries entries = good;
    entries.insert(entries.begin() + 2, {"notes.txt", "hello"});
    ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
    auto installed = agent::InstallBundle(Install(bundle_));
    EXPECT_EQ(ErrorReason(installed.status()), "BUNDLE_UNEXPECTED_ENTRY") << installed.status();
    ExpectNothingInstalled(dir_.Join("device"));
  }
  {
    SCOPED_TRACE("a blob whose name is not a digest");
    Entries entries = good;
    entries[0].second = absl::StrCat("modeldist-bundle v1\nroot roots/1.pb\nmanifest manifest.pb\n",
                                     "blob blobs/model.gguf ", v1_.size(), "\n");
    entries[3].first = "blobs/model.gguf";
    ASSERT_NO_FATAL_FAILURE(WriteEntries(bundle_, entries));
    auto installed = agent::InstallBundle(Install(bundle_));
    EXPECT_EQ(ErrorReason(installed.status()), "BUNDLE_MALFORMED") << installed.status();
    ExpectNothingInstalled(dir_.Join("device"));
  }
}

TEST_F(BundleInstallTest, OlderBundleNeverReplacesANewerActiveVersion) {
  ASSERT_EQ(Export(bundle_), 0);  // version 1
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(5000, 2)));
  agent::SyncOptions o = Options();
  o.dir = dir_.Join("device");
  ASSERT_TRUE(agent::Sync(o).ok());

  auto installed = agent::InstallBundle(Install(bundle_));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->action, agent::BundleInstallResult::Action::kKeptNewer);
  EXPECT_EQ(installed->installed.version, "models/llama/versions/2");
  EXPECT_GT(installed->highest_seen, installed->manifest.sequence());
  auto store = agent::ModelStore::Open(o.dir);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->Current()->version, "models/llama/versions/2");

  // A device that saw the newer sequence but has nothing active refuses the old bundle.
  const std::string empty = dir_.Join("empty");
  ASSERT_TRUE(MakeDirs(empty + "/trust", 0700).ok());
  ASSERT_TRUE(WriteFileAtomically(empty + "/trust/sequence",
                                  absl::StrCat("llama8b stable ", installed->highest_seen, "\n"),
                                  0600)
                  .ok());
  auto refused = agent::InstallBundle(Install(bundle_, empty));
  EXPECT_EQ(ErrorReason(refused.status()), "SEQUENCE_ROLLBACK") << refused.status();
  ExpectNothingInstalled(empty);
}

// The rollback check is per tier/channel but the store holds one active model: a genuine,
// long-expired bundle of a tier or channel this dir never saw (sequence 0 there) must not
// replace its newer active version, nor a sync of another tier a bundled one.
TEST_F(BundleInstallTest, BundleOfAnotherTierOrChannelIsRefused) {
  const std::string version2 = Publish("2", RandomBytes(5000, 2));
  server_.SetTier("llama8b", "", version2);
  server_.SetTier("phi", "", version1_);
  server_.SetTier("llama8b", "beta", version1_);
  const std::string other_tier = dir_.Join("phi.bundle");
  const std::string other_channel = dir_.Join("beta.bundle");
  ASSERT_EQ(Export(other_tier, true, "phi"), 0);
  ASSERT_EQ(Export(other_channel, true, "llama8b", "beta"), 0);
  agent::SyncOptions o = Options();
  o.dir = dir_.Join("device");
  ASSERT_TRUE(agent::Sync(o).ok());
  const std::string sequence_before = ReadAll(o.dir + "/trust/sequence");

  for (const std::string& bundle : {other_tier, other_channel}) {
    for (bool explicit_target : {false, true}) {
      SCOPED_TRACE(absl::StrCat(bundle, explicit_target ? " with its --tier/--channel" : ""));
      agent::BundleInstallOptions b = Install(bundle);
      b.now = [] { return absl::Now() + absl::Hours(24 * 365); };  // long expired
      if (explicit_target) {
        b.tier = bundle == other_tier ? "phi" : "llama8b";
        b.channel = bundle == other_tier ? "stable" : "beta";
      }
      auto installed = agent::InstallBundle(b);
      EXPECT_EQ(ErrorReason(installed.status()), "WRONG_TARGET") << installed.status();
      EXPECT_THAT(installed.status().message(), HasSubstr("llama8b/stable"));
      auto store = agent::ModelStore::Open(o.dir);
      ASSERT_TRUE(store.ok());
      ASSERT_TRUE(store->Current().has_value());
      EXPECT_EQ(store->Current()->version, version2);
      EXPECT_EQ(ReadAll(o.dir + "/trust/sequence"), sequence_before);
      EXPECT_TRUE(std::filesystem::is_empty(o.dir + "/staging"));
    }
  }

  // A network sync may move a dir to another tier: the device asked for it, and the manifest is
  // fresh. After it, the dir follows llama8b, and a bundle of its old tier phi is refused.
  const std::string moved = dir_.Join("phi-device");
  auto phi = agent::InstallBundle(Install(other_tier, moved));
  ASSERT_TRUE(phi.ok()) << phi.status();
  o.dir = moved;
  auto synced = agent::Sync(o);
  ASSERT_TRUE(synced.ok()) << synced.status();
  auto store = agent::ModelStore::Open(moved);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->Current()->version, version2);
  auto back = agent::InstallBundle(Install(other_tier, moved));
  EXPECT_EQ(ErrorReason(back.status()), "WRONG_TARGET") << back.status();
}

// A source that serves `bytes` up to `cut`, then fails: an interrupted network download.
class CutSource : public agent::ByteSource {
 public:
  CutSource(std::string bytes, int64_t cut) : bytes_(std::move(bytes)), cut_(cut) {}
  absl::Status Read(const std::string&, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    const int64_t end = std::min<int64_t>(offset + limit, cut_);
    if (offset < end) {
      MD_RETURN_IF_ERROR(sink(absl::string_view(bytes_).substr(offset, end - offset)));
    }
    return absl::UnavailableError("connection reset");
  }
  void Cancel() override {}
  std::string Describe() const override { return "cut"; }

 private:
  std::string bytes_;
  int64_t cut_;
};

// A failed bundle install removes only what it created: the partial of an interrupted sync of
// the same digest stays for that sync (or this bundle) to resume.
TEST_F(BundleInstallTest, FailedInstallKeepsAnInterruptedDownloadsPartial) {
  ASSERT_EQ(Export(bundle_), 0);
  Entries entries = ReadTarEntries(bundle_);
  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(signed_manifest.ParseFromString(entries[2].second));
  v1::Manifest manifest;
  ASSERT_TRUE(manifest.ParseFromString(signed_manifest.manifest()));
  const std::string dir = dir_.Join("device");
  ASSERT_TRUE(MakeDirs(dir).ok());
  auto store = agent::ModelStore::Open(dir);
  ASSERT_TRUE(store.ok());
  auto partial = store->PartialPath(manifest.artifact().digest());
  ASSERT_TRUE(partial.ok());
  // The interrupted download: chunk 0 (4 MiB) verified and journaled.
  CutSource cut(v1_, (4 << 20) + 100);
  agent::ChunkDownloadOptions download;
  download.retry.max_attempts = 1;
  download.fsync = false;
  ASSERT_FALSE(agent::DownloadChunks(manifest.artifact(), {&cut}, *partial, download).ok());
  ASSERT_TRUE(std::filesystem::exists(*partial));
  ASSERT_TRUE(std::filesystem::exists(*partial + ".journal"));

  // A bundle whose blob is damaged in chunk 1 fails, and leaves the download's partial.
  entries[3].second[5'000'000] ^= 0x01;
  const std::string damaged = dir_.Join("damaged.bundle");
  ASSERT_NO_FATAL_FAILURE(WriteEntries(damaged, entries));
  auto failed = agent::InstallBundle(Install(damaged));
  EXPECT_EQ(ErrorReason(failed.status()), "BUNDLE_BLOB_MISMATCH") << failed.status();
  EXPECT_TRUE(std::filesystem::exists(*partial));
  EXPECT_TRUE(std::filesystem::exists(*partial + ".journal"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/current"));

  // The good bundle resumes it.
  auto installed = agent::InstallBundle(Install(bundle_));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_GE(installed->stats.chunks_reused, 1);
  EXPECT_EQ(ReadAll(installed->installed.path), v1_);
}

// The ByteSource contract: a Cancel that lands before a Read never fails it; one during a Read
// stops it.
TEST(TarEntrySourceTest, CancelBeforeAReadDoesNotFailIt) {
  ScratchDir dir;
  const std::string path = dir.Join("a.tar");
  const std::string body = RandomBytes((3 << 20) + 7, 4);
  ASSERT_NO_FATAL_FAILURE(WriteEntries(path, {{"blob", body}}));
  ScopedFd fd(::open(path.c_str(), O_RDONLY));
  TarReader tar(fd.get(), path);
  TarEntry entry;
  ASSERT_TRUE(*tar.Next(&entry));
  agent::TarEntrySource source(&tar, entry.size);
  source.Cancel();  // the watchdog racing an earlier Read
  std::string got;
  auto append = [&got](absl::string_view piece) {
    got.append(piece.data(), piece.size());
    return absl::OkStatus();
  };
  ASSERT_TRUE(source.Read("", 0, 10, append).ok());
  EXPECT_EQ(got, body.substr(0, 10));
  // Cancelled during a Read of several 1 MiB pieces: it stops after the first.
  got.clear();
  absl::Status during = source.Read("", 10, 2 << 20, [&](absl::string_view piece) {
    source.Cancel();
    return append(piece);
  });
  EXPECT_EQ(during.code(), absl::StatusCode::kCancelled) << during;
  EXPECT_EQ(got, body.substr(10, 1 << 20));
  EXPECT_TRUE(source.archive_error().ok());
}

TEST_F(BundleInstallTest, ExpiredManifestIsAcceptedWithTheWaiverSaid) {
  ASSERT_EQ(Export(bundle_), 0);
  agent::BundleInstallOptions o = Install(bundle_);
  o.now = [] { return absl::Now() + absl::Hours(24 * 90); };  // TTL is 24 h
  auto installed = agent::InstallBundle(o);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_TRUE(installed->expiry_waived);
  EXPECT_EQ(installed->action, agent::BundleInstallResult::Action::kActivated);

  // The CLI says so.
  const std::string dir = dir_.Join("cli");
  AgentRun run = RunAgent({"install-bundle", bundle_, "--dir", dir, "--trust-root", root_file_,
                           "--platform", "linux", "--arch", "x86_64"},
                          dir_.path());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("activated models/llama/versions/1"));
  run = RunAgent({"install-bundle", bundle_, "--dir", dir, "--json"}, dir_.path());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(JsonField(run.out, "action"), "up-to-date");
}

TEST_F(BundleInstallTest, CliRefusesABadBundleWithItsExitCode) {
  ASSERT_EQ(Export(bundle_), 0);
  const std::string whole = ReadAll(bundle_);
  ASSERT_TRUE(WriteFileAtomically(bundle_, whole.substr(0, whole.size() / 2), 0644).ok());
  const std::string dir = dir_.Join("cli");
  AgentRun run = RunAgent({"install-bundle", bundle_, "--dir", dir, "--trust-root", root_file_,
                           "--platform", "linux", "--arch", "x86_64", "--json"},
                          dir_.path());
  EXPECT_EQ(run.exit_code, 20) << run.out << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/current"));
}

TEST_F(BundleInstallTest, AdoptsAShippedGgufWithoutTheBlobInTheBundle) {
  ASSERT_EQ(Export(bundle_, /*blobs=*/false), 0);
  EXPECT_EQ(ReadTarEntries(bundle_).size(), 3u);  // no blob
  const std::string shipped = dir_.Join("App.app/model.gguf");
  ASSERT_TRUE(MakeDirs(dir_.Join("App.app")).ok());
  ASSERT_TRUE(WriteFileAtomically(shipped, v1_, 0444).ok());

  agent::BundleInstallOptions o = Install(bundle_);
  o.adopt_file = shipped;
  auto adopted = agent::InstallBundle(o);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(adopted->action, agent::BundleInstallResult::Action::kActivated);
  // This file system decides: a clone where it has them, else a verified copy.
  EXPECT_TRUE(adopted->placement == "reflink" || adopted->placement == "copy")
      << adopted->placement;
  EXPECT_EQ(ReadAll(adopted->installed.path), v1_);
  EXPECT_EQ(ReadAll(shipped), v1_);  // the app's copy is untouched
  struct stat app, store;
  ASSERT_EQ(::stat(shipped.c_str(), &app), 0);
  ASSERT_EQ(::stat(adopted->installed.path.c_str(), &store), 0);
  EXPECT_NE(app.st_ino, store.st_ino);  // never a hard link
  EXPECT_EQ(app.st_mode & 0777, 0444u);
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("device/staging")));

  // A manifest-only bundle needs the file; a full bundle is not for adopting.
  auto no_file = agent::InstallBundle(Install(bundle_, dir_.Join("other")));
  EXPECT_EQ(ErrorReason(no_file.status()), "BUNDLE_NO_BLOB");
}

TEST_F(BundleInstallTest, AdoptRefusesAFileThatIsNotTheModel) {
  ASSERT_EQ(Export(bundle_, /*blobs=*/false), 0);
  std::string wrong = v1_;
  wrong[8 << 20] ^= 0x40;  // same size, one bit off in the last chunk
  const std::string shipped = dir_.Join("model.gguf");
  ASSERT_TRUE(WriteFileAtomically(shipped, wrong, 0644).ok());
  agent::BundleInstallOptions o = Install(bundle_);
  o.adopt_file = shipped;
  auto adopted = agent::InstallBundle(o);
  EXPECT_EQ(ErrorReason(adopted.status()), "ADOPT_FILE_MISMATCH") << adopted.status();
  EXPECT_THAT(adopted.status().message(), HasSubstr("is not the bundle's"));
  ExpectNothingInstalled(o.dir);
  EXPECT_EQ(ReadAll(shipped), wrong);

  ASSERT_TRUE(WriteFileAtomically(shipped, v1_.substr(1), 0644).ok());
  EXPECT_EQ(ErrorReason(agent::InstallBundle(o).status()), "ADOPT_SIZE_MISMATCH");

  // An unpacked .mlmodelc folder: no zip digest can check it.
  o.adopt_file = dir_.Join("Llama.mlmodelc");
  ASSERT_TRUE(MakeDirs(o.adopt_file).ok());
  auto folder = agent::InstallBundle(o);
  EXPECT_EQ(ErrorReason(folder.status()), "ADOPT_NOT_A_FILE");
  EXPECT_THAT(folder.status().message(), HasSubstr(".mlmodelc"));
  ExpectNothingInstalled(o.dir);

  ASSERT_EQ(Export(bundle_), 0);  // with the blob
  o.adopt_file = shipped;
  EXPECT_EQ(ErrorReason(agent::InstallBundle(o).status()), "BUNDLE_HAS_BLOB");
}

TEST_F(BundleInstallTest, CApiInstallsABundle) {
  ASSERT_EQ(Export(bundle_), 0);
  const std::string dir = dir_.Join("capi");
  md_agent_config config = {};
  config.dir = dir.c_str();
  config.trust_root_file = root_file_.c_str();
  config.platform = "linux";
  config.arch = "x86_64";
  md_agent* handle = md_agent_new(&config);
  md_sync_result result;
  ASSERT_EQ(md_agent_install_bundle(handle, bundle_.c_str(), nullptr, &result), MD_OK)
      << md_agent_last_error(handle);
  EXPECT_EQ(result.activated, 1);
  EXPECT_EQ(ReadAll(result.model_path), v1_);
  md_agent_free(handle);
}

// Export and install stream: peak RSS does not grow with the model. Measured by /usr/bin/time
// around the binaries (getrusage(RUSAGE_CHILDREN) would report this test's own peak: a
// posix_spawn child shares its parent's memory until exec).
int64_t PeakRssMib(const std::string& command, const std::string& rss_file) {
  EXPECT_EQ(
      std::system(
          absl::StrCat("/usr/bin/time -f %M -o ", rss_file, " ", command, " > /dev/null").c_str()),
      0)
      << command;
  int64_t peak_kib = -1;
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadAll(rss_file)), &peak_kib));
  return peak_kib / 1024;
}

TEST_F(BundleInstallTest, ExportAndInstallMemoryStaysFlat) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's quarantine holds freed memory (256 MiB by default), so the peak is not
  // the program's; the normal build measures it.
  GTEST_SKIP() << "peak RSS means nothing under AddressSanitizer";
#endif
  const std::string big = RandomBytes(256 << 20, 7);
  server_.SetTier("llama8b", "", Publish("big", big));
  const int64_t export_mib = PeakRssMib(
      absl::StrCat(BuildDir(), "/client/modeldistctl/modeldistctl --server ", ServerAddress(),
                   " bundle export --tier llama8b --platform linux --arch x86_64 --output ",
                   bundle_),
      dir_.Join("rss"));
  const int64_t install_mib = PeakRssMib(
      absl::StrCat(AgentBinary(), " install-bundle ", bundle_, " --dir ", dir_.Join("big"),
                   " --trust-root ", root_file_, " --platform linux --arch x86_64"),
      dir_.Join("rss"));
  std::cout << "a 256 MiB model: bundle export peak RSS " << export_mib
            << " MiB, install-bundle peak RSS " << install_mib << " MiB\n";
  EXPECT_LT(export_mib, 48);
  EXPECT_LT(install_mib, 48);
  auto store = agent::ModelStore::Open(dir_.Join("big"));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->Current()->version, "models/llama/versions/big");
}

}  // namespace
}  // namespace modeldist::testing
