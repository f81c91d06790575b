// Runs the per-ray team bodies of csrc/volrend/kernels.cu on the CPU (a loop over rays instead of a grid; each
// call runs a whole team: common/team.cuh replays the lanes and their shuffles), so the CUDA backend's chunked
// algorithm is tested on machines without a GPU. `width` is the team width (8, 16, 32), or 0 for the one the
// launcher picks from the samples per ray. Built by tests/helpers/cuda_host.py.
#include "volrend/kernels.cu"

namespace {
rfk::CompositeArgs args(const float* sigma, const float* delta, const float* tmid, const float* color,
                        const int64_t* offsets, int64_t n_rays, int64_t n_samples, int C, float eps, float tau_max) {
    return rfk::CompositeArgs{sigma, delta, tmid, color, offsets, n_rays, n_samples, C, eps, tau_max};
}

int width_or_default(int width, int64_t n_samples, int64_t n_rays) {
    return width ? width : rfk::team_width(n_samples, n_rays);
}
}  // namespace

extern "C" {

int host_team_width(int64_t n_samples, int64_t n_rays) { return rfk::team_width(n_samples, n_rays); }

void host_composite_forward(int width, const float* sigma, const float* delta, const float* tmid, const float* color,
                            const int64_t* offsets, int64_t n_rays, int64_t n_samples, int C, float eps, float tau_max,
                            float* rgb, float* depth, float* opacity, float* weight, float* trans) {
    const auto a = args(sigma, delta, tmid, color, offsets, n_rays, n_samples, C, eps, tau_max);
    rfk::with_team_width(width_or_default(width, n_samples, n_rays), [&](auto w) {
        const rfk::Team<decltype(w)::value> team{};
        for (int64_t r = 0; r < n_rays; ++r) rfk::composite_forward_ray(team, a, r, rgb, depth, opacity, weight, trans);
    });
}

void host_composite_backward(int width, const float* sigma, const float* delta, const float* tmid, const float* color,
                             const int64_t* offsets, int64_t n_rays, int64_t n_samples, int C, float eps, float tau_max,
                             const float* g_rgb, const float* g_depth, const float* g_opacity, const float* g_weight,
                             const float* g_trans, const float* rgb, const float* depth, const float* opacity,
                             float* g_sigma, float* g_delta, float* g_tmid, float* g_color) {
    const auto a = args(sigma, delta, tmid, color, offsets, n_rays, n_samples, C, eps, tau_max);
    rfk::with_team_width(width_or_default(width, n_samples, n_rays), [&](auto w) {
        const rfk::Team<decltype(w)::value> team{};
        for (int64_t r = 0; r < n_rays; ++r)
            rfk::composite_backward_ray(team, a, r, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity,
                                        g_sigma, g_delta, g_tmid, g_color);
    });
}

void host_distortion(int width, int backward, const float* w, const float* m, const float* d, const int64_t* offsets,
                     int64_t n_rays, int64_t n_samples, float* loss, const float* g_loss, float* g_w, float* g_m,
                     float* g_d) {
    rfk::with_team_width(width_or_default(width, n_samples, n_rays), [&](auto width_c) {
        constexpr int W = decltype(width_c)::value;
        const rfk::Team<W> team{};
        for (int64_t r = 0; r < n_rays; ++r) {
            if (backward)
                rfk::distortion_ray<W, true>(team, w, m, d, offsets, r, loss, g_loss, g_w, g_m, g_d);
            else
                rfk::distortion_ray<W, false>(team, w, m, d, offsets, r, loss, g_loss, g_w, g_m, g_d);
        }
    });
}
}
