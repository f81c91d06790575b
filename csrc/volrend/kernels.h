// Volume-rendering launchers (torch-free). Packed rays: ray r owns samples [offsets[r], offsets[r+1]).
// All float buffers are float32 and contiguous; optional inputs may be null (tmid, colors, g_*).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

struct CompositeArgs {
    const float* sigma;    // [N]
    const float* delta;    // [N]
    const float* tmid;     // [N] or null (no depth)
    const float* color;    // [N, C] or null
    const int64_t* offsets;  // [R + 1]
    int64_t n_rays;
    int64_t n_samples;     // N (the mean samples per ray picks the team width: common/team.cuh)
    int channels;          // C
    float eps;             // transmittance early-stop threshold (0 = off)
    float tau_max;         // optical depth clamp
};

// Outputs: rgb [R, C], depth [R], opacity [R], weight [N], trans [N] (or null: not written).
cudaError_t composite_forward(const CompositeArgs& a, float* rgb, float* depth, float* opacity, float* weight,
                              float* trans, cudaStream_t stream);

// Inputs: grads of the outputs (g_rgb [R, C] or null, g_depth [R], g_opacity [R], g_weight [N] or
// null, g_trans [N] or null) and the saved outputs rgb/depth/opacity. Outputs: g_sigma, g_delta
// [N], g_tmid [N] (if tmid), g_color [N, C] (if color).
cudaError_t composite_backward(const CompositeArgs& a, const float* g_rgb, const float* g_depth, const float* g_opacity,
                               const float* g_weight, const float* g_trans, const float* rgb, const float* depth,
                               const float* opacity, float* g_sigma, float* g_delta, float* g_tmid, float* g_color,
                               cudaStream_t stream);

// Distortion loss per ray (loss [R]) and its backward (g_w, g_m, g_d [N]); n_samples = N.
cudaError_t distortion_forward(const float* w, const float* m, const float* d, const int64_t* offsets, int64_t n_rays,
                               int64_t n_samples, float* loss, cudaStream_t stream);
cudaError_t distortion_backward(const float* g_loss, const float* w, const float* m, const float* d,
                                const int64_t* offsets, int64_t n_rays, int64_t n_samples, float* g_w, float* g_m,
                                float* g_d, cudaStream_t stream);

}  // namespace rfk
