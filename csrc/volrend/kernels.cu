// Volume rendering kernels: one team of W lanes per ray (common/team.cuh) walks its packed samples front
// to back in chunks of W, lane l on sample base + l (coalesced loads and stores); the optical depth in front
// of each sample and the backward's running sums are shuffle scans, carried from chunk to chunk in float32.
// Torch-free; launched from volrend/bind.cpp. The per-ray bodies are __host__ __device__ templates over the
// team, so tests/rfkernels/volrend/host.cu runs the same chunked algorithm on the CPU.
#include "common/team.cuh"
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

// Sweeps the ray once per chunk of 4 channels (one sweep for C <= 4), keeping per-lane colour sums in
// registers and summing them over the team at the end; the per-sample outputs are written during the first
// sweep (trans only when requested: trans_out may be null).
template <int W>
RFK_HD void composite_forward_ray(const Team<W>& team, const CompositeArgs& a, int64_t ray, float* __restrict__ rgb,
                                  float* __restrict__ depth, float* __restrict__ opacity, float* __restrict__ weight,
                                  float* __restrict__ trans_out) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const int64_t start = a.offsets[ray], end = a.offsets[ray + 1];
    // All C columns of rgb are written (zeros for empty rays). color may be null with C > 0 only when
    // there are no samples at all (N = 0: empty colors map to a null pointer), so it is never read then.
    const int C = a.channels;
    for (int c0 = 0; c0 == 0 || c0 < C; c0 += kChannelChunk) {
        const bool first = c0 == 0;
        const int nc = C - c0 < kChannelChunk ? C - c0 : kChannelChunk;
        Lanes acc[kChannelChunk];
        for (int c = 0; c < kChannelChunk; ++c) acc[c] = Team<W>::fill(0.f);
        Lanes acc_depth = Team<W>::fill(0.f), acc_opacity = Team<W>::fill(0.f);
        float carry = 0.f;  // optical depth in front of the chunk
        for (int64_t base = start; base < end; base += W) {
            Lanes tau;
            team.each([&](int l) {
                const int64_t i = base + l;
                tau[l] = i < end ? optical_depth(a.sigma[i], a.delta[i], a.tau_max) : 0.f;
            });
            const Lanes incl = team.inclusive_scan(tau);
            const Lanes excl = team.shift_up(incl, 0.f);
            team.each([&](int l) {
                const int64_t i = base + l;
                if (i >= end) return;
                const float T = expf(-(carry + excl[l]));
                const float w = T < a.eps ? 0.f : T * -expm1f(-tau[l]);  // NaN T keeps a NaN weight
                if (first) {
                    weight[i] = w;
                    if (trans_out) trans_out[i] = T;
                    acc_opacity[l] += w;
                    if (a.tmid) acc_depth[l] += mul0(w, a.tmid[i]);
                }
#pragma unroll
                for (int c = 0; c < kChannelChunk; ++c)
                    if (c < nc) acc[c][l] += mul0(w, a.color[i * C + c0 + c]);
            });
            carry += team.last(incl);
        }
        float sums[kChannelChunk];
#pragma unroll
        for (int c = 0; c < kChannelChunk; ++c) sums[c] = c < nc ? team.sum(acc[c]) : 0.f;
        const float sum_depth = first ? team.sum(acc_depth) : 0.f;
        const float sum_opacity = first ? team.sum(acc_opacity) : 0.f;
        team.once([&] {
            for (int c = 0; c < nc; ++c) rgb[ray * C + c0 + c] = sums[c];
            if (first) {
                depth[ray] = sum_depth;
                opacity[ray] = sum_opacity;
            }
        });
    }
}

