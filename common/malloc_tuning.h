// File: malloc_tuning.h
//
// glibc malloc settings for a process that streams large gRPC messages (modeldist-server).
//
// A WriteArtifact stream of 1 MiB messages allocates and frees about a megabyte of gRPC receive
// slices (64 KiB each) per message. By default glibc gives the top of a heap back to the kernel
// as soon as 128 KiB of it is free (M_TRIM_THRESHOLD), so the next message faults every one of
// those pages in again: during a 1 GiB publish that was over half of the server's CPU on the
// 2-vCPU CI VM, where page faults are expensive (docs/benchmarks.md, "Publish").
#ifndef MODELDIST_COMMON_MALLOC_TUNING_H_
#define MODELDIST_COMMON_MALLOC_TUNING_H_

namespace modeldist {

// Keeps up to kRetainedHeapBytes of freed heap per malloc arena for reuse instead of returning
// it to the kernel, and serves allocations up to kHeapAllocationMax bytes from the heap rather
// than from a mapping of their own (fixing the threshold glibc would otherwise move up by
// itself, which setting the first disables). Call once at the start of main. A no-op on
// other C libraries.
void KeepFreedHeapForReuse();

inline constexpr int kRetainedHeapBytes = 64 << 20;
inline constexpr int kHeapAllocationMax = 32 << 20;

}  // namespace modeldist

#endif  // MODELDIST_COMMON_MALLOC_TUNING_H_
