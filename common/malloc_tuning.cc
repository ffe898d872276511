#include "common/malloc_tuning.h"

#include <cstdlib>  // Defines __GLIBC__ on glibc.

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace modeldist {

void KeepFreedHeapForReuse() {
#if defined(__GLIBC__)
  // Best effort: mallopt returns 0 for a value it refuses, and the defaults still work.
  mallopt(M_TRIM_THRESHOLD, kRetainedHeapBytes);
  mallopt(M_MMAP_THRESHOLD, kHeapAllocationMax);
#endif
}

}  // namespace modeldist
