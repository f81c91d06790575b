// Proposal-sampling kernels (inverse-CDF sampling of packed histograms). Torch-free; launched from
// sampling/bind.cpp. Per-ray prefix passes (CDF, knots) run one thread per ray; the inverse-CDF
// lookups run one thread per output sample. The bodies are __host__ __device__ so
// tests/rfkernels/sampling/host.cu runs them on the CPU. The interlevel losses are in sampling/interlevel.cu.
// Formulas: rfkernels/sampling/reference.py (same steps, same order).
#include "sampling/kernels.h"
#include "sampling/span_search.cuh"

namespace rfk {
namespace sampling_detail {  // per-ray / per-sample bodies, host+device (tests/rfkernels/sampling/host.cu)

// Piecewise-linear CDF with knots t and values c (S + 1 of each) at y.
RFK_HD float eval_step_cdf(const float* __restrict__ t, const float* __restrict__ c, int S, float y) {
    const int i = count_le<float>(t, S + 1, y) - 1;
    if (i < 0) return 0.f;
    if (i >= S) return 1.f;
    const float width = t[i + 1] - t[i];
    return c[i] + (y - t[i]) / (width > 0.f ? width : 1.f) * (c[i + 1] - c[i]);
}

// ------------------------------------------------------------------------------------- sampling
RFK_HD void cdf_ray(const SampleArgs& a, int64_t ray, float* __restrict__ cdf) {
    const RaySpan s = ray_span(a.offsets, ray);
    const float* t = a.bins + s.edge;
    const float* w = a.weights + s.start;
    float* c = cdf + s.edge;
    float tot = 0.f, tot_width = 0.f;
    for (int i = 0; i < s.n; ++i) {
        const float width = t[i + 1] - t[i];
        if (width > 0.f) tot += w[i] + a.padding;
        tot_width += width;
    }
    const bool use_w = tot > 0.f, use_width = !use_w && tot_width > 0.f;
    const float total = use_w ? tot : (use_width ? tot_width : static_cast<float>(s.n));
    c[0] = s.n > 0 ? 0.f : 1.f;
    float run = 0.f;
    for (int i = 0; i < s.n; ++i) {
        const float width = t[i + 1] - t[i];
        run += use_w ? (width > 0.f ? w[i] + a.padding : 0.f) : (use_width ? width : 1.f);
        c[i + 1] = i + 1 == s.n ? 1.f : fminf(run / total, 1.f);
    }
}

// Blur knots t_i -+ r placed by rank in the merged order (ties: t - r first), clamped to the ray's
// domain, with the blurred density (F(x + r) - F(x - r)) / 2r.
RFK_HD void knots_ray(const SampleArgs& a, int64_t ray, const float* __restrict__ cdf, float* __restrict__ kx,
                      float* __restrict__ kp) {
    const RaySpan s = ray_span(a.offsets, ray);
    const float* t = a.bins + s.edge;
    const float* c = cdf + s.edge;
    const int E = s.n + 1;
    const int64_t kb = 2 * s.edge;
    const float r = a.blur[ray];
    for (int j = 0; j < 2 * E; ++j) {
        const bool is_a = j < E;
        const int i = is_a ? j : j - E;
        float x = is_a ? t[i] - r : t[i] + r;
        const int rank = i + count_le<float>(t, E, x, is_a ? r : -r, is_a);
        x = fminf(fmaxf(x, t[0]), t[s.n]);
        const float p = (eval_step_cdf(t, c, s.n, x + r) - eval_step_cdf(t, c, s.n, x - r)) / (2.f * r);
        kx[kb + rank] = x;
        kp[kb + rank] = fmaxf(p, 0.f);
    }
}

// Trapezoid CDF of the piecewise-linear density at the knots, normalized; density rescaled.
RFK_HD void knot_cdf_ray(const SampleArgs& a, int64_t ray, const float* __restrict__ kx, float* __restrict__ kp,
                         float* __restrict__ kf) {
    const RaySpan s = ray_span(a.offsets, ray);
    const int K = 2 * (s.n + 1);
    const float* x = kx + 2 * s.edge;
    float* p = kp + 2 * s.edge;
    float* f = kf + 2 * s.edge;
    float tot = 0.f;
    for (int k = 0; k + 1 < K; ++k) tot += 0.5f * (p[k + 1] + p[k]) * (x[k + 1] - x[k]);
    const float total = tot > 0.f ? tot : 1.f;
    f[0] = 0.f;
    float run = 0.f;
    for (int k = 0; k + 1 < K; ++k) {
        run += 0.5f * (p[k + 1] + p[k]) * (x[k + 1] - x[k]);
        f[k + 1] = k + 2 == K ? 1.f : fminf(run / total, 1.f);
    }
    for (int k = 0; k < K; ++k) p[k] /= total;
}

// Inverse CDF at u_k = (k + j) / n.
RFK_HD float sample_at(const SampleArgs& a, int64_t ray, int k, const RaySpan& s, const float* __restrict__ cdf,
                       const float* __restrict__ kx, const float* __restrict__ kp, const float* __restrict__ kf) {
    const float jit = a.jitter_mode == 0 ? 0.5f : a.jitter_mode == 1 ? a.jitter[ray] : a.jitter[ray * a.n_samples + k];
    const float u = (static_cast<float>(k) + jit) / static_cast<float>(a.n_samples);
    const float* t = a.bins + s.edge;
    if (a.blur) {
        const int K = 2 * (s.n + 1);
        const float* x = kx + 2 * s.edge;
        const float* f = kf + 2 * s.edge;
        const float* p = kp + 2 * s.edge;
        int i = count_le<float>(f, K, u) - 1;
        i = i < 0 ? 0 : (i > K - 2 ? K - 2 : i);
        const float h = x[i + 1] - x[i];
        const float du = fmaxf(u - f[i], 0.f);
        const float slope = h > 0.f ? (p[i + 1] - p[i]) / h : 0.f;
        const float den = p[i] + sqrtf(fmaxf(p[i] * p[i] + 2.f * slope * du, 0.f));
        const float step = den > 0.f ? 2.f * du / den : 0.f;
        return fminf(x[i] + step, x[i + 1]);  // rounding never passes the next knot
    }
    if (s.n == 0) return t[0];
    const float* c = cdf + s.edge;
    int i = count_le<float>(c, s.n + 1, u) - 1;
    i = i < 0 ? 0 : (i > s.n - 1 ? s.n - 1 : i);
    const float dc = c[i + 1] - c[i];
    const float frac = dc > 0.f ? (u - c[i]) / dc : 0.f;
    return fminf(t[i] + fminf(fmaxf(frac, 0.f), 1.f) * (t[i + 1] - t[i]), t[i + 1]);
}

// Output entry idx of [R, n_out] (a sample, or an interval edge when return_edges).
RFK_HD void invert_item(const SampleArgs& a, int64_t idx, const float* __restrict__ cdf, const float* __restrict__ kx,
                        const float* __restrict__ kp, const float* __restrict__ kf, float* __restrict__ out) {
    const int n = a.n_samples;
    const int n_out = a.return_edges ? n + 1 : n;
    const int64_t ray = idx / n_out;
    const int k = static_cast<int>(idx - ray * n_out);
    const RaySpan s = ray_span(a.offsets, ray);
    if (!a.return_edges) {
        out[idx] = sample_at(a, ray, k, s, cdf, kx, kp, kf);
        return;
    }
    // edges between centers c_{k-1}, c_k (Zip-NeRF sample_intervals), clamped to the domain
    const float lo = a.bins[s.edge], hi = a.bins[s.edge + s.n];
    if (n == 1) {
        out[idx] = k == 0 ? lo : hi;
        return;
    }
    const int ka = k - 1 < 0 ? 0 : (k - 1 > n - 2 ? n - 2 : k - 1);
    const float ca = sample_at(a, ray, ka, s, cdf, kx, kp, kf);
    const float cb = sample_at(a, ray, ka + 1, s, cdf, kx, kp, kf);
    const float mid = 0.5f * (cb + ca);
    out[idx] = k == 0 ? fmaxf(lo, 2.f * ca - mid) : (k == n ? fminf(hi, 2.f * cb - mid) : mid);
}

}  // namespace sampling_detail

namespace {
using namespace sampling_detail;

__global__ void cdf_kernel(const SampleArgs a, float* cdf) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) cdf_ray(a, ray, cdf);
}
__global__ void knots_kernel(const SampleArgs a, const float* cdf, float* kx, float* kp) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) knots_ray(a, ray, cdf, kx, kp);
}
__global__ void knot_cdf_kernel(const SampleArgs a, const float* kx, float* kp, float* kf) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) knot_cdf_ray(a, ray, kx, kp, kf);
}
__global__ void invert_kernel(const SampleArgs a, int64_t n_items, const float* cdf, const float* kx, const float* kp,
                              const float* kf, float* out) {
    const int64_t idx = thread_index();
    if (idx < n_items) invert_item(a, idx, cdf, kx, kp, kf, out);
}

}  // namespace

cudaError_t sample_pdf(const SampleArgs& a, float* cdf, float* knot_x, float* knot_p, float* knot_f, float* out,
                       cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    const unsigned int ray_blocks = num_blocks(a.n_rays);
    cdf_kernel<<<ray_blocks, kThreads, 0, stream>>>(a, cdf);
    if (a.blur) {
        knots_kernel<<<ray_blocks, kThreads, 0, stream>>>(a, cdf, knot_x, knot_p);
        knot_cdf_kernel<<<ray_blocks, kThreads, 0, stream>>>(a, knot_x, knot_p, knot_f);
    }
    const int64_t n_out = a.n_rays * (a.return_edges ? a.n_samples + 1 : a.n_samples);
    invert_kernel<<<num_blocks(n_out), kThreads, 0, stream>>>(a, n_out, cdf, knot_x, knot_p, knot_f, out);
    return last_launch_error();
}

}  // namespace rfk
