#include "common/malloc_tuning.h"

#include <algorithm>
#include <cstdlib>  // Defines __GLIBC__ on glibc.
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace modeldist {

void KeepFreedHeapForReuse() {
#if defined(__GLIBC__)
  // Best effort: mallopt returns 0 for a value it refuses, and the defaults still work.
  mallopt(M_TRIM_THRESHOLD, kRetainedHeapBytes);
  mallopt(M_MMAP_THRESHOLD, kHeapAllocationMax);
  const int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  mallopt(M_ARENA_MAX, kArenasPerCpu * cpus);
#endif
}

}  // namespace modeldist