// dL/dtau_k = T_{k+1} v_k - sum_{i>k} (w_i v_i + T_i u_i); see rfkernels/volrend/triton.py. The sum over
// i > k is total - (inclusive prefix of the contributions), the prefix a second scan per chunk.
template <int W>
RFK_HD void composite_backward_ray(const Team<W>& team, const CompositeArgs& a, int64_t ray,
                                   const float* __restrict__ g_rgb, const float* __restrict__ g_depth,
                                   const float* __restrict__ g_opacity, const float* __restrict__ g_weight,
                                   const float* __restrict__ g_trans, const float* __restrict__ rgb,
                                   const float* __restrict__ depth, const float* __restrict__ opacity,
                                   float* __restrict__ g_sigma, float* __restrict__ g_delta, float* __restrict__ g_tmid,
                                   float* __restrict__ g_color) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const int64_t start = a.offsets[ray], end = a.offsets[ray + 1];
    const int C = a.channels;
    const float gd = g_depth[ray], go = g_opacity[ray];
    const float* gc = a.color ? g_rgb + ray * C : nullptr;
    float total = go * opacity[ray];
    if (a.tmid) total += gd * depth[ray];
    if (a.color)
        for (int c = 0; c < C; ++c) total += gc[c] * rgb[ray * C + c];
    if (g_weight || g_trans) {  // per-sample output grads: one extra pass for their share
        Lanes part = Team<W>::fill(0.f);
        float carry = 0.f;
        for (int64_t base = start; base < end; base += W) {
            Lanes tau;
            team.each([&](int l) {
                const int64_t i = base + l;
                tau[l] = i < end ? optical_depth(a.sigma[i], a.delta[i], a.tau_max) : 0.f;
            });
            const Lanes incl = team.inclusive_scan(tau);
            const Lanes excl = team.shift_up(incl, 0.f);
            team.each([&](int l) {
                const int64_t i = base + l;
                if (i >= end) return;
                const float T = expf(-(carry + excl[l]));
                if (g_weight && !(T < a.eps)) part[l] += T * -expm1f(-tau[l]) * g_weight[i];
                if (g_trans) part[l] += T * g_trans[i];
            });
            carry += team.last(incl);
        }
        total += team.sum(part);
    }
    float carry = 0.f, prefix = 0.f;  // optical depth and contribution sum in front of the chunk
    for (int64_t base = start; base < end; base += W) {
        Lanes tau;
        team.each([&](int l) {
            const int64_t i = base + l;
            tau[l] = i < end ? optical_depth(a.sigma[i], a.delta[i], a.tau_max) : 0.f;
        });
        const Lanes incl = team.inclusive_scan(tau);
        const Lanes excl = team.shift_up(incl, 0.f);
        Lanes T, v, contrib;
        team.each([&](int l) {
            const int64_t i = base + l;
            contrib[l] = 0.f;
            if (i >= end) return;
            T[l] = expf(-(carry + excl[l]));
            const float w = !(T[l] < a.eps) ? T[l] * -expm1f(-tau[l]) : 0.f;
            v[l] = go;
            if (a.tmid) {
                v[l] += mul0(gd, a.tmid[i]);
                g_tmid[i] = w * gd;
            }
            if (a.color) {
                for (int c = 0; c < C; ++c) {
                    v[l] += gc[c] * a.color[i * C + c];
                    g_color[i * C + c] = w * gc[c];
                }
            }
            if (g_weight) v[l] += g_weight[i];
            contrib[l] = mul0(w, v[l]);
            if (g_trans) contrib[l] += T[l] * g_trans[i];
        });
        const Lanes contrib_incl = team.inclusive_scan(contrib);
        team.each([&](int l) {
            const int64_t i = base + l;
            if (i >= end) return;
            const float sigma = a.sigma[i], delta = a.delta[i];
            bool regular;
            optical_depth(sigma, delta, a.tau_max, &regular);
            const float T_next = expf(-(carry + incl[l]));
            const bool active = !(T[l] < a.eps);
            // behind a sample that passes no light the true suffix is exactly 0; total - prefix would leave
            // its rounding error, multiplied by sigma into the gradient (the rule of the Triton backward too)
            const float suffix = T_next == 0.f ? 0.f : total - (prefix + contrib_incl[l]);
            const float g_tau = (active ? T_next * v[l] : 0.f) - suffix;
            g_sigma[i] = regular ? g_tau * delta : 0.f;  // saturated / 0 * inf taus pass no gradient
            g_delta[i] = regular ? g_tau * sigma : 0.f;
        });
        carry += team.last(incl);
        prefix += team.last(contrib_incl);
    }
}

