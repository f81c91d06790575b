// Proposal-sampling kernels (inverse-CDF sampling of packed histograms). Torch-free; launched from
// sampling/bind.cpp. Every pass runs one team of W lanes per ray (common/team.cuh): the CDF and knot-CDF
// prefixes are shuffle scans carried across chunks of W bins, the knots and the inverse-CDF lookups are
// spread over the lanes, and the interval edges (return_edges) take each centre once, the previous one
// from the neighbouring lane. The bodies are __host__ __device__ templates over the team so
// tests/rfkernels/sampling/host.cu runs the same chunked algorithm on the CPU. The interlevel losses are in
// sampling/interlevel.cu. Formulas: rfkernels/sampling/reference.py (same steps, same order).
#include "common/team.cuh"
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
// Step CDF at the S + 1 edges: c = [0, cumsum(mass) / total] with mass = w + padding on positive-width bins
// (else the widths, else 1 per bin when the ray has no mass).
template <int W>
RFK_HD void cdf_ray(const Team<W>& team, const SampleArgs& a, int64_t ray, float* __restrict__ cdf) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const RaySpan s = ray_span(a.offsets, ray);
    const float* t = a.bins + s.edge;
    const float* w = a.weights + s.start;
    float* c = cdf + s.edge;
    Lanes tot = Team<W>::fill(0.f), tot_width = Team<W>::fill(0.f);
    for (int base = 0; base < s.n; base += W)
        team.each([&](int l) {
            const int i = base + l;
            if (i >= s.n) return;
            const float width = t[i + 1] - t[i];
            if (width > 0.f) tot[l] += w[i] + a.padding;
            tot_width[l] += width;
        });
    const float sum_w = team.sum(tot), sum_width = team.sum(tot_width);
    const bool use_w = sum_w > 0.f, use_width = !use_w && sum_width > 0.f;
    const float total = use_w ? sum_w : (use_width ? sum_width : static_cast<float>(s.n));
    team.once([&] { c[0] = s.n > 0 ? 0.f : 1.f; });
    float carry = 0.f;  // mass in front of the chunk
    for (int base = 0; base < s.n; base += W) {
        Lanes mass;
        team.each([&](int l) {
            const int i = base + l;
            const float width = i < s.n ? t[i + 1] - t[i] : 0.f;
            mass[l] = i >= s.n ? 0.f : (use_w ? (width > 0.f ? w[i] + a.padding : 0.f) : (use_width ? width : 1.f));
        });
        const Lanes incl = team.inclusive_scan(mass);
        team.each([&](int l) {
            const int i = base + l;
            if (i < s.n) c[i + 1] = i + 1 == s.n ? 1.f : fminf((carry + incl[l]) / total, 1.f);
        });
        carry += team.last(incl);
    }
}

// Blur knots t_i -+ r placed by rank in the merged order (ties: t - r first), clamped to the ray's
// domain, with the blurred density (F(x + r) - F(x - r)) / 2r; lane l takes knots j = base + l.
template <int W>
RFK_HD void knots_ray(const Team<W>& team, const SampleArgs& a, int64_t ray, const float* __restrict__ cdf,
                      float* __restrict__ kx, float* __restrict__ kp) {
    const RaySpan s = ray_span(a.offsets, ray);
    const float* t = a.bins + s.edge;
    const float* c = cdf + s.edge;
    const int E = s.n + 1;
    const int64_t kb = 2 * s.edge;
    const float r = a.blur[ray];
    for (int base = 0; base < 2 * E; base += W)
        team.each([&](int l) {
            const int j = base + l;
            if (j >= 2 * E) return;
            const bool is_a = j < E;
            const int i = is_a ? j : j - E;
            float x = is_a ? t[i] - r : t[i] + r;
            const int rank = i + count_le<float>(t, E, x, is_a ? r : -r, is_a);
            x = fminf(fmaxf(x, t[0]), t[s.n]);
            const float p = (eval_step_cdf(t, c, s.n, x + r) - eval_step_cdf(t, c, s.n, x - r)) / (2.f * r);
            kx[kb + rank] = x;
            kp[kb + rank] = fmaxf(p, 0.f);
        });
}

