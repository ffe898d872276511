// File: agent_app.h
//
// An app on a device, as the fleet tests need it: the real agent through its C ABI
// (modeldist/agent.h) on a directory of its own, and a model "load" that reads the file the
// agent says is current and fails when its digest is one this device cannot load (a model
// that does not load on this machine). Launch() does what an app does at start: ask which
// model to load, load it, and confirm it or report the failure (which rolls a trial back).
#ifndef MODELDIST_TESTS_E2E_AGENT_APP_H_
#define MODELDIST_TESTS_E2E_AGENT_APP_H_

#include <string>

#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::e2e {

// What one launch of the app did.
struct LaunchResult {
  std::string loaded;        // the digest of the model the app runs after the launch
  bool load_failed = false;  // the first model it was given did not load
};

class AgentApp {
 public:
  // The agent syncs `tier` from `address` into `dir` as device `device_id` (macOS, `arch`),
  // trusting `trust_root_file`; the app cannot load the artifact whose digest is
  // `unloadable` (empty: it loads everything).
  AgentApp(const std::string& address, const std::string& tier, const std::string& dir,
           const std::string& trust_root_file, std::string device_id, v1::Arch arch,
           std::string unloadable);
  ~AgentApp();
  AgentApp(const AgentApp&) = delete;
  AgentApp& operator=(const AgentApp&) = delete;

  const std::string& device_id() const { return device_id_; }
  v1::Arch arch() const { return arch_; }

  // md_agent_sync; fails unless it returns MD_OK. `version` is the current version after it,
  // `activated` whether it activated one.
  ::testing::AssertionResult Sync(std::string* version, bool* activated);
  // One app start, as described at the top.
  ::testing::AssertionResult Launch(LaunchResult* result);

 private:
  // Loads the model at `path` as this device can: its digest, or an error when unloadable.
  ::testing::AssertionResult Load(const char* path, std::string* digest, bool* loaded);

  std::string device_id_;
  v1::Arch arch_;
  std::string unloadable_;
  md_agent* agent_ = nullptr;
};

}  // namespace modeldist::e2e

#endif  // MODELDIST_TESTS_E2E_AGENT_APP_H_
