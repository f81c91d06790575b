// Feature gather kernels: a team of T threads (T = min(32, next_pow2(C)), aligned within a warp)
// per point; lane l handles channels l, l + T, ... and loops over the views, recomputing the
// projection (about 30 flops, camera floats are warp-broadcast loads) so that only the per-view
// (none) or reduced outputs are written. Corner loads of a team are contiguous in C (coalesced).
// Backward: atomics into the channels-last feature gradient; the point gradient is reduced over
// the team with shuffles and written once. Per-lane bodies are RFK_HD (host+device) so that
// tests/rfkernels/gather/host.cu runs the same arithmetic on the CPU. Torch-free; launched from gather/bind.cpp.
#include "common/common.cuh"
#include "gather/kernels.h"

namespace rfk {
namespace {

struct Projection {
    float xc, yc, zc;  // camera coords (opencv)
    float zs;          // depth, or 1 when behind the near plane (safe divisor)
    float xf, yf;      // feature-map pixel coords, centres at integers
    bool valid;
};

RFK_HD Projection project(const float* __restrict__ cam, float px, float py, float pz, float near_eps, int H, int W) {
    Projection p;
    p.xc = cam[0] * px + cam[1] * py + cam[2] * pz + cam[3];
    p.yc = cam[4] * px + cam[5] * py + cam[6] * pz + cam[7];
    p.zc = cam[8] * px + cam[9] * py + cam[10] * pz + cam[11];
    const bool front = p.zc > near_eps;
    p.zs = front ? p.zc : 1.f;
    const float* k = cam + kGatherCamK;  // first two rows of K_feat
    p.xf = (k[0] * p.xc + k[1] * p.yc + k[2] * p.zc) / p.zs;
    p.yf = (k[3] * p.xc + k[4] * p.yc + k[5] * p.zc) / p.zs;
    p.valid = front && p.xf >= -0.5f && p.xf <= W - 0.5f && p.yf >= -0.5f && p.yf <= H - 0.5f;
    return p;
}

// Bilinear footprint with zeros padding: corners 00, 01, 10, 11 as (y, x) offsets. Only the first
// corner's offset is kept (the others are one pixel right / one row down): four 64-bit offsets alive
// across the scatter would cost the backward 8 registers.
struct Footprint {
    int64_t off00;  // (y0 * W + x0) * C
    int64_t row;    // W * C
    int pixel;      // C
    bool in[4];
    float wx1, wy1;
    RFK_HD int64_t off(int k) const { return off00 + ((k & 2) ? row : 0) + ((k & 1) ? pixel : 0); }
    RFK_HD float weight(int k) const { return ((k & 2) ? wy1 : 1.f - wy1) * ((k & 1) ? wx1 : 1.f - wx1); }
};

RFK_HD Footprint footprint(float xf, float yf, int H, int W, int C) {
    Footprint fp;
    const float x0f = floorf(xf), y0f = floorf(yf);
    fp.wx1 = xf - x0f;
    fp.wy1 = yf - y0f;
    const int x0 = static_cast<int>(x0f), y0 = static_cast<int>(y0f);
    for (int k = 0; k < 4; ++k) {
        const int x = x0 + (k & 1), y = y0 + (k >> 1);
        fp.in[k] = x >= 0 && x < W && y >= 0 && y < H;
    }
    fp.row = static_cast<int64_t>(W) * C;
    fp.pixel = C;
    fp.off00 = static_cast<int64_t>(y0) * fp.row + static_cast<int64_t>(x0) * C;
    return fp;
}

RFK_HD void load_corners(const float* __restrict__ f, const Footprint& fp, float v[4]) {
    for (int k = 0; k < 4; ++k) v[k] = fp.in[k] ? f[fp.off(k)] : 0.f;
}

// One lane of a point's team: channels lane, lane + team, ...; lane 0 also writes mask / cam_out.
template <int REDUCE>
RFK_HD void gather_forward_lane(const GatherArgs& a, int64_t point, int lane, int team, float* __restrict__ out,
                                uint8_t* __restrict__ mask, float* __restrict__ cam_out, int32_t* __restrict__ argmax) {
    const int64_t b = point / a.n_points;
    const int V = a.views, C = a.channels, H = a.height, W = a.width;
    const int64_t plane = static_cast<int64_t>(H) * W * C;
    const float px = a.points[point * 3], py = a.points[point * 3 + 1], pz = a.points[point * 3 + 2];
    if (lane == 0) {
        for (int v = 0; v < V; ++v) {
            const Projection p = project(a.cams + (b * V + v) * kGatherCamStride, px, py, pz, a.near_eps, H, W);
            mask[point * V + v] = p.valid;
            if (cam_out) {
                float* o = cam_out + (point * V + v) * 3;
                o[0] = p.xc;
                o[1] = p.yc;
                o[2] = p.zc;
            }
        }
    }
    for (int c = lane; c < C; c += team) {
        float acc = 0.f, m2 = 0.f, count = 0.f;
        int arg = -1;
        for (int v = 0; v < V; ++v) {
            const Projection p = project(a.cams + (b * V + v) * kGatherCamStride, px, py, pz, a.near_eps, H, W);
            float s = 0.f;
            if (p.valid) {
                const Footprint fp = footprint(p.xf, p.yf, H, W, C);
                float f[4];
                load_corners(a.feat + (b * V + v) * plane + c, fp, f);
                for (int k = 0; k < 4; ++k) s += fp.weight(k) * f[k];
            }
            if (REDUCE == kGatherNone) {
                out[(point * V + v) * C + c] = s;
            } else if (!p.valid) {
                continue;
            } else if (REDUCE == kGatherMean) {
                acc += s;
                count += 1.f;
            } else if (REDUCE == kGatherMeanVar) {  // Welford
                count += 1.f;
                const float d = s - acc;
                acc += d / count;
                m2 += d * (s - acc);
            } else if (arg < 0 || s > acc) {  // max: first strict maximum over valid views
                acc = s;
                arg = v;
            }
        }
        const float inv = 1.f / fmaxf(count, 1.f);
        if (REDUCE == kGatherMean) out[point * C + c] = acc * inv;
        if (REDUCE == kGatherMeanVar) {
            out[point * 2 * C + c] = acc;
            out[point * 2 * C + C + c] = m2 * inv;
        }
        if (REDUCE == kGatherMax) {
            out[point * C + c] = acc;
            argmax[point * C + c] = arg;
        }
    }
}

// gp += R^T g: a camera-space gradient back to the world point (x_cam = R p + t).
RFK_HD void add_rotated_back(const float* __restrict__ cam, const float g[3], float gp[3]) {
    for (int j = 0; j < 3; ++j) gp[j] += cam[j] * g[0] + cam[4 + j] * g[1] + cam[8 + j] * g[2];
}

// d/dp of a sample with gradient (gxf, gyf) w.r.t. its feature-pixel coords: xf = (k0 . x_cam) / z
// gives d xf / d x_cam = (k00, k01, k02 - xf) / z (and the same for yf with k1).
RFK_HD void chain_to_point(const float* __restrict__ cam, const Projection& p, float gxf, float gyf, float gp[3]) {
    const float* k = cam + kGatherCamK;
    const float g[3] = {(gxf * k[0] + gyf * k[3]) / p.zs, (gxf * k[1] + gyf * k[4]) / p.zs,
                        (gxf * (k[2] - p.xf) + gyf * (k[5] - p.yf)) / p.zs};
    add_rotated_back(cam, g, gp);
}

// Deterministic accumulation: integer adds commute, so the sum does not depend on their order.
RFK_HD void atomic_add_fixed(int64_t* address, float value, float scale) {
    const long long q = static_cast<long long>(value * scale);  // exact product: scale is 2^k
#ifdef __CUDA_ARCH__
    atomicAdd(reinterpret_cast<unsigned long long*>(address), static_cast<unsigned long long>(q));
#else
    *address += q;
#endif
}

// Where the feature-map gradient goes: float atomics (g_feat) or, FIXED, int64 fixed point (g_fixed).
template <bool FIXED>
struct FeatGrad {
    float* g_feat;
    int64_t* g_fixed;
    float scale;
    RFK_HD void add(int64_t i, float value) const {
        if (FIXED)
            atomic_add_fixed(g_fixed + i, value, scale);
        else
            atomic_add(g_feat + i, value);
    }
};

// One lane's share of the backward: scatters into the feature gradient (atomics) and, if
// need_points, adds its share of d loss / d point into gp (the team's shares are summed by the caller).
template <int REDUCE, bool FIXED>
RFK_HD void gather_backward_lane(const GatherArgs& a, int64_t point, int lane, int team,
                                 const float* __restrict__ g_out, const float* __restrict__ g_cam,
                                 const float* __restrict__ out, const uint8_t* __restrict__ mask,
                                 const int32_t* __restrict__ argmax, const FeatGrad<FIXED>& gf, bool need_points,
                                 float gp[3]) {
    const int64_t b = point / a.n_points;
    const int V = a.views, C = a.channels, H = a.height, W = a.width;
    const int64_t plane = static_cast<int64_t>(H) * W * C;
    const float px = a.points[point * 3], py = a.points[point * 3 + 1], pz = a.points[point * 3 + 2];
    float inv = 1.f;
    if (REDUCE == kGatherMean || REDUCE == kGatherMeanVar) {
        int count = 0;
        for (int v = 0; v < V; ++v) count += mask[point * V + v];
        inv = 1.f / fmaxf(static_cast<float>(count), 1.f);
    }
    const int width = REDUCE == kGatherMeanVar ? 2 * C : C;
    for (int c = lane; c < C; c += team) {
        const float g_red = REDUCE == kGatherNone ? 0.f : g_out[point * width + c];
        const float g_var = REDUCE == kGatherMeanVar ? g_out[point * width + C + c] : 0.f;
        const float mean = REDUCE == kGatherMeanVar ? out[point * width + c] : 0.f;
        const int arg = REDUCE == kGatherMax ? argmax[point * C + c] : -1;
        for (int v = 0; v < V; ++v) {
            if (!mask[point * V + v]) continue;  // invalid views sampled exactly 0
            if (REDUCE == kGatherMax && arg != v) continue;
            const float* cam = a.cams + (b * V + v) * kGatherCamStride;
            const Projection p = project(cam, px, py, pz, a.near_eps, H, W);
            const Footprint fp = footprint(p.xf, p.yf, H, W, C);
            float f[4] = {0.f, 0.f, 0.f, 0.f};
            if (need_points || REDUCE == kGatherMeanVar) load_corners(a.feat + (b * V + v) * plane + c, fp, f);
            float g_s;
            if (REDUCE == kGatherNone) {
                g_s = g_out[(point * V + v) * C + c];
            } else if (REDUCE == kGatherMeanVar) {
                float s = 0.f;
                for (int k = 0; k < 4; ++k) s += fp.weight(k) * f[k];
                g_s = (g_red + 2.f * g_var * (s - mean)) * inv;
            } else {
                g_s = REDUCE == kGatherMean ? g_red * inv : g_red;
            }
            // the point gradient first: the corners and the projection are dead before the scatter
            if (need_points) {
                const float gxf = g_s * ((1.f - fp.wy1) * (f[1] - f[0]) + fp.wy1 * (f[3] - f[2]));
                const float gyf = g_s * ((1.f - fp.wx1) * (f[2] - f[0]) + fp.wx1 * (f[3] - f[1]));
                chain_to_point(cam, p, gxf, gyf, gp);
            }
            const int64_t base = (b * V + v) * plane + c;
            for (int k = 0; k < 4; ++k)
                if (fp.in[k]) gf.add(base + fp.off(k), fp.weight(k) * g_s);
        }
    }
    if (need_points && g_cam && lane == 0)  // camera coords are an output for every view
        for (int v = 0; v < V; ++v)
            add_rotated_back(a.cams + (b * V + v) * kGatherCamStride, g_cam + (point * V + v) * 3, gp);
}

template <int REDUCE>
__global__ void gather_fwd_kernel(GatherArgs a, int team, float* __restrict__ out, uint8_t* __restrict__ mask,
                                  float* __restrict__ cam_out, int32_t* __restrict__ argmax) {
    const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t point = tid / team;  // b * N + n
    if (point >= a.batch * a.n_points) return;
    gather_forward_lane<REDUCE>(a, point, static_cast<int>(tid % team), team, out, mask, cam_out, argmax);
}

template <int REDUCE, bool FIXED>
__global__ void __launch_bounds__(kThreads, 4)
    gather_bwd_kernel(GatherArgs a, int team, const float* __restrict__ g_out, const float* __restrict__ g_cam,
                      const float* __restrict__ out, const uint8_t* __restrict__ mask,
                      const int32_t* __restrict__ argmax, float* __restrict__ g_feat, int64_t* __restrict__ g_fixed,
                      const float* __restrict__ fixed_scale, float* __restrict__ g_points) {
    const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t point = tid / team;
    const int lane = static_cast<int>(tid % team);
    const bool active = point < a.batch * a.n_points;  // no early return: the team shuffles below
    const FeatGrad<FIXED> gf{g_feat, g_fixed, FIXED ? *fixed_scale : 0.f};
    float gp[3] = {0.f, 0.f, 0.f};
    if (active)
        gather_backward_lane<REDUCE, FIXED>(a, point, lane, team, g_out, g_cam, out, mask, argmax, gf,
                                            g_points != nullptr, gp);
    if (g_points) {  // uniform branch: the whole warp shuffles (teams are aligned within a warp)
        for (int offset = team / 2; offset > 0; offset >>= 1)
            for (int j = 0; j < 3; ++j) gp[j] += __shfl_xor_sync(0xffffffffu, gp[j], offset);
        if (active && lane == 0)
            for (int j = 0; j < 3; ++j) g_points[point * 3 + j] = gp[j];
    }
}

RFK_HD int team_size(int channels) {
    int t = 1;
    while (t < channels && t < 32) t *= 2;
    return t;
}

}  // namespace

cudaError_t gather_forward(const GatherArgs& a, float* out, uint8_t* mask, float* cam_out, int32_t* argmax,
                           cudaStream_t stream) {
    const int team = team_size(a.channels);
    const int64_t threads = a.batch * a.n_points * team;
    if (threads == 0) return cudaSuccess;
    const dim3 grid(num_blocks(threads)), block(kThreads);
    switch (a.reduce) {
        case kGatherNone:
            gather_fwd_kernel<kGatherNone><<<grid, block, 0, stream>>>(a, team, out, mask, cam_out, argmax);
            break;
        case kGatherMean:
            gather_fwd_kernel<kGatherMean><<<grid, block, 0, stream>>>(a, team, out, mask, cam_out, argmax);
            break;
        case kGatherMeanVar:
            gather_fwd_kernel<kGatherMeanVar><<<grid, block, 0, stream>>>(a, team, out, mask, cam_out, argmax);
            break;
        case kGatherMax:
            gather_fwd_kernel<kGatherMax><<<grid, block, 0, stream>>>(a, team, out, mask, cam_out, argmax);
            break;
        default: return cudaErrorInvalidValue;
    }
    return last_launch_error();
}

cudaError_t gather_backward(const GatherArgs& a, const float* g_out, const float* g_cam, const float* out,
                            const uint8_t* mask, const int32_t* argmax, float* g_feat, int64_t* g_fixed,
                            const float* fixed_scale, float* g_points, cudaStream_t stream) {
    const int team = team_size(a.channels);
    const int64_t threads = a.batch * a.n_points * team;
    if (threads == 0) return cudaSuccess;
    const dim3 grid(num_blocks(threads)), block(kThreads);
#define RFK_GATHER_BWD(R)                                                                                         \
    if (g_fixed)                                                                                                  \
        gather_bwd_kernel<R, true><<<grid, block, 0, stream>>>(a, team, g_out, g_cam, out, mask, argmax, g_feat,  \
                                                               g_fixed, fixed_scale, g_points);                   \
    else                                                                                                          \
        gather_bwd_kernel<R, false><<<grid, block, 0, stream>>>(a, team, g_out, g_cam, out, mask, argmax, g_feat, \
                                                                g_fixed, fixed_scale, g_points)
    switch (a.reduce) {
        case kGatherNone: RFK_GATHER_BWD(kGatherNone); break;
        case kGatherMean: RFK_GATHER_BWD(kGatherMean); break;
        case kGatherMeanVar: RFK_GATHER_BWD(kGatherMeanVar); break;
        case kGatherMax: RFK_GATHER_BWD(kGatherMax); break;
        default: return cudaErrorInvalidValue;
    }
#undef RFK_GATHER_BWD
    return last_launch_error();
}

}  // namespace rfk
