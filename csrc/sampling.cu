// Proposal sampling and interlevel-loss kernels. Torch-free; launched from bind_sampling.cpp.
// Per-ray prefix passes (CDF, knots, proposal prefix, adjoint scatter, suffix) run one thread per
// ray; the inverse-CDF lookups run one thread per output sample. The bodies are __host__
// __device__ so tests/csrc/sampling_host.cu runs them on the CPU. Sorted per-ray arrays are searched
// by binary search. Formulas: rfkernels/sampling/reference.py (same steps, same order).
#include "common.cuh"
#include "sampling.h"

namespace rfk {
namespace sampling_detail {  // per-ray / per-sample bodies, host+device (tests/csrc/sampling_host.cu)

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
    const float jit = a.jitter_mode == 0 ? 0.5f
                      : a.jitter_mode == 1 ? a.jitter[ray]
                                           : a.jitter[ray * a.n_samples + k];
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

// ----------------------------------------------------------------------------- interlevel losses
// Histogram (t, w) of ray `ray`: cy = [0, cumsum(w)] (positive-width bins only when blurred) and,
// when blurred, g = the integral of its CDF at the edges; float64 (see rfkernels/sampling/triton.py).
RFK_HD void prefix_ray(const float* __restrict__ t_all, const float* __restrict__ w_all, const int64_t* off,
                       int64_t ray, bool blurred, double* __restrict__ cy, double* __restrict__ g) {
    const RaySpan s = ray_span(off, ray);
    const float* t = t_all + s.edge;
    const float* w = w_all + s.start;
    double* c = cy + s.edge;
    double* G = blurred ? g + s.edge : nullptr;
    c[0] = 0.0;
    if (blurred) G[0] = 0.0;
    double run = 0.0, run_g = 0.0;
    for (int i = 0; i < s.n; ++i) {
        double wi = w[i];
        if (blurred) {
            const double width = static_cast<double>(t[i + 1]) - static_cast<double>(t[i]);
            if (!(width > 0.0)) wi = 0.0;
            run += wi;
            run_g += width * (run - wi + 0.5 * wi);
            G[i + 1] = run_g;
        } else {
            run += wi;
        }
        c[i + 1] = run;
    }
}

struct Hist {  // one ray's histogram with its prefix arrays
    const float* t;
    const float* w;
    const double* cy;
    const double* g;
    int n;
};

RFK_HD Hist hist_of(const float* t, const float* w, const int64_t* off, int64_t ray, const double* cy,
                    const double* g) {
    const RaySpan s = ray_span(off, ray);
    return {t + s.edge, w + s.start, cy + s.edge, g ? g + s.edge : nullptr, s.n};
}

// G(y): integral from -inf to y of the histogram's (unnormalized) CDF.
RFK_HD double integral_at(const Hist& h, double y) {
    const int c = count_le<double>(h.t, h.n + 1, y);
    if (c == 0) return 0.0;
    if (c > h.n) return h.g[h.n] + h.cy[h.n] * (y - static_cast<double>(h.t[h.n]));
    const int i = c - 1;
    const double t0 = h.t[i];
    const double width = static_cast<double>(h.t[i + 1]) - t0;
    const double dens = width > 0.0 ? static_cast<double>(h.w[i]) / width : 0.0;
    const double d = y - t0;
    return h.g[i] + d * (h.cy[i] + 0.5 * dens * d);
}

RFK_HD double blurred_cdf(const Hist& h, double x, double r) {
    return (integral_at(h, x + r) - integral_at(h, x - r)) / (2.0 * r);
}

// Outer measure of fine interval [t0, t1]: proposal bins [lo, hi), mass cy[hi] - cy[lo].
RFK_HD double outer_mass(const Hist& p, float t0, float t1, int* lo, int* hi) {
    const int l = count_le<float>(p.t, p.n + 1, t0) - 1;
    const int h = count_le<float>(p.t, p.n + 1, t1);
    *lo = l < 0 ? 0 : l;
    *hi = h > p.n ? p.n : h;
    return p.cy[*hi] - p.cy[*lo];
}

RFK_HD void outer_forward_ray(const InterlevelArgs& a, int64_t ray, const double* __restrict__ cy,
                              float* __restrict__ loss) {
    const RaySpan s = ray_span(a.off, ray);
    const Hist p = hist_of(a.tp, a.wp, a.offp, ray, cy, nullptr);
    double acc = 0.0;
    for (int j = 0; j < s.n; ++j) {
        int lo, hi;
        const double w = a.w[s.start + j];
        const double e = fmax(w - outer_mass(p, a.t[s.edge + j], a.t[s.edge + j + 1], &lo, &hi), 0.0);
        acc += e * e / (w + static_cast<double>(a.eps));
    }
    loss[ray] = static_cast<float>(acc);
}

// d loss / d cy[hi] = g_j, d / d cy[lo] = -g_j, at slots hi - 1, lo - 1 (the proposal bins below
// that prefix entry). One thread per ray owns its slots: plain, deterministic accumulation.
RFK_HD void outer_scatter_ray(const InterlevelArgs& a, int64_t ray, const float* __restrict__ g_loss,
                              const double* __restrict__ cy, double* __restrict__ u) {
    const RaySpan s = ray_span(a.off, ray);
    const Hist p = hist_of(a.tp, a.wp, a.offp, ray, cy, nullptr);
    double* U = u + a.offp[ray];
    const double gl = g_loss[ray];
    for (int j = 0; j < s.n; ++j) {
        int lo, hi;
        const double w = a.w[s.start + j];
        const double outer = outer_mass(p, a.t[s.edge + j], a.t[s.edge + j + 1], &lo, &hi);
        const double gj = gl * (-2.0 * fmax(w - outer, 0.0) / (w + static_cast<double>(a.eps)));
        if (hi >= 1) U[hi - 1] += gj;
        if (lo >= 1) U[lo - 1] -= gj;
    }
}

// grad wp_k = sum of the slots >= k.
RFK_HD void suffix_ray(const InterlevelArgs& a, int64_t ray, const double* __restrict__ u, float* __restrict__ g_wp) {
    const RaySpan s = ray_span(a.offp, ray);
    double acc = 0.0;
    for (int k = s.n - 1; k >= 0; --k) {
        acc += u[s.start + k];
        g_wp[s.start + k] = static_cast<float>(acc);
    }
}

// Per proposal bin k: Wb_k = blurred fine mass on [tp_k, tp_{k+1}] (>= 0); loss += max(0, Wb_k -
// wp_k)^2 / (wp_k + eps); dwp_k = d loss / d wp_k (Wb does not depend on wp).
RFK_HD void blurred_forward_ray(const InterlevelArgs& a, int64_t ray, const double* __restrict__ cy,
                                const double* __restrict__ g, float* __restrict__ loss, float* __restrict__ dwp) {
    const RaySpan s = ray_span(a.offp, ray);
    const Hist f = hist_of(a.t, a.w, a.off, ray, cy, g);
    const float* tp = a.tp + s.edge;
    const double r = a.blur[ray], eps = a.eps;
    double acc = 0.0;
    for (int k = 0; k < s.n; ++k) {
        const double wb = fmax(blurred_cdf(f, tp[k + 1], r) - blurred_cdf(f, tp[k], r), 0.0);
        const double wp = a.wp[s.start + k];
        const double e = fmax(wb - wp, 0.0), den = wp + eps;
        acc += e * e / den;
        dwp[s.start + k] = static_cast<float>(-2.0 * e / den - e * e / (den * den));
    }
    loss[ray] = static_cast<float>(acc);
}

}  // namespace sampling_detail

namespace {
using namespace sampling_detail;

__device__ inline int64_t thread_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }

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
__global__ void prefix_kernel(const float* t, const float* w, const int64_t* off, int64_t n_rays, bool blurred,
                              double* cy, double* g) {
    const int64_t ray = thread_index();
    if (ray < n_rays) prefix_ray(t, w, off, ray, blurred, cy, g);
}
__global__ void outer_forward_kernel(const InterlevelArgs a, const double* cy, float* loss) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) outer_forward_ray(a, ray, cy, loss);
}
__global__ void outer_scatter_kernel(const InterlevelArgs a, const float* g_loss, const double* cy, double* u) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) outer_scatter_ray(a, ray, g_loss, cy, u);
}
__global__ void suffix_kernel(const InterlevelArgs a, const double* u, float* g_wp) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) suffix_ray(a, ray, u, g_wp);
}
__global__ void blurred_forward_kernel(const InterlevelArgs a, const double* cy, const double* g, float* loss,
                                       float* dwp) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) blurred_forward_ray(a, ray, cy, g, loss, dwp);
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

