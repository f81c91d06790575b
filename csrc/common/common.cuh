// Shared device helpers for the rfkernels CUDA kernels. Torch-free: raw pointers and sizes only.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

// Per-element/per-ray bodies are host+device so tests can run them on the CPU
// (tests/rfkernels/<family>/host.cu).
#define RFK_HD __host__ __device__ inline

namespace rfk {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n, int threads = kThreads) {
    return static_cast<unsigned int>((n + threads - 1) / threads);
}

// atomicAdd on the device; a plain add in the host emulation used by tests (single-threaded loop).
RFK_HD void atomic_add(float* address, float value) {
#ifdef __CUDA_ARCH__
    atomicAdd(address, value);
#else
    *address += value;
#endif
}

// Returned to the binding, which turns a non-success code into a Python error.
inline cudaError_t last_launch_error() { return cudaGetLastError(); }

}  // namespace rfk
