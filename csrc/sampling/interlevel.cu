// Interlevel (proposal) loss kernels: mip-NeRF 360's outer loss and Zip-NeRF's blurred loss on packed
// histograms. Torch-free; launched from sampling/bind.cpp. The per-ray passes run one team of W lanes per
// ray (common/team.cuh): the prefix masses (and their integral) and the gradient suffix sums are float64
// shuffle scans carried across chunks (float64: see rfkernels/sampling/triton_interlevel.py), the loss terms
// are spread over the lanes and summed over the team. The adjoint scatter of the outer loss stays one thread
// per ray: several of a ray's fine intervals add into the same proposal slot, and one thread keeps that
// float64 accumulation free of atomics and deterministic. The bodies are __host__ __device__ so
// tests/rfkernels/sampling/host.cu runs them on the CPU. Formulas: rfkernels/sampling/reference.py.
#include "common/team.cuh"
#include "sampling/kernels.h"
#include "sampling/span_search.cuh"

namespace rfk {
namespace sampling_detail {  // per-ray bodies, host+device (tests/rfkernels/sampling/host.cu)

// Histogram (t, w) of ray `ray`: cy = [0, cumsum(w)] (positive-width bins only when blurred) and,
// when blurred, g = the integral of its CDF at the edges.
template <int W>
RFK_HD void prefix_ray(const Team<W>& team, const float* __restrict__ t_all, const float* __restrict__ w_all,
                       const int64_t* off, int64_t ray, bool blurred, double* __restrict__ cy, double* __restrict__ g) {
    using Lanes = typename Team<W>::template Lanes<double>;
    const RaySpan s = ray_span(off, ray);
    const float* t = t_all + s.edge;
    const float* w = w_all + s.start;
    double* c = cy + s.edge;
    double* G = blurred ? g + s.edge : nullptr;
    team.once([&] {
        c[0] = 0.0;
        if (blurred) G[0] = 0.0;
    });
    double run = 0.0, run_g = 0.0;  // prefixes in front of the chunk
    for (int base = 0; base < s.n; base += W) {
        Lanes wi, width;
        team.each([&](int l) {
            const int i = base + l;
            wi[l] = i < s.n ? static_cast<double>(w[i]) : 0.0;
            width[l] = i < s.n && blurred ? static_cast<double>(t[i + 1]) - static_cast<double>(t[i]) : 0.0;
            if (blurred && !(width[l] > 0.0)) wi[l] = 0.0;
        });
        const Lanes incl = team.inclusive_scan(wi);
        if (blurred) {
            const Lanes excl = team.shift_up(incl, 0.0);
            Lanes area;  // integral of the CDF over bin i
            team.each([&](int l) { area[l] = width[l] * ((run + excl[l]) + 0.5 * wi[l]); });
            const Lanes area_incl = team.inclusive_scan(area);
            team.each([&](int l) {
                if (base + l < s.n) G[base + l + 1] = run_g + area_incl[l];
            });
            run_g += team.last(area_incl);
        }
        team.each([&](int l) {
            if (base + l < s.n) c[base + l + 1] = run + incl[l];
        });
        run += team.last(incl);
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

template <int W>
RFK_HD void outer_forward_ray(const Team<W>& team, const InterlevelArgs& a, int64_t ray, const double* __restrict__ cy,
                              float* __restrict__ loss) {
    const RaySpan s = ray_span(a.off, ray);
    const Hist p = hist_of(a.tp, a.wp, a.offp, ray, cy, nullptr);
    auto acc = Team<W>::fill(0.0);
    for (int base = 0; base < s.n; base += W)
        team.each([&](int l) {
            const int j = base + l;
            if (j >= s.n) return;
            int lo, hi;
            const double w = a.w[s.start + j];
            const double e = fmax(w - outer_mass(p, a.t[s.edge + j], a.t[s.edge + j + 1], &lo, &hi), 0.0);
            acc[l] += e * e / (w + static_cast<double>(a.eps));
        });
    const double total = team.sum(acc);
    team.once([&] { loss[ray] = static_cast<float>(total); });
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

// grad wp_k = sum of the slots >= k: a scan over lanes running down the ray (lane l on slot top - 1 - l).
template <int W>
RFK_HD void suffix_ray(const Team<W>& team, const InterlevelArgs& a, int64_t ray, const double* __restrict__ u,
                       float* __restrict__ g_wp) {
    const RaySpan s = ray_span(a.offp, ray);
    double carry = 0.0;  // slots above the chunk
    for (int top = s.n; top > 0; top -= W) {
        typename Team<W>::template Lanes<double> x;
        team.each([&](int l) { x[l] = top - 1 - l >= 0 ? u[s.start + top - 1 - l] : 0.0; });
        const auto incl = team.inclusive_scan(x);
        team.each([&](int l) {
            if (top - 1 - l >= 0) g_wp[s.start + top - 1 - l] = static_cast<float>(carry + incl[l]);
        });
        carry += team.last(incl);
    }
}

// Per proposal bin k: Wb_k = blurred fine mass on [tp_k, tp_{k+1}] (>= 0); loss += max(0, Wb_k -
// wp_k)^2 / (wp_k + eps); dwp_k = d loss / d wp_k (Wb does not depend on wp).
template <int W>
RFK_HD void blurred_forward_ray(const Team<W>& team, const InterlevelArgs& a, int64_t ray,
                                const double* __restrict__ cy, const double* __restrict__ g, float* __restrict__ loss,
                                float* __restrict__ dwp) {
    const RaySpan s = ray_span(a.offp, ray);
    const Hist f = hist_of(a.t, a.w, a.off, ray, cy, g);
    const float* tp = a.tp + s.edge;
    const double r = a.blur[ray], eps = a.eps;
    auto acc = Team<W>::fill(0.0);
    for (int base = 0; base < s.n; base += W)
        team.each([&](int l) {
            const int k = base + l;
            if (k >= s.n) return;
            const double wb = fmax(blurred_cdf(f, tp[k + 1], r) - blurred_cdf(f, tp[k], r), 0.0);
            const double wp = a.wp[s.start + k];
            const double e = fmax(wb - wp, 0.0), den = wp + eps;
            acc[l] += e * e / den;
            dwp[s.start + k] = static_cast<float>(-2.0 * e / den - e * e / (den * den));
        });
    const double total = team.sum(acc);
    team.once([&] { loss[ray] = static_cast<float>(total); });
}

}  // namespace sampling_detail

namespace {
using namespace sampling_detail;

template <int W>
__global__ void prefix_kernel(const float* t, const float* w, const int64_t* off, int64_t n_rays, bool blurred,
                              double* cy, double* g) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < n_rays) prefix_ray(team, t, w, off, ray, blurred, cy, g);
}
template <int W>
__global__ void outer_forward_kernel(const InterlevelArgs a, const double* cy, float* loss) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) outer_forward_ray(team, a, ray, cy, loss);
}
__global__ void outer_scatter_kernel(const InterlevelArgs a, const float* g_loss, const double* cy, double* u) {
    const int64_t ray = thread_index();
    if (ray < a.n_rays) outer_scatter_ray(a, ray, g_loss, cy, u);
}
template <int W>
__global__ void suffix_kernel(const InterlevelArgs a, const double* u, float* g_wp) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) suffix_ray(team, a, ray, u, g_wp);
}
template <int W>
__global__ void blurred_forward_kernel(const InterlevelArgs a, const double* cy, const double* g, float* loss,
                                       float* dwp) {
    int64_t ray;
    const auto team = Team<W>::of_thread(&ray);
    if (ray < a.n_rays) blurred_forward_ray(team, a, ray, cy, g, loss, dwp);
}

}  // namespace

