// Runs the per-ray bodies of csrc/volrend/kernels.cu on the CPU (a loop over rays instead of a grid), so the
// CUDA backend's arithmetic is tested on machines without a GPU. Built by tests/helpers/cuda_host.py.
#include "volrend/kernels.cu"

namespace {
rfk::CompositeArgs args(const float* sigma, const float* delta, const float* tmid, const float* color,
                        const int64_t* offsets, int64_t n_rays, int C, float eps, float tau_max) {
    return rfk::CompositeArgs{sigma, delta, tmid, color, offsets, n_rays, C, eps, tau_max};
}
}  // namespace

extern "C" {

void host_composite_forward(const float* sigma, const float* delta, const float* tmid, const float* color,
                            const int64_t* offsets, int64_t n_rays, int C, float eps, float tau_max, float* rgb,
                            float* depth, float* opacity, float* weight, float* trans) {
    const auto a = args(sigma, delta, tmid, color, offsets, n_rays, C, eps, tau_max);
    for (int64_t r = 0; r < n_rays; ++r) rfk::composite_forward_ray(a, r, rgb, depth, opacity, weight, trans);
}

void host_composite_backward(const float* sigma, const float* delta, const float* tmid, const float* color,
                             const int64_t* offsets, int64_t n_rays, int C, float eps, float tau_max,
                             const float* g_rgb, const float* g_depth, const float* g_opacity, const float* g_weight,
                             const float* g_trans, const float* rgb, const float* depth, const float* opacity,
                             float* g_sigma, float* g_delta, float* g_tmid, float* g_color) {
    const auto a = args(sigma, delta, tmid, color, offsets, n_rays, C, eps, tau_max);
    for (int64_t r = 0; r < n_rays; ++r)
        rfk::composite_backward_ray(a, r, g_rgb, g_depth, g_opacity, g_weight, g_trans, rgb, depth, opacity, g_sigma,
                                    g_delta, g_tmid, g_color);
}

void host_distortion(int backward, const float* w, const float* m, const float* d, const int64_t* offsets,
                     int64_t n_rays, float* loss, const float* g_loss, float* g_w, float* g_m, float* g_d) {
    for (int64_t r = 0; r < n_rays; ++r) {
        if (backward)
            rfk::distortion_ray<true>(w, m, d, offsets, r, loss, g_loss, g_w, g_m, g_d);
        else
            rfk::distortion_ray<false>(w, m, d, offsets, r, loss, g_loss, g_w, g_m, g_d);
    }
}
}
