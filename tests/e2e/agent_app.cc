#include "tests/e2e/agent_app.h"

#include <utility>

#include "common/file_util.h"
#include "tests/e2e/e2e_client.h"

namespace modeldist::e2e {
namespace {

// What the app says when a model does not load on this machine.
constexpr char kLoadFailureReason[] = "UNSUPPORTED_CPU_FEATURE";

}  // namespace

AgentApp::AgentApp(const std::string& address, const std::string& tier, const std::string& dir,
                   const std::string& trust_root_file, std::string device_id, v1::Arch arch,
                   std::string unloadable)
    : device_id_(std::move(device_id)), arch_(arch), unloadable_(std::move(unloadable)) {
  md_agent_config config = {};
  config.server = address.c_str();
  config.tier = tier.c_str();
  config.dir = dir.c_str();
  config.trust_root_file = trust_root_file.c_str();
  config.platform = "macos";
  config.arch = arch == v1::ARCH_ARM64 ? "arm64" : "x86_64";
  config.device_id = device_id_.c_str();
  config.app_version = "1.0.0";
  agent_ = md_agent_new(&config);  // copies the config
}

AgentApp::~AgentApp() { md_agent_free(agent_); }

::testing::AssertionResult AgentApp::Sync(std::string* version, bool* activated) {
  md_sync_result result = {};
  const int code = md_agent_sync(agent_, nullptr, nullptr, &result);
  if (code != MD_OK) {
    return ::testing::AssertionFailure()
           << device_id_ << ": md_agent_sync " << code << ": " << md_agent_last_error(agent_);
  }
  *version = result.version;
  *activated = result.activated != 0;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult AgentApp::Load(const char* path, std::string* digest, bool* loaded) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    return ::testing::AssertionFailure() << device_id_ << ": " << bytes.status();
  }
  *digest = DigestOf(*bytes);
  *loaded = *digest != unloadable_;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult AgentApp::Launch(LaunchResult* result) {
  *result = LaunchResult();
  const char* path = nullptr;
  if (md_agent_current_path(agent_, &path) != MD_OK) {
    return ::testing::AssertionFailure()
           << device_id_ << ": md_agent_current_path: " << md_agent_last_error(agent_);
  }
  bool loaded = false;
  ::testing::AssertionResult ok = Load(path, &result->loaded, &loaded);
  if (!ok) return ok;
  if (loaded) {
    if (md_agent_confirm_loaded(agent_) != MD_OK) {
      return ::testing::AssertionFailure()
             << device_id_ << ": md_agent_confirm_loaded: " << md_agent_last_error(agent_);
    }
    return ::testing::AssertionSuccess();
  }
  result->load_failed = true;
  if (md_agent_report_load_failed(agent_, kLoadFailureReason) != MD_OK) {
    return ::testing::AssertionFailure()
           << device_id_ << ": md_agent_report_load_failed: " << md_agent_last_error(agent_);
  }
  // The trial rolled back: the app loads what the agent says is current now.
  if (md_agent_current_path(agent_, &path) != MD_OK) {
    return ::testing::AssertionFailure()
           << device_id_
           << ": md_agent_current_path after the rollback: " << md_agent_last_error(agent_);
  }
  ok = Load(path, &result->loaded, &loaded);
  if (!ok) return ok;
  if (!loaded) return ::testing::AssertionFailure() << device_id_ << ": rolled back to " << path;
  return ::testing::AssertionSuccess();
}

}  // namespace modeldist::e2e
