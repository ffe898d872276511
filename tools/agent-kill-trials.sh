#!/usr/bin/env bash
# The long run of the agent's kill -9 trials (tests/client/agent/agent_kill_test.cc): 1,000 syncs of
# the real modeldist-agent killed at random moments, each followed by a checked recovery; and
# 1,000 trial transitions (agent_trial_kill_test.cc: confirm, and rollbacks by a reported
# failure or the launch limit) killed the same way.
# CI runs the same test with 100 trials. Takes a few minutes (about 0.2 s per trial).
#
#   tools/agent-kill-trials.sh [BUILD_DIR]        # default: build (an already configured tree)
#   MODELDIST_AGENT_KILL_SEED=123 tools/agent-kill-trials.sh   # replay a printed seed
#   MODELDIST_AGENT_KILL_TRIALS=5000 tools/agent-kill-trials.sh
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
  echo "agent-kill-trials: $build is not a configured build tree (see tools/test.sh)" >&2
  exit 2
fi
cmake --build "$build" -j"$(nproc)" --target agent_kill_test modeldist-agent

MODELDIST_BUILD_DIR=$(cd "$build" && pwd)
export MODELDIST_BUILD_DIR
export MODELDIST_AGENT_KILL_TRIALS=${MODELDIST_AGENT_KILL_TRIALS:-1000}
exec "$MODELDIST_BUILD_DIR/tests/client/agent/agent_kill_test" --gtest_filter='AgentKillTest.*:AgentTrialKillTest.*'