// Distortion loss of one ray: sum_i 2 w_i (m_i W_<i - WM_<i) + w_i^2 d_i / 3 with W_<i, WM_<i the exclusive
// prefixes of w and w m (shuffle scans carried across chunks); the backward needs the ray totals first.
template <int W, bool kBackward>
RFK_HD void distortion_ray(const Team<W>& team, const float* __restrict__ w, const float* __restrict__ m,
                           const float* __restrict__ d, const int64_t* __restrict__ offsets, int64_t ray,
                           float* __restrict__ loss, const float* __restrict__ g_loss, float* __restrict__ g_w,
                           float* __restrict__ g_m, float* __restrict__ g_d) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const int64_t start = offsets[ray], end = offsets[ray + 1];
    float w_tot = 0.f, wm_tot = 0.f;
    if (kBackward) {
        Lanes sw = Team<W>::fill(0.f), swm = Team<W>::fill(0.f);
        for (int64_t base = start; base < end; base += W)
            team.each([&](int l) {
                const int64_t i = base + l;
                if (i >= end) return;
                sw[l] += w[i];
                swm[l] += w[i] * m[i];
            });
        w_tot = team.sum(sw);
        wm_tot = team.sum(swm);
    }
    const float g = kBackward ? g_loss[ray] : 0.f;
    Lanes acc = Team<W>::fill(0.f);
    float w_carry = 0.f, wm_carry = 0.f;
    for (int64_t base = start; base < end; base += W) {
        Lanes wi, wmi;
        team.each([&](int l) {
            const int64_t i = base + l;
            wi[l] = i < end ? w[i] : 0.f;
            wmi[l] = i < end ? wi[l] * m[i] : 0.f;
        });
        const Lanes w_incl = team.inclusive_scan(wi), wm_incl = team.inclusive_scan(wmi);
        const Lanes w_excl = team.shift_up(w_incl, 0.f), wm_excl = team.shift_up(wm_incl, 0.f);
        team.each([&](int l) {
            const int64_t i = base + l;
            if (i >= end) return;
            const float mi = m[i], w_before = w_carry + w_excl[l], wm_before = wm_carry + wm_excl[l];
            if (kBackward) {
                const float w_in = w_before + wi[l], wm_in = wm_before + wmi[l];
                g_w[i] = g * (2.f * (mi * w_before - wm_before) + 2.f * ((wm_tot - wm_in) - mi * (w_tot - w_in)) +
                              (2.f / 3.f) * wi[l] * d[i]);
                g_m[i] = g * 2.f * wi[l] * (w_before - (w_tot - w_in));
                g_d[i] = g * wi[l] * wi[l] / 3.f;
            } else {
                acc[l] += 2.f * wi[l] * (mi * w_before - wm_before) + wi[l] * wi[l] * d[i] / 3.f;
            }
        });
        w_carry += team.last(w_incl);
        wm_carry += team.last(wm_incl);
    }
    if (!kBackward) {
        const float total = team.sum(acc);
        team.once([&] { loss[ray] = total; });
    }
}

namespace {  // kernels: one team of W lanes per ray

template <int W>
__global__ void composite_fwd_kernel(CompositeArgs a, float* rgb, float* depth, float* opacity, float* weight,
                                     float* trans) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) composite_forward_ray(team, a, ray, rgb, depth, opacity, weight, trans);
}

template <int W>
__global__ void composite_bwd_kernel(CompositeArgs a, const float* g_rgb, const float* g_depth, const float* g_opacity,
                                     const float* g_weight, const float* g_trans, const float* rgb, const float* depth,
                                     const float* opacity, float* g_sigma, float* g_delta, float* g_tmid,
                                     float* g_color) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays)
        composite_backward_ray(team, a, ray, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity, g_sigma,
                               g_delta, g_tmid, g_color);
}

template <int W, bool kBackward>
__global__ void distortion_kernel(const float* w, const float* m, const float* d, const int64_t* offsets,
                                  int64_t n_rays, float* loss, const float* g_loss, float* g_w, float* g_m,
                                  float* g_d) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < n_rays) distortion_ray<W, kBackward>(team, w, m, d, offsets, ray, loss, g_loss, g_w, g_m, g_d);
}

}  // namespace

cudaError_t composite_forward(const CompositeArgs& a, float* rgb, float* depth, float* opacity, float* weight,
                              float* trans, cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    with_team_width(team_width(a.n_samples, a.n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        composite_fwd_kernel<W>
            <<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a, rgb, depth, opacity, weight, trans);
    });
    return cudaGetLastError();
}

cudaError_t composite_backward(const CompositeArgs& a, const float* g_rgb, const float* g_depth, const float* g_opacity,
                               const float* g_weight, const float* g_trans, const float* rgb, const float* depth,
                               const float* opacity, float* g_sigma, float* g_delta, float* g_tmid, float* g_color,
                               cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    with_team_width(team_width(a.n_samples, a.n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        composite_bwd_kernel<W><<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(
            a, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity, g_sigma, g_delta, g_tmid, g_color);
    });
    return cudaGetLastError();
}

cudaError_t distortion_forward(const float* w, const float* m, const float* d, const int64_t* offsets, int64_t n_rays,
                               int64_t n_samples, float* loss, cudaStream_t stream) {
    if (n_rays == 0) return cudaSuccess;
    with_team_width(team_width(n_samples, n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        distortion_kernel<W, false><<<team_blocks<W>(n_rays), kThreads, 0, stream>>>(
            w, m, d, offsets, n_rays, loss, nullptr, nullptr, nullptr, nullptr);
    });
    return cudaGetLastError();
}

cudaError_t distortion_backward(const float* g_loss, const float* w, const float* m, const float* d,
                                const int64_t* offsets, int64_t n_rays, int64_t n_samples, float* g_w, float* g_m,
                                float* g_d, cudaStream_t stream) {
    if (n_rays == 0) return cudaSuccess;
    with_team_width(team_width(n_samples, n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        distortion_kernel<W, true>
            <<<team_blocks<W>(n_rays), kThreads, 0, stream>>>(w, m, d, offsets, n_rays, nullptr, g_loss, g_w, g_m, g_d);
    });
    return cudaGetLastError();
}

}  // namespace rfk
