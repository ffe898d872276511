// File: malloc_tuning.h
//
// glibc malloc settings for a process that streams large gRPC messages (modeldist-server).
//
// A WriteArtifact stream of 1 MiB messages allocates and frees about a megabyte of gRPC receive
// slices (64 KiB each) per message. By default glibc gives the top of a heap back to the kernel
// as soon as 128 KiB of it is free (M_TRIM_THRESHOLD), so the next message faults every one of
// those pages in again, and it gives each of up to 8 threads per CPU an arena of its own, so the
// slices land in whichever arena the receiving gRPC thread has and every arena grows its own
// pages. During a 1 GiB publish that was ~200k page faults and over half the server's CPU on the
// 2-vCPU CI VM, where page faults are expensive (docs/benchmarks.md, "Publish").
#ifndef MODELDIST_COMMON_MALLOC_TUNING_H_
#define MODELDIST_COMMON_MALLOC_TUNING_H_

namespace modeldist {

// Keeps up to kRetainedHeapBytes of freed heap per malloc arena for reuse instead of returning
// it to the kernel; serves allocations up to kHeapAllocationMax bytes from the heap rather than
// from a mapping of their own (fixing the threshold glibc would otherwise move up by itself,
// which setting the first disables); and uses at most two arenas per CPU. Call once at the
// start of main, before any thread starts. A no-op on other C libraries.
void KeepFreedHeapForReuse();

inline constexpr int kRetainedHeapBytes = 64 << 20;
inline constexpr int kHeapAllocationMax = 32 << 20;
inline constexpr int kArenasPerCpu = 2;

}  // namespace modeldist

#endif  // MODELDIST_COMMON_MALLOC_TUNING_H_
