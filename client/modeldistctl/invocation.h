// File: invocation.h
//
// What one modeldistctl command has while it runs: the global flags, the console it writes
// to, and the connection to the server, made only when the command first asks for it. Every
// command (command_families.h) takes an Invocation; RunCtl (commands.h) makes one per run.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_INVOCATION_H_
#define MODELDIST_CLIENT_MODELDISTCTL_INVOCATION_H_

#include <grpcpp/channel.h>

#include <memory>
#include <optional>
#include <ostream>

#include "absl/status/statusor.h"
#include "client/modeldistctl/commands.h"
#include "client/modeldistctl/registry_client.h"

namespace modeldist::ctl {

class Invocation {
 public:
  // `console` must outlive the Invocation.
  Invocation(GlobalOptions global, const Console& console);

  const GlobalOptions& global() const { return global_; }
  std::ostream& out() const { return *console_.out; }
  std::ostream& err() const { return *console_.err; }
  bool err_is_tty() const { return console_.err_is_tty; }
  // An environment variable as the console sees it (tests run commands with their own).
  std::optional<std::string> GetEnv(const std::string& name) const {
    return console_.getenv ? console_.getenv(name) : std::nullopt;
  }

  // The channel to the server, created on first use. Commands that need no token (keys root)
  // use it directly.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel();

  // The registry client, created on first use: reading the token and building the channel
  // are the first things that can fail for a reason outside the command's own arguments.
  absl::StatusOr<RegistryClient*> Client();

 private:
  GlobalOptions global_;
  const Console& console_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<RegistryClient> client_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_INVOCATION_H_
