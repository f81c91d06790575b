// Runs the per-ray team bodies of csrc/sampling/kernels.cu and csrc/sampling/interlevel.cu on the CPU (loops
// over rays instead of grids; each call runs a whole team: common/team.cuh replays the lanes and their
// shuffles), so the CUDA backend's chunked algorithm is tested on machines without a GPU. `width` is the team
// width (8, 16, 32) of every pass, or 0 for the ones the launchers pick. Built by tests/helpers/cuda_host.py.
#include "sampling/interlevel.cu"
#include "sampling/kernels.cu"

using namespace rfk::sampling_detail;

namespace {
// Runs body(team) for every ray with a team of `width` lanes (0: rfk::team_width(n_items, n_rays)).
template <class F>
void for_each_ray(int width, int64_t n_items, int64_t n_rays, F body) {
    rfk::with_team_width(width ? width : rfk::team_width(n_items, n_rays), [&](auto w) {
        const rfk::Team<decltype(w)::value> team{};
        for (int64_t r = 0; r < n_rays; ++r) body(team, r);
    });
}
}  // namespace

extern "C" {

void host_sample_pdf(int width, const float* bins, const float* weights, const int64_t* offsets, int64_t n_rays,
                     int64_t n_bins, const float* jitter, int jitter_mode, int n_samples, int return_edges,
                     float padding, const float* blur, float* cdf, float* kx, float* kp, float* kf, float* out) {
    rfk::SampleArgs a{bins,        weights,   offsets,           n_rays,  n_bins, jitter,
                      jitter_mode, n_samples, return_edges != 0, padding, blur};
    for_each_ray(width, n_bins, n_rays, [&](const auto& team, int64_t r) { cdf_ray(team, a, r, cdf); });
    if (blur) {
        for_each_ray(width, n_bins, n_rays, [&](const auto& team, int64_t r) { knots_ray(team, a, r, cdf, kx, kp); });
        for_each_ray(width, n_bins, n_rays, [&](const auto& team, int64_t r) { knot_cdf_ray(team, a, r, kx, kp, kf); });
    }
    for_each_ray(width, n_rays * n_samples, n_rays,
                 [&](const auto& team, int64_t r) { invert_ray(team, a, r, cdf, kx, kp, kf, out); });
}

void host_interlevel_forward(int width, const float* t, const float* w, const int64_t* off, const float* tp,
                             const float* wp, const int64_t* offp, int64_t n_rays, int64_t n_fine, int64_t n_prop,
                             const float* blur, float eps, double* cy, double* g, float* loss, float* dwp) {
    rfk::InterlevelArgs a{t, w, off, tp, wp, offp, n_rays, n_fine, n_prop, blur, eps};
    if (blur) {
        for_each_ray(width, n_fine, n_rays,
                     [&](const auto& team, int64_t r) { prefix_ray(team, t, w, off, r, true, cy, g); });
        for_each_ray(width, n_prop, n_rays,
                     [&](const auto& team, int64_t r) { blurred_forward_ray(team, a, r, cy, g, loss, dwp); });
    } else {
        for_each_ray(width, n_prop, n_rays,
                     [&](const auto& team, int64_t r) { prefix_ray(team, tp, wp, offp, r, false, cy, nullptr); });
        for_each_ray(width, n_fine, n_rays,
                     [&](const auto& team, int64_t r) { outer_forward_ray(team, a, r, cy, loss); });
    }
}

void host_interlevel_outer_backward(int width, const float* t, const float* w, const int64_t* off, const float* tp,
                                    const float* wp, const int64_t* offp, int64_t n_rays, int64_t n_fine,
                                    int64_t n_prop, float eps, const float* g_loss, double* cy, double* u,
                                    float* g_wp) {
    rfk::InterlevelArgs a{t, w, off, tp, wp, offp, n_rays, n_fine, n_prop, nullptr, eps};
    for_each_ray(width, n_prop, n_rays,
                 [&](const auto& team, int64_t r) { prefix_ray(team, tp, wp, offp, r, false, cy, nullptr); });
    for (int64_t r = 0; r < n_rays; ++r) outer_scatter_ray(a, r, g_loss, cy, u);
    for_each_ray(width, n_prop, n_rays, [&](const auto& team, int64_t r) { suffix_ray(team, a, r, u, g_wp); });
}
}
