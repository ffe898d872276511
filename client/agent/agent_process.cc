// Process-wide settings of the modeldist-agent executable. Linked into the executable only:
// the library (agent.h, the C ABI of include/modeldist/agent.h) runs inside an app, whose
// process settings are the app's to choose.
#if defined(__linux__)
#include <malloc.h>  // defines __GLIBC__ with glibc
#endif

namespace modeldist::agent {
namespace {

// glibc gives the free top of a heap back to the kernel once it passes 128 KiB, with
// madvise(MADV_DONTNEED) in a thread's arena. A download frees gRPC's receive buffers at the
// rate it receives them, on another thread than the one that allocated them, so the same
// memory was handed back and faulted in again all the time: 21k page faults and ~0.2 CPU-s per
// GiB synced on the 2-vCPU VM (docs/benchmarks.md, agent). 32 MiB of free top stays mapped
// instead; the agent's peak RSS did not change (39 MiB at 1 GiB).
[[maybe_unused]] const bool kMallocTuned = [] {
#if defined(__GLIBC__)
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
  return true;
}();

}  // namespace
}  // namespace modeldist::agent
