// Volume rendering kernels: one thread per ray walking its packed samples front to back
// (exact sequential prefix sums in float32). Torch-free; launched from volrend/bind.cpp.
// The per-ray bodies are __host__ __device__ so tests/rfkernels/volrend/host.cu can run them on the CPU.
#include "common/common.cuh"
#include "volrend/kernels.h"

namespace rfk {

constexpr int kChannelChunk = 4;  // colour channels accumulated in registers per sweep

// Optical depth with the numerics policy of rfkernels/volrend/reference.py: 0 when sigma or delta is 0
// (0 * inf = 0), tau_max above it, NaN propagates (no fminf: it drops NaN). `regular`: the plain
// product is finite and <= tau_max (sigma = 0 on a finite interval included), the only case passing
// gradient to sigma/delta.
RFK_HD float optical_depth(float sigma, float delta, float tau_max, bool* regular = nullptr) {
    const float raw = sigma * delta;
    const bool zero = sigma == 0.f || delta == 0.f;
    if (regular) *regular = raw <= tau_max;  // false for NaN (0 * inf) and saturated products
    return zero ? 0.f : (raw > tau_max ? tau_max : raw);
}

// a * b with 0 * inf = 0 (a zero weight times an infinite midpoint).
RFK_HD float mul0(float a, float b) { return (a == 0.f || b == 0.f) ? 0.f : a * b; }

// Sweeps the ray once per chunk of 4 channels (one sweep for C <= 4), keeping the colour sums in
// registers; the per-sample outputs are written during the first sweep.
RFK_HD void composite_forward_ray(const CompositeArgs& a, int64_t ray, float* __restrict__ rgb,
                                  float* __restrict__ depth, float* __restrict__ opacity, float* __restrict__ weight,
                                  float* __restrict__ trans_out) {
    const int64_t start = a.offsets[ray], end = a.offsets[ray + 1];
    // All C columns of rgb are written (zeros for empty rays). color may be null with C > 0 only when
    // there are no samples at all (N = 0: empty colors map to a null pointer), so it is never read then.
    const int C = a.channels;
    for (int c0 = 0; c0 == 0 || c0 < C; c0 += kChannelChunk) {
        const bool first = c0 == 0;
        const int nc = C - c0 < kChannelChunk ? C - c0 : kChannelChunk;
        float acc[kChannelChunk] = {0.f, 0.f, 0.f, 0.f};
        float acc_depth = 0.f, acc_opacity = 0.f, tau_sum = 0.f;
        for (int64_t i = start; i < end; ++i) {
            const float tau = optical_depth(a.sigma[i], a.delta[i], a.tau_max);
            const float T = expf(-tau_sum);  // from the running sum, as the reference does
            const float w = T < a.eps ? 0.f : T * -expm1f(-tau);  // NaN T keeps a NaN weight
            tau_sum += tau;
            if (first) {
                weight[i] = w;
                trans_out[i] = T;
                acc_opacity += w;
                if (a.tmid) acc_depth += mul0(w, a.tmid[i]);
            }
#pragma unroll
            for (int c = 0; c < kChannelChunk; ++c)
                if (c < nc) acc[c] += mul0(w, a.color[i * C + c0 + c]);
        }
        for (int c = 0; c < nc; ++c) rgb[ray * C + c0 + c] = acc[c];
        if (first) {
            depth[ray] = acc_depth;
            opacity[ray] = acc_opacity;
        }
    }
}

// dL/dtau_k = T_{k+1} v_k - sum_{i>k} (w_i v_i + T_i u_i); see rfkernels/volrend/triton.py.
RFK_HD void composite_backward_ray(const CompositeArgs& a, int64_t ray, const float* __restrict__ g_rgb,
                                   const float* __restrict__ g_depth, const float* __restrict__ g_opacity,
                                   const float* __restrict__ g_weight, const float* __restrict__ g_trans,
                                   const float* __restrict__ rgb, const float* __restrict__ depth,
                                   const float* __restrict__ opacity, float* __restrict__ g_sigma,
                                   float* __restrict__ g_delta, float* __restrict__ g_tmid,
                                   float* __restrict__ g_color) {
    const int64_t start = a.offsets[ray], end = a.offsets[ray + 1];
    const int C = a.channels;
    const float gd = g_depth[ray], go = g_opacity[ray];
    const float* gc = a.color ? g_rgb + ray * C : nullptr;
    float total = go * opacity[ray];
    if (a.tmid) total += gd * depth[ray];
    if (a.color)
        for (int c = 0; c < C; ++c) total += gc[c] * rgb[ray * C + c];
    if (g_weight || g_trans) {  // per-sample output grads: one extra pass for their share
        float tau_sum = 0.f;
        for (int64_t i = start; i < end; ++i) {
            const float tau = optical_depth(a.sigma[i], a.delta[i], a.tau_max);
            const float T = expf(-tau_sum);
            if (g_weight && !(T < a.eps)) total += T * -expm1f(-tau) * g_weight[i];
            if (g_trans) total += T * g_trans[i];
            tau_sum += tau;
        }
    }
    float tau_sum = 0.f, prefix = 0.f;
    for (int64_t i = start; i < end; ++i) {
        const float sigma = a.sigma[i], delta = a.delta[i];
        bool regular;
        const float tau = optical_depth(sigma, delta, a.tau_max, &regular);
        const float T = expf(-tau_sum);
        const float T_next = expf(-(tau_sum + tau));
        const bool active = !(T < a.eps);
        const float w = active ? T * -expm1f(-tau) : 0.f;
        float v = go;
        if (a.tmid) {
            v += mul0(gd, a.tmid[i]);
            g_tmid[i] = w * gd;
        }
        if (a.color) {
            for (int c = 0; c < C; ++c) {
                v += gc[c] * a.color[i * C + c];
                g_color[i * C + c] = w * gc[c];
            }
        }
        if (g_weight) v += g_weight[i];
        float contrib = mul0(w, v);
        if (g_trans) contrib += T * g_trans[i];
        prefix += contrib;
        // behind a sample that passes no light the true suffix is exactly 0; total - prefix would leave
        // its rounding error, multiplied by sigma into the gradient (the rule of the Triton backward too)
        const float suffix = T_next == 0.f ? 0.f : total - prefix;
        float g_tau = (active ? T_next * v : 0.f) - suffix;
        g_sigma[i] = regular ? g_tau * delta : 0.f;  // saturated / 0 * inf taus pass no gradient
        g_delta[i] = regular ? g_tau * sigma : 0.f;
        tau_sum += tau;
    }
}

template <bool kBackward>
RFK_HD void distortion_ray(const float* __restrict__ w, const float* __restrict__ m, const float* __restrict__ d,
                           const int64_t* __restrict__ offsets, int64_t ray, float* __restrict__ loss,
                           const float* __restrict__ g_loss, float* __restrict__ g_w, float* __restrict__ g_m,
                           float* __restrict__ g_d) {
    const int64_t start = offsets[ray], end = offsets[ray + 1];
    float w_tot = 0.f, wm_tot = 0.f;
    if (kBackward)
        for (int64_t i = start; i < end; ++i) {
            w_tot += w[i];
            wm_tot += w[i] * m[i];
        }
    const float g = kBackward ? g_loss[ray] : 0.f;
    float w_before = 0.f, wm_before = 0.f, acc = 0.f;
    for (int64_t i = start; i < end; ++i) {
        const float wi = w[i], mi = m[i];
        if (kBackward) {
            const float w_incl = w_before + wi, wm_incl = wm_before + wi * mi;
            g_w[i] = g * (2.f * (mi * w_before - wm_before) + 2.f * ((wm_tot - wm_incl) - mi * (w_tot - w_incl)) +
                          (2.f / 3.f) * wi * d[i]);
            g_m[i] = g * 2.f * wi * (w_before - (w_tot - w_incl));
            g_d[i] = g * wi * wi / 3.f;
        } else {
            acc += 2.f * wi * (mi * w_before - wm_before) + wi * wi * d[i] / 3.f;
        }
        w_before += wi;
        wm_before += wi * mi;
    }
    if (!kBackward) loss[ray] = acc;
}

namespace {  // kernels: one thread per ray

__global__ void composite_fwd_kernel(CompositeArgs a, float* rgb, float* depth, float* opacity, float* weight,
                                     float* trans) {
    const int64_t ray = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (ray < a.n_rays) composite_forward_ray(a, ray, rgb, depth, opacity, weight, trans);
}

__global__ void composite_bwd_kernel(CompositeArgs a, const float* g_rgb, const float* g_depth, const float* g_opacity,
                                     const float* g_weight, const float* g_trans, const float* rgb, const float* depth,
                                     const float* opacity, float* g_sigma, float* g_delta, float* g_tmid,
                                     float* g_color) {
    const int64_t ray = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (ray < a.n_rays)
        composite_backward_ray(a, ray, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity, g_sigma,
                               g_delta, g_tmid, g_color);
}

template <bool kBackward>
__global__ void distortion_kernel(const float* w, const float* m, const float* d, const int64_t* offsets,
                                  int64_t n_rays, float* loss, const float* g_loss, float* g_w, float* g_m,
                                  float* g_d) {
    const int64_t ray = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (ray < n_rays) distortion_ray<kBackward>(w, m, d, offsets, ray, loss, g_loss, g_w, g_m, g_d);
}

}  // namespace

cudaError_t composite_forward(const CompositeArgs& a, float* rgb, float* depth, float* opacity, float* weight,
                              float* trans, cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    composite_fwd_kernel<<<num_blocks(a.n_rays), kThreads, 0, stream>>>(a, rgb, depth, opacity, weight, trans);
    return cudaGetLastError();
}

cudaError_t composite_backward(const CompositeArgs& a, const float* g_rgb, const float* g_depth, const float* g_opacity,
                               const float* g_weight, const float* g_trans, const float* rgb, const float* depth,
                               const float* opacity, float* g_sigma, float* g_delta, float* g_tmid, float* g_color,
                               cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    composite_bwd_kernel<<<num_blocks(a.n_rays), kThreads, 0, stream>>>(
        a, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity, g_sigma, g_delta, g_tmid, g_color);
    return cudaGetLastError();
}

cudaError_t distortion_forward(const float* w, const float* m, const float* d, const int64_t* offsets, int64_t n_rays,
                               float* loss, cudaStream_t stream) {
    if (n_rays == 0) return cudaSuccess;
    distortion_kernel<false><<<num_blocks(n_rays), kThreads, 0, stream>>>(w, m, d, offsets, n_rays, loss, nullptr,
                                                                          nullptr, nullptr, nullptr);
    return cudaGetLastError();
}

cudaError_t distortion_backward(const float* g_loss, const float* w, const float* m, const float* d,
                                const int64_t* offsets, int64_t n_rays, float* g_w, float* g_m, float* g_d,
                                cudaStream_t stream) {
    if (n_rays == 0) return cudaSuccess;
    distortion_kernel<true>
        <<<num_blocks(n_rays), kThreads, 0, stream>>>(w, m, d, offsets, n_rays, nullptr, g_loss, g_w, g_m, g_d);
    return cudaGetLastError();
}

}  // namespace rfk
