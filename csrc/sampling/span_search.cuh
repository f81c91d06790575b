// Helpers shared by the proposal-sampling kernels (sampling/kernels.cu) and the interlevel-loss
// kernels (sampling/interlevel.cu): the packed-ray span and a binary search over a sorted row.
// Host+device (tests/rfkernels/sampling/host.cu runs them on the CPU).
// Layout (rfkernels/_packing.py): ray r owns weights [off[r], off[r+1]) and edges [off[r] + r, off[r+1] + r].
#pragma once
#include "common/common.cuh"

namespace rfk {
namespace sampling_detail {

struct RaySpan {
    int64_t start;  // first weight
    int n;          // number of bins S_r
    int64_t edge;   // first edge (start + ray)
};

RFK_HD RaySpan ray_span(const int64_t* off, int64_t ray) {
    RaySpan s;
    s.start = off[ray];
    s.n = static_cast<int>(off[ray + 1] - s.start);
    s.edge = s.start + ray;
    return s;
}

// #{j in [0, n): a[j] + shift <= v} (or < v when strict); a sorted. T is the comparison precision.
template <typename T>
RFK_HD int count_le(const float* __restrict__ a, int n, T v, T shift = T(0), bool strict = false) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        const T x = static_cast<T>(a[mid]) + shift;
        if (strict ? x < v : x <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

}  // namespace sampling_detail

// The global index of a one-thread-per-item kernel (the outer loss's adjoint scatter: one thread per ray).
__device__ inline int64_t thread_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }

}  // namespace rfk
