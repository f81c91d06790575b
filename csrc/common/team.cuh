// Teams of lanes: one ray per team of W lanes (W = 8, 16 or 32; several teams share a warp when W < 32).
// Lane l of a team handles samples base + l of each chunk of W samples, so consecutive lanes read
// consecutive addresses, and per-ray prefixes (transmittance, CDF) are a shuffle scan per chunk plus a
// carry between chunks.
//
// The same team code runs in two ways:
//  - on the device (__CUDA_ARCH__), each thread is one lane: Lanes<T> is one register, each() calls the
//    body for this lane, and the collectives are warp shuffles over the team's lanes;
//  - in the host emulation (tests/rfkernels/<family>/host.cu), one call runs the whole team: Lanes<T>
//    holds all W values, each() loops over the lanes, and the collectives replay the shuffle networks step
//    by step (same pairs, same order of additions), so the CPU tests see the device's rounding.
// Bodies passed to each() must only touch their own lane's entries (lanes run in any order).
#pragma once
#include <type_traits>

#include "common/common.cuh"

namespace rfk {

constexpr int kWarp = 32;

// Team width for rays of about `mean_items` items: the smallest of 8/16/32 lanes that covers a ray in one
// chunk (short rays: several rays per warp, no idle lanes), a full warp for longer rays.
inline int team_width(int64_t n_items, int64_t n_rays) {
    const int64_t mean = n_rays > 0 ? (n_items + n_rays - 1) / n_rays : 0;
    return mean <= 8 ? 8 : (mean <= 16 ? 16 : kWarp);
}

template <int W>
struct Team {
    static_assert(W == 8 || W == 16 || W == 32, "team width must be 8, 16 or 32");
    static constexpr int kWidth = W;

    // One value per lane.
    template <class T>
    struct Lanes {
#ifdef __CUDA_ARCH__
        T v;
        __device__ T& operator[](int) { return v; }
        __device__ const T& operator[](int) const { return v; }
#else
        T v[W];
        T& operator[](int l) { return v[l]; }
        const T& operator[](int l) const { return v[l]; }
#endif
    };

    int lane = 0;       // this thread's lane in its team (device); unused by the host emulation
    unsigned mask = 0;  // the team's lanes in the warp: the participants of every shuffle (device)

    // Thread t of a block is lane t % W of team blockIdx.x * (blockDim.x / W) + t / W (written to *team).
    __device__ static Team of_thread(int64_t* team) {
        Team t;
        t.lane = threadIdx.x % W;
        const unsigned first = (threadIdx.x % kWarp) / W * W;
        t.mask = W == kWarp ? 0xffffffffu : ((1u << W) - 1u) << first;
        *team = blockIdx.x * static_cast<int64_t>(blockDim.x / W) + threadIdx.x / W;
        return t;
    }

    // Runs body(lane) for every lane of the team (on the device: for this thread's lane).
    template <class F>
    RFK_HD void each(F body) const {
#ifdef __CUDA_ARCH__
        body(lane);
#else
        for (int l = 0; l < W; ++l) body(l);
#endif
    }

    // Runs body() once for the team (lane 0): per-ray outputs.
    template <class F>
    RFK_HD void once(F body) const {
#ifdef __CUDA_ARCH__
        if (lane == 0) body();
#else
        body();
#endif
    }

    // Lanes filled with `value`.
    template <class T>
    RFK_HD static Lanes<T> fill(T value) {
        Lanes<T> x;
#ifdef __CUDA_ARCH__
        x.v = value;
#else
        for (int l = 0; l < W; ++l) x.v[l] = value;
#endif
        return x;
    }

    // Inclusive prefix sum over the lanes (Hillis-Steele: log2(W) shuffle-up steps).
    template <class T>
    RFK_HD Lanes<T> inclusive_scan(Lanes<T> x) const {
#ifdef __CUDA_ARCH__
#pragma unroll
        for (int d = 1; d < W; d *= 2) {
            const T y = __shfl_up_sync(mask, x.v, d, W);
            if (lane >= d) x.v += y;
        }
#else
        for (int d = 1; d < W; d *= 2) {
            Lanes<T> y = x;
            for (int l = d; l < W; ++l) x.v[l] = y.v[l] + y.v[l - d];
        }
#endif
        return x;
    }

    // Value of lane l - 1 at lane l; `first` at lane 0 (inclusive -> exclusive scan, previous item).
    template <class T>
    RFK_HD Lanes<T> shift_up(const Lanes<T>& x, T first) const {
        Lanes<T> y;
#ifdef __CUDA_ARCH__
        const T prev = __shfl_up_sync(mask, x.v, 1, W);
        y.v = lane == 0 ? first : prev;
#else
        y.v[0] = first;
        for (int l = 1; l < W; ++l) y.v[l] = x.v[l - 1];
#endif
        return y;
    }

    // The last lane's value, in every lane (the carry of an inclusive scan into the next chunk).
    template <class T>
    RFK_HD T last(const Lanes<T>& x) const {
#ifdef __CUDA_ARCH__
        return __shfl_sync(mask, x.v, W - 1, W);
#else
        return x.v[W - 1];
#endif
    }

    // Sum over the lanes, in every lane (butterfly: lane l adds lane l ^ d for d = W/2 .. 1).
    template <class T>
    RFK_HD T sum(Lanes<T> x) const {
#ifdef __CUDA_ARCH__
#pragma unroll
        for (int d = W / 2; d > 0; d /= 2) x.v += __shfl_xor_sync(mask, x.v, d, W);
        return x.v;
#else
        for (int d = W / 2; d > 0; d /= 2) {
            Lanes<T> y = x;
            for (int l = 0; l < W; ++l) x.v[l] = y.v[l] + y.v[l ^ d];
        }
        return x.v[0];
#endif
    }
};

// Calls launch(std::integral_constant<int, W>{}) with W = width (8, 16, else 32): the launchers' switch
// from a width chosen at run time (team_width) to the kernel template compiled for it.
template <class F>
void with_team_width(int width, F launch) {
    switch (width) {
        case 8: launch(std::integral_constant<int, 8>{}); break;
        case 16: launch(std::integral_constant<int, 16>{}); break;
        default: launch(std::integral_constant<int, 32>{}); break;
    }
}

// Blocks of kThreads threads for n_teams teams of W lanes.
template <int W>
unsigned int team_blocks(int64_t n_teams) {
    return num_blocks(n_teams * W);
}

}  // namespace rfk
