// File: agent_fixture.h
//
// What the agent's Sync tests share: a real server on loopback with tier `llama8b`, the trust
// root the app ships (root 1, fetched once out of band) in a file, and the SyncOptions of a
// linux/x86_64 device that keeps its models under the test's scratch directory (and its
// md_agent_config for the C ABI).
#ifndef MODELDIST_TESTS_CLIENT_AGENT_AGENT_FIXTURE_H_
#define MODELDIST_TESTS_CLIENT_AGENT_AGENT_FIXTURE_H_

#include <string>
#include <utility>

#include "client/agent/agent.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {

class AgentFixture : public ::testing::Test {
 protected:
  explicit AgentFixture(services::ServerConfig config = {}) : server_(std::move(config)) {}

  // Writes root 1 to root_file_ (fatal failure if it cannot). Call from SetUp with
  // ASSERT_NO_FATAL_FAILURE.
  void WriteShippedTrustRoot() {
    v1::GetTrustRootRequest request;
    request.set_version(1);
    v1::SignedTrustRoot root;
    grpc::ClientContext context;
    ASSERT_TRUE(server_.manifests().GetTrustRoot(&context, request, &root).ok());
    ASSERT_TRUE(WriteFileAtomically(root_file_, root.SerializeAsString(), 0644).ok());
  }

  // Publishes `bytes` as GGUF version `version` of model `llama`; returns its name.
  std::string Publish(const std::string& version, const std::string& bytes,
                      v1::Arch arch = v1::ARCH_X86_64, v1::Platform platform = v1::PLATFORM_LINUX) {
    server_.PublishBlob("llama", version, platform, arch, v1::FORMAT_GGUF, bytes);
    return "models/llama/versions/" + version;
  }

  std::string ServerAddress() { return "127.0.0.1:" + std::to_string(server_.server().port()); }

  // A linux/x86_64 device on tier `llama8b` that asks `address` (default: the server).
  agent::SyncOptions Options(const std::string& address = "") {
    agent::SyncOptions o;
    o.server = address.empty() ? ServerAddress() : address;
    o.tier = "llama8b";
    o.dir = dir_.Join("models");
    o.trust_root_file = root_file_;
    o.platform = v1::PLATFORM_LINUX;
    o.arch = v1::ARCH_X86_64;
    o.download.retry.initial_backoff = absl::Milliseconds(1);
    return o;
  }

  // The same device as Options() for the C ABI (modeldist/agent.h). Its strings point into
  // this fixture, so it stays valid while the test runs; md_agent_new copies them.
  md_agent_config CApiConfig() {
    c_server_ = ServerAddress();
    c_dir_ = Options().dir;
    md_agent_config config = {};
    config.server = c_server_.c_str();
    config.tier = "llama8b";
    config.dir = c_dir_.c_str();
    config.trust_root_file = root_file_.c_str();
    config.platform = "linux";
    config.arch = "x86_64";
    return config;
  }

  TestServer server_;
  ScratchDir dir_;
  const std::string root_file_ = dir_.Join("root.bin");

 private:
  std::string c_server_;  // what CApiConfig() points at
  std::string c_dir_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_CLIENT_AGENT_AGENT_FIXTURE_H_
