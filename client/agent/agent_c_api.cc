// The C ABI (include/modeldist/agent.h) over agent::Sync, agent::InstallBundle and the trial
// calls of trial.h. No exception
// or C++ type crosses it.
#include <new>
#include <string>

#include "client/agent/agent.h"
#include "client/agent/bundle_install.h"
#include "client/agent/reporting.h"
#include "client/agent/trial.h"
#include "common/enum_names.h"
#include "modeldist/agent.h"

struct md_agent {
  modeldist::agent::SyncOptions options;
  modeldist::agent::ReportingOptions reporting;
  std::string last_error;
  std::string config_error;  // a bad platform/arch, reported by every sync
  // Backing storage for the strings of the last md_sync_result.
  std::string version, digest, model_path;
};

namespace {
std::string Str(const char* s) { return s == nullptr ? std::string() : std::string(s); }

modeldist::agent::TrialOptions TrialOptionsOf(const md_agent& agent) {
  const modeldist::agent::SyncOptions& o = agent.options;
  modeldist::agent::TrialOptions trial{o.dir, o.tier, o.channel, o.platform, o.arch};
  // As SyncAndReport: reports are queued only when they can be sent (reporting.h); the next
  // sync sends them (an app's launch path does not wait for the network).
  trial.queue_reports = agent.reporting.enabled && !o.device_id.empty();
  return trial;
}

// MD_OK, or the error's code with its message kept for md_agent_last_error.
int Finish(md_agent* agent, const absl::Status& status) {
  agent->last_error = std::string(status.message());
  return modeldist::agent::ExitCodeFor(status);
}

}  // namespace

extern "C" md_agent* md_agent_new(const md_agent_config* config) {
  auto* agent = new (std::nothrow) md_agent();
  if (agent == nullptr || config == nullptr) return agent;
  auto& o = agent->options;
  o.server = Str(config->server);
  o.tier = Str(config->tier);
  o.channel = Str(config->channel);
  o.dir = Str(config->dir);
  o.trust_root_file = Str(config->trust_root_file);
  o.tls_ca_file = Str(config->tls_ca_file);
  o.device_id = Str(config->device_id);
  o.download.max_bytes_per_second = config->max_bytes_per_second;
  agent->reporting.enabled = config->no_reports == 0;
  agent->reporting.app_version = Str(config->app_version);
  if (config->trial_launches < 0 || config->trial_timeout_seconds < 0) {
    agent->config_error = "trial_launches and trial_timeout_seconds must not be negative";
  }
  o.trial.max_launches = config->trial_launches;
  o.trial.timeout = absl::Seconds(config->trial_timeout_seconds);
  if (config->platform != nullptr && *config->platform != '\0') {
    if (!modeldist::ParsePlatformName(config->platform, &o.platform)) {
      agent->config_error = "unknown platform \"" + Str(config->platform) + "\"";
    }
  }
  if (config->arch != nullptr && *config->arch != '\0') {
    if (!modeldist::ParseArchName(config->arch, &o.arch)) {
      agent->config_error = "unknown arch \"" + Str(config->arch) + "\"";
    }
  }
  return agent;
}

extern "C" int md_agent_sync(md_agent* agent, md_progress_fn progress, void* user,
                             md_sync_result* result) {
  if (agent == nullptr || result == nullptr) return MD_INVALID_ARGUMENT;
  if (!agent->config_error.empty()) {
    agent->last_error = agent->config_error;
    return MD_INVALID_ARGUMENT;
  }
  modeldist::agent::SyncOptions options = agent->options;
  if (progress != nullptr) {
    options.download.on_progress = [progress, user](int64_t done, int64_t total) {
      progress(user, done, total);
    };
  }
  auto synced = modeldist::agent::SyncAndReport(options, agent->reporting);
  if (!synced.ok()) {
    agent->last_error = std::string(synced.status().message());
    return modeldist::agent::ExitCodeFor(synced.status());
  }
  agent->last_error.clear();
  agent->version = synced->installed.version;
  agent->digest = synced->installed.digest;
  agent->model_path = synced->installed.path;
  result->activated = synced->action == modeldist::agent::SyncResult::Action::kActivated;
  result->version = agent->version.c_str();
  result->digest = agent->digest.c_str();
  result->model_path = agent->model_path.c_str();
  result->bytes_received = synced->download.bytes_received;
  return MD_OK;
}

extern "C" int md_agent_install_bundle(md_agent* agent, const char* bundle_file,
                                       const char* model_file, md_sync_result* result) {
  if (agent == nullptr || result == nullptr || bundle_file == nullptr) return MD_INVALID_ARGUMENT;
  if (!agent->config_error.empty()) {
    agent->last_error = agent->config_error;
    return MD_INVALID_ARGUMENT;
  }
  const modeldist::agent::SyncOptions& o = agent->options;
  modeldist::agent::BundleInstallOptions options;
  options.bundle = bundle_file;
  options.adopt_file = Str(model_file);
  options.dir = o.dir;
  options.trust_root_file = o.trust_root_file;
  options.tier = o.tier;
  options.channel = o.channel;
  options.platform = o.platform;
  options.arch = o.arch;
  options.trial = o.trial;
  auto installed = modeldist::agent::InstallBundle(options);
  if (!installed.ok()) {
    agent->last_error = std::string(installed.status().message());
    return modeldist::agent::ExitCodeFor(installed.status());
  }
  agent->last_error.clear();
  agent->version = installed->installed.version;
  agent->digest = installed->installed.digest;
  agent->model_path = installed->installed.path;
  result->activated =
      installed->action == modeldist::agent::BundleInstallResult::Action::kActivated;
  result->version = agent->version.c_str();
  result->digest = agent->digest.c_str();
  result->model_path = agent->model_path.c_str();
  result->bytes_received = installed->stats.bytes_received;
  return MD_OK;
}

extern "C" const char* md_agent_last_error(const md_agent* agent) {
  return agent == nullptr ? "no agent" : agent->last_error.c_str();
}

extern "C" void md_agent_free(md_agent* agent) { delete agent; }

extern "C" int md_agent_current_path(md_agent* agent, const char** model_path) {
  if (agent == nullptr || model_path == nullptr) return MD_INVALID_ARGUMENT;
  auto state = modeldist::agent::LaunchCurrent(TrialOptionsOf(*agent));
  if (!state.ok()) return Finish(agent, state.status());
  agent->version = state->current->version;
  agent->digest = state->current->digest;
  agent->model_path = state->current->path;
  *model_path = agent->model_path.c_str();
  return Finish(agent, absl::OkStatus());
}

extern "C" int md_agent_confirm_loaded(md_agent* agent) {
  if (agent == nullptr) return MD_INVALID_ARGUMENT;
  return Finish(
      agent, modeldist::agent::ConfirmLoaded(TrialOptionsOf(*agent), agent->model_path).status());
}

extern "C" int md_agent_report_load_failed(md_agent* agent, const char* reason) {
  if (agent == nullptr) return MD_INVALID_ARGUMENT;
  return Finish(agent, modeldist::agent::ReportLoadFailed(TrialOptionsOf(*agent), Str(reason),
                                                          agent->model_path)
                           .status());
}
