// Shared device helpers for the rfkernels CUDA kernels. Torch-free: raw pointers and sizes only.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n, int threads = kThreads) {
    return static_cast<unsigned int>((n + threads - 1) / threads);
}

// Returned to the binding, which turns a non-success code into a Python error.
inline cudaError_t last_launch_error() { return cudaGetLastError(); }

}  // namespace rfk
