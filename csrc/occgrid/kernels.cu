// Occupancy-grid marching: one thread per ray, two passes over the same march (count, then fill at
// the packed offsets the counts give). A ray sorts its 2L box intersections, walks each segment
// cell by cell (DDA) and steps t through every cell it visits: a step belongs to the first visited
// cell whose exit (running maximum) exceeds its midpoint, and becomes an interval when that cell is
// occupied; steps before a segment's start are skipped. Streaming: no per-cell storage, so this is
// an independent formulation of the table lookup in rfkernels/occgrid/reference.py.
// Every float op is the reference's, in the same order: divisions exactly rounded and the products
// that precede an addition kept unfused (the build uses --use_fast_math and contracts a*b+c).
// Per-ray bodies are RFK_HD so tests/rfkernels/occgrid/host.cu runs them on the CPU. Torch-free.
#include <cmath>

#include "common/common.cuh"
#include "occgrid/kernels.h"

namespace rfk {
namespace {

RFK_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

RFK_HD float mul_rn(float a, float b) {  // a product that must not be fused into the next addition
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

// nerfacc's slab test: per-axis entry/exit ordered by the sign of 1/d; a hit needs t_max > 0.
RFK_HD bool slab_intersect(const float* o, const float* d, const float* box, float near, float far, float& tmin,
                           float& tmax) {
    for (int ax = 0; ax < 3; ++ax) {
        const float inv = div_rn(1.f, d[ax]);
        const float a = (box[ax] - o[ax]) * inv, b = (box[3 + ax] - o[ax]) * inv;
        const float lo = inv >= 0 ? a : b, hi = inv >= 0 ? b : a;
        if (ax == 0) {
            tmin = lo;
            tmax = hi;
            continue;
        }
        if (tmin > hi || lo > tmax) return false;
        if (lo > tmin) tmin = lo;
        if (hi < tmax) tmax = hi;
    }
    if (tmax <= 0) return false;
    tmin = fmaxf(tmin, near);
    tmax = fminf(tmax, far);
    return true;
}

RFK_HD int cell_index(float x, int res) {  // truncation, clamped into the grid (NaN -> 0)
    x = fminf(fmaxf(x, -1.f), static_cast<float>(res));
    const int i = static_cast<int>(x);
    return i < 0 ? 0 : (i > res - 1 ? res - 1 : i);
}

struct Dda {
    int cur[3], step[3], overflow[3];
    float tdist[3], delta[3];
};

RFK_HD Dda dda_setup(const float* o, const float* d, const float* box, const int* res, float lo, float hi) {
    Dda w;
    const float t_in = lo + kOccgridDdaEps, t_out = hi - kOccgridDdaEps;
    for (int ax = 0; ax < 3; ++ax) {
        const float bmin = box[ax], bmax = box[3 + ax], resf = static_cast<float>(res[ax]);
        const float voxel = div_rn(bmax - bmin, resf), inv = div_rn(1.f, d[ax]);
        const float start = o[ax] + mul_rn(d[ax], t_in), end = o[ax] + mul_rn(d[ax], t_out);
        w.cur[ax] = cell_index(div_rn(start - bmin, bmax - bmin) * resf, res[ax]);
        const int final_ = cell_index(div_rn(end - bmin, bmax - bmin) * resf, res[ax]);
        w.step[ax] = d[ax] > 0 ? 1 : (d[ax] < 0 ? -1 : 0);
        const float plane = static_cast<float>(w.cur[ax] + (d[ax] > 0 ? 1 : 0));
        w.tdist[ax] = d[ax] == 0 ? hi : mul_rn(bmin + (mul_rn(plane, voxel) - start), inv) + lo;
        w.delta[ax] = d[ax] == 0 ? hi : (voxel * inv) * static_cast<float>(w.step[ax]);
        w.overflow[ax] = final_ + w.step[ax];
    }
    return w;
}

// Moves to the next cell; false once the walk leaves the segment (or the grid).
RFK_HD bool dda_next(Dda& w, const int* res) {
    const int ax = (w.tdist[0] < w.tdist[1] && w.tdist[0] < w.tdist[2]) ? 0 : (w.tdist[1] < w.tdist[2] ? 1 : 2);
    w.cur[ax] += w.step[ax];
    w.tdist[ax] += w.delta[ax];
    return w.cur[ax] != w.overflow[ax] && w.cur[ax] >= 0 && w.cur[ax] < res[ax];
}

// The march state of one ray and the step rule dt(t) = clamp(t * cone, step, DT_MAX).
struct March {
    float t, terminate;
    int64_t count;
    bool done;
};

RFK_HD float step_length(const OccgridArgs& a, float t) {
    return fminf(fmaxf(t * a.cone_angle, a.step_size), kOccgridDtMax);
}

// Takes steps while their midpoint is below `until`; emits them when `occupied`. Stops the ray on a
// stall (t no longer increases) or at the step limit.
template <bool FILL>
RFK_HD void advance(const OccgridArgs& a, March& s, float until, bool occupied, float* t_starts, float* t_ends) {
    while (!s.done) {
        const float dt = step_length(a, s.t);
        const float mid = s.t + dt * 0.5f, t_next = s.t + dt;
        if (!(mid < until)) return;
        if (!(t_next > s.t)) {
            s.done = true;
            break;
        }
        if (occupied) {
            if (FILL) {
                t_starts[s.count] = s.t;
                t_ends[s.count] = t_next;
            }
            ++s.count;
            if (a.max_steps > 0 && s.count >= a.max_steps) {
                s.t = t_next;
                s.done = true;
                break;
            }
        }
        s.t = t_next;
    }
}

template <bool FILL>
RFK_HD March march_ray(const OccgridArgs& a, int64_t r, float* t_starts, float* t_ends) {
    const float near = a.near[r], far = a.far[r];
    March s{near, near, 0, false};
    if (a.rays_mask && !a.rays_mask[r]) return s;
    const float* o = a.rays_o + r * 3;
    const float* d = a.rays_d + r * 3;
    const int L = a.levels;
    // sorted intersections (stable: ties keep entries before exits, lower levels first)
    float vals[2 * kOccgridMaxLevels];
    int idx[2 * kOccgridMaxLevels];
    bool hits[kOccgridMaxLevels];
    for (int l = 0; l < L; ++l) {
        float tmin, tmax;
        hits[l] = slab_intersect(o, d, a.aabbs + l * 6, -INFINITY, INFINITY, tmin, tmax);
        vals[l] = hits[l] ? tmin : INFINITY;
        vals[L + l] = hits[l] ? tmax : INFINITY;
        idx[l] = l;
        idx[L + l] = L + l;
    }
    for (int i = 1; i < 2 * L; ++i) {
        const float v = vals[i];
        const int k = idx[i];
        int j = i - 1;
        for (; j >= 0 && vals[j] > v; --j) {
            vals[j + 1] = vals[j];
            idx[j + 1] = idx[j];
        }
        vals[j + 1] = v;
        idx[j + 1] = k;
    }
    const int64_t cells_per_level = static_cast<int64_t>(a.res[0]) * a.res[1] * a.res[2];
    float exit_max = -INFINITY;
    for (int i = 0; i + 1 < 2 * L && !s.done; ++i) {
        const bool entering = idx[i] < L, next_entering = idx[i + 1] < L;
        if (!hits[idx[i] % L]) continue;
        if (!entering && (next_entering || !hits[idx[i + 1] % L])) continue;
        const int level = (entering ? idx[i] : idx[i + 1]) % L;
        const float lo = fmaxf(vals[i], near), hi = fminf(vals[i + 1], far);
        if (!(lo < hi)) continue;
        advance<FILL>(a, s, lo, false, t_starts, t_ends);  // skip steps before the segment
        const float* box = a.aabbs + level * 6;
        Dda w = dda_setup(o, d, box, a.res, lo, hi);
        const uint8_t* grid = a.binaries + level * cells_per_level;
        do {
            const float t_exit = fminf(fminf(w.tdist[0], fminf(w.tdist[1], w.tdist[2])), hi);
            exit_max = fmaxf(exit_max, t_exit);
            const bool occupied = grid[(static_cast<int64_t>(w.cur[0]) * a.res[1] + w.cur[1]) * a.res[2] + w.cur[2]];
            advance<FILL>(a, s, exit_max, occupied, t_starts, t_ends);
        } while (!s.done && dda_next(w, a.res));
    }
    s.terminate = s.t;
    return s;
}

__global__ void intersect_kernel(const float* rays_o, const float* rays_d, const float* aabbs, int64_t n_rays,
                                 int n_boxes, float near, float far, float miss, float* t_mins, float* t_maxs,
                                 uint8_t* hits) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n_rays * n_boxes) return;
    const int64_t r = i / n_boxes;
    float tmin, tmax;
    const bool hit = slab_intersect(rays_o + r * 3, rays_d + r * 3, aabbs + (i % n_boxes) * 6, near, far, tmin, tmax);
    t_mins[i] = hit ? tmin : miss;
    t_maxs[i] = hit ? tmax : miss;
    hits[i] = hit;
}

__global__ void count_kernel(const OccgridArgs a, int64_t* counts, float* terminate) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= a.n_rays) return;
    const March s = march_ray<false>(a, r, nullptr, nullptr);
    counts[r] = s.count;
    terminate[r] = s.terminate;
}