cudaError_t interlevel_forward(const InterlevelArgs& a, double* cy, double* g, float* loss, float* dwp,
                               cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    const int fine = team_width(a.n_fine, a.n_rays), prop = team_width(a.n_prop, a.n_rays);
    if (a.blur) {
        with_team_width(fine, [&](auto width) {
            constexpr int W = decltype(width)::value;
            prefix_kernel<W><<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a.t, a.w, a.off, a.n_rays, true, cy, g);
        });
        with_team_width(prop, [&](auto width) {
            constexpr int W = decltype(width)::value;
            blurred_forward_kernel<W><<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a, cy, g, loss, dwp);
        });
    } else {
        with_team_width(prop, [&](auto width) {
            constexpr int W = decltype(width)::value;
            prefix_kernel<W>
                <<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a.tp, a.wp, a.offp, a.n_rays, false, cy, nullptr);
        });
        with_team_width(fine, [&](auto width) {
            constexpr int W = decltype(width)::value;
            outer_forward_kernel<W><<<team_blocks<W>(a.n_rays), kThreads, 0, stream>>>(a, cy, loss);
        });
    }
    return last_launch_error();
}

cudaError_t interlevel_outer_backward(const InterlevelArgs& a, const float* g_loss, double* cy, double* u, float* g_wp,
                                      cudaStream_t stream) {
    if (a.n_rays == 0) return cudaSuccess;
    with_team_width(team_width(a.n_prop, a.n_rays), [&](auto width) {
        constexpr int W = decltype(width)::value;
        const unsigned int blocks = team_blocks<W>(a.n_rays);
        prefix_kernel<W><<<blocks, kThreads, 0, stream>>>(a.tp, a.wp, a.offp, a.n_rays, false, cy, nullptr);
        outer_scatter_kernel<<<num_blocks(a.n_rays), kThreads, 0, stream>>>(a, g_loss, cy, u);
        suffix_kernel<W><<<blocks, kThreads, 0, stream>>>(a, u, g_wp);
    });
    return last_launch_error();
}

}  // namespace rfk