cudaError_t interlevel_forward(const InterlevelArgs& a, double* cy, double* g, float* loss, float* dwp,
                               cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    const unsigned int blocks = num_blocks(a.n_rays);
    if (a.blur) {
        prefix_kernel<<<blocks, kThreads, 0, stream>>>(a.t, a.w, a.off, a.n_rays, true, cy, g);
        blurred_forward_kernel<<<blocks, kThreads, 0, stream>>>(a, cy, g, loss, dwp);
    } else {
        prefix_kernel<<<blocks, kThreads, 0, stream>>>(a.tp, a.wp, a.offp, a.n_rays, false, cy, nullptr);
        outer_forward_kernel<<<blocks, kThreads, 0, stream>>>(a, cy, loss);
    }
    return last_launch_error();
}

cudaError_t interlevel_outer_backward(const InterlevelArgs& a, const float* g_loss, double* cy, double* u,
                                      float* g_wp, cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    const unsigned int blocks = num_blocks(a.n_rays);
    prefix_kernel<<<blocks, kThreads, 0, stream>>>(a.tp, a.wp, a.offp, a.n_rays, false, cy, nullptr);
    outer_scatter_kernel<<<blocks, kThreads, 0, stream>>>(a, g_loss, cy, u);
    suffix_kernel<<<blocks, kThreads, 0, stream>>>(a, u, g_wp);
    return last_launch_error();
}

}  // namespace rfk