__global__ void fill_kernel(const OccgridArgs a, const int64_t* offsets, float* t_starts, float* t_ends) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= a.n_rays || offsets[r + 1] == offsets[r]) return;
    march_ray<true>(a, r, t_starts + offsets[r], t_ends + offsets[r]);
}

}  // namespace

cudaError_t occgrid_intersect(const float* rays_o, const float* rays_d, const float* aabbs, int64_t n_rays, int n_boxes,
                              float near, float far, float miss, float* t_mins, float* t_maxs, uint8_t* hits,
                              cudaStream_t stream) {
    const int64_t n = n_rays * n_boxes;
    if (n == 0) return cudaSuccess;
    intersect_kernel<<<num_blocks(n), kThreads, 0, stream>>>(rays_o, rays_d, aabbs, n_rays, n_boxes, near, far, miss,
                                                             t_mins, t_maxs, hits);
    return last_launch_error();
}

cudaError_t occgrid_count(const OccgridArgs& a, int64_t* counts, float* terminate, cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    count_kernel<<<num_blocks(a.n_rays), kThreads, 0, stream>>>(a, counts, terminate);
    return last_launch_error();
}

cudaError_t occgrid_fill(const OccgridArgs& a, const int64_t* offsets, float* t_starts, float* t_ends,
                         cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    fill_kernel<<<num_blocks(a.n_rays), kThreads, 0, stream>>>(a, offsets, t_starts, t_ends);
    return last_launch_error();
}

}  // namespace rfk
