// File: ctl_e2e_fixture.h
//
// CtlE2eTest: the real modeldist-server binary on 127.0.0.1:0 with a scratch data dir
// (tests/testing/server_process.h), the modeldistctl binary run as a user would, and a model
// file to publish; plus what the end-to-end tests check a device gets.
#ifndef MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_E2E_FIXTURE_H_
#define MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_E2E_FIXTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/child_process.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {

// The server's clock, in microseconds since the Unix epoch: a new sequence is never below it
// (TierBinding.sequence), so a first bind's sequence is the clock when the server made it.
int64_t ClockMicros();

// The number after "sequence " in modeldistctl's output; -1 when there is none.
int64_t SequenceIn(absl::string_view out);

class CtlE2eTest : public ::testing::Test {
 protected:
  static constexpr int64_t kFileSize = 3 * (1 << 20) + 4321;

  void SetUp() override;
  void TearDown() override;

  static std::string ServerBinary();
  static std::string CtlBinary();

  // Runs the modeldistctl binary with `--server <test server>` prepended, with MODELDIST_*
  // variables of the test's own environment removed and `env` added (replacing any variable
  // of the same name).
  CtlRun Ctl(std::vector<std::string> args, std::map<std::string, std::string> env = {},
             bool with_token_file = true);

  // Ctl in two halves, for a test that does something to the running command (ctl_) in
  // between. StartCtl is false after a test failure.
  ::testing::AssertionResult StartCtl(std::vector<std::string> args,
                                      std::map<std::string, std::string> env = {},
                                      bool with_token_file = true);
  CtlRun WaitCtl();

  std::string OutPath() const;
  std::string ErrPath() const;

  std::vector<std::string> PublishArgs(const std::string& version) const;

  std::string Token() const;

  // What a device of `platform`/`arch` on `tier` gets: a manifest that verifies against the
  // server's trust root and names `digest`, and bytes (ArtifactService.Read) that are
  // `contents` and hash to it.
  void ExpectDeviceGets(const std::string& tier, v1::Platform platform, v1::Arch arch,
                        const std::string& digest, const std::string& contents);

  std::unique_ptr<RegistryClient> Client() const;

  PublishSpec Spec(const std::string& version) const;

  modeldist::testing::ScratchDir dir_;
  std::unique_ptr<modeldist::testing::ServerProcess> server_;
  modeldist::testing::ChildProcess ctl_;
  std::string contents_;
  std::string file_;
  std::string digest_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_E2E_FIXTURE_H_
