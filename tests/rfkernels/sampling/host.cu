// Runs the per-ray / per-sample bodies of csrc/sampling/kernels.cu and csrc/sampling/interlevel.cu on the CPU
// (loops instead of grids), so the CUDA backend's arithmetic is tested on machines without a GPU.
// Built by tests/helpers/cuda_host.py.
#include "sampling/interlevel.cu"
#include "sampling/kernels.cu"

using namespace rfk::sampling_detail;

extern "C" {

void host_sample_pdf(const float* bins, const float* weights, const int64_t* offsets, int64_t n_rays,
                     const float* jitter, int jitter_mode, int n_samples, int return_edges, float padding,
                     const float* blur, float* cdf, float* kx, float* kp, float* kf, float* out) {
    rfk::SampleArgs a{bins, weights, offsets, n_rays, jitter, jitter_mode, n_samples, return_edges != 0, padding, blur};
    for (int64_t r = 0; r < n_rays; ++r) cdf_ray(a, r, cdf);
    if (blur) {
        for (int64_t r = 0; r < n_rays; ++r) knots_ray(a, r, cdf, kx, kp);
        for (int64_t r = 0; r < n_rays; ++r) knot_cdf_ray(a, r, kx, kp, kf);
    }
    const int64_t n_items = n_rays * (return_edges ? n_samples + 1 : n_samples);
    for (int64_t i = 0; i < n_items; ++i) invert_item(a, i, cdf, kx, kp, kf, out);
}

void host_interlevel_forward(const float* t, const float* w, const int64_t* off, const float* tp, const float* wp,
                             const int64_t* offp, int64_t n_rays, const float* blur, float eps, double* cy, double* g,
                             float* loss, float* dwp) {
    rfk::InterlevelArgs a{t, w, off, tp, wp, offp, n_rays, blur, eps};
    if (blur) {
        for (int64_t r = 0; r < n_rays; ++r) prefix_ray(t, w, off, r, true, cy, g);
        for (int64_t r = 0; r < n_rays; ++r) blurred_forward_ray(a, r, cy, g, loss, dwp);
    } else {
        for (int64_t r = 0; r < n_rays; ++r) prefix_ray(tp, wp, offp, r, false, cy, nullptr);
        for (int64_t r = 0; r < n_rays; ++r) outer_forward_ray(a, r, cy, loss);
    }
}

void host_interlevel_outer_backward(const float* t, const float* w, const int64_t* off, const float* tp,
                                    const float* wp, const int64_t* offp, int64_t n_rays, float eps,
                                    const float* g_loss, double* cy, double* u, float* g_wp) {
    rfk::InterlevelArgs a{t, w, off, tp, wp, offp, n_rays, nullptr, eps};
    for (int64_t r = 0; r < n_rays; ++r) prefix_ray(tp, wp, offp, r, false, cy, nullptr);
    for (int64_t r = 0; r < n_rays; ++r) outer_scatter_ray(a, r, g_loss, cy, u);
    for (int64_t r = 0; r < n_rays; ++r) suffix_ray(a, r, u, g_wp);
}
}
