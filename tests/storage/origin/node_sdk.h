// File: node_sdk.h
//
// Runs a script of tests/node with node and the official JS SDKs pinned there (installed by
// tools/install-deps.sh), for tests that compare modeldist's signers with them byte for byte.
#ifndef MODELDIST_TESTS_STORAGE_ORIGIN_NODE_SDK_H_
#define MODELDIST_TESTS_STORAGE_ORIGIN_NODE_SDK_H_

#include <string>

namespace modeldist::testing {

// Whether node and tests/node/node_modules/<package> are there (tests skip otherwise).
bool NodeSdkInstalled(const std::string& package);

// Runs `node tests/node/<script> <json_argument>` and returns its stdout without the trailing
// newline; fails the test (and returns "") when it does not exit 0.
std::string RunNodeScript(const std::string& script, const std::string& json_argument);

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_STORAGE_ORIGIN_NODE_SDK_H_