// Trapezoid CDF of the piecewise-linear density at the K knots (a scan of the trapezoids), normalized; the
// density is rescaled after every lane has read it.
template <int W>
RFK_HD void knot_cdf_ray(const Team<W>& team, const SampleArgs& a, int64_t ray, const float* __restrict__ kx,
                         float* __restrict__ kp, float* __restrict__ kf) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const RaySpan s = ray_span(a.offsets, ray);
    const int K = 2 * (s.n + 1);
    const float* x = kx + 2 * s.edge;
    float* p = kp + 2 * s.edge;
    float* f = kf + 2 * s.edge;
    const auto area = [&](int k) { return k + 1 < K ? 0.5f * (p[k + 1] + p[k]) * (x[k + 1] - x[k]) : 0.f; };
    Lanes tot = Team<W>::fill(0.f);
    for (int base = 0; base + 1 < K; base += W) team.each([&](int l) { tot[l] += area(base + l); });
    const float sum = team.sum(tot);
    const float total = sum > 0.f ? sum : 1.f;
    team.once([&] { f[0] = 0.f; });
    float carry = 0.f;
    for (int base = 0; base + 1 < K; base += W) {
        Lanes trap;
        team.each([&](int l) { trap[l] = area(base + l); });
        const Lanes incl = team.inclusive_scan(trap);
        team.each([&](int l) {
            const int k = base + l;
            if (k + 1 < K) f[k + 1] = k + 2 == K ? 1.f : fminf((carry + incl[l]) / total, 1.f);
        });
        carry += team.last(incl);
    }
    for (int base = 0; base < K; base += W)
        team.each([&](int l) {
            if (base + l < K) p[base + l] /= total;
        });
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

// Output row of ray `ray`: n samples, lane l inverting u_k for k = base + l; or, with return_edges, the n + 1
// edges between consecutive centres c_{k-1}, c_k (Zip-NeRF sample_intervals), clamped to the domain: every
// centre is inverted once and handed to the next lane (and across chunks as a carry).
template <int W>
RFK_HD void invert_ray(const Team<W>& team, const SampleArgs& a, int64_t ray, const float* __restrict__ cdf,
                       const float* __restrict__ kx, const float* __restrict__ kp, const float* __restrict__ kf,
                       float* __restrict__ out) {
    using Lanes = typename Team<W>::template Lanes<float>;
    const int n = a.n_samples;
    const RaySpan s = ray_span(a.offsets, ray);
    if (!a.return_edges) {
        for (int base = 0; base < n; base += W)
            team.each([&](int l) {
                const int k = base + l;
                if (k < n) out[ray * n + k] = sample_at(a, ray, k, s, cdf, kx, kp, kf);
            });
        return;
    }
    float* o = out + ray * (n + 1);
    const float lo = a.bins[s.edge], hi = a.bins[s.edge + s.n];
    if (n == 1) {
        team.once([&] {
            o[0] = lo;
            o[1] = hi;
        });
        return;
    }
    float carry = 0.f;  // the centre in front of the chunk
    for (int base = 0; base < n; base += W) {
        Lanes centre;
        team.each([&](int l) {
            const int k = base + l;
            centre[l] = k < n ? sample_at(a, ray, k, s, cdf, kx, kp, kf) : 0.f;
        });
        const Lanes prev = team.shift_up(centre, carry);
        team.each([&](int l) {
            const int k = base + l;
            if (k == 0 || k >= n) return;
            const float mid = 0.5f * (centre[l] + prev[l]);
            o[k] = mid;
            if (k == 1) o[0] = fmaxf(lo, 2.f * prev[l] - mid);
            if (k == n - 1) o[n] = fminf(hi, 2.f * centre[l] - mid);
        });
        carry = team.last(centre);
    }
}

}  // namespace sampling_detail

namespace {
using namespace sampling_detail;

template <int W>
__global__ void cdf_kernel(const SampleArgs a, float* cdf) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) cdf_ray(team, a, ray, cdf);
}
template <int W>
__global__ void knots_kernel(const SampleArgs a, const float* cdf, float* kx, float* kp) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) knots_ray(team, a, ray, cdf, kx, kp);
}
template <int W>
__global__ void knot_cdf_kernel(const SampleArgs a, const float* kx, float* kp, float* kf) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) knot_cdf_ray(team, a, ray, kx, kp, kf);
}
template <int W>
__global__ void invert_kernel(const SampleArgs a, const float* cdf, const float* kx, const float* kp, const float* kf,
                              float* out) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) invert_ray(team, a, ray, cdf, kx, kp, kf, out);
}

}  // namespace

cudaError_t sample_pdf(const SampleArgs& a, float* cdf, float* knot_x, float* knot_p, float* knot_f, float* out,
                       cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    with_team_width(team_width(a.n_bins, a.n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        const unsigned int blocks = team_blocks<W>(a.n_rays);
        cdf_kernel<W><<<blocks, kThreads, 0, stream>>>(a, cdf);
        if (a.blur) {
            knots_kernel<W><<<blocks, kThreads, 0, stream>>>(a, cdf, knot_x, knot_p);
            knot_cdf_kernel<W><<<blocks, kThreads, 0, stream>>>(a, knot_x, knot_p, knot_f);
        }
    });
    with_team_width(team_width(a.n_rays * a.n_samples, a.n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        invert_kernel<W><<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a, cdf, knot_x, knot_p, knot_f, out);
    });
    return last_launch_error();
}

}  // namespace rfk
