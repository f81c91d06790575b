// PixelNeRF feature gather launchers (torch-free): project points into V cameras, bilinearly sample
// channels-last feature maps, optionally reduce across views. All float buffers float32, contiguous.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

// Reduction codes across views: REDUCE_NONE, _MEAN, _MEAN_VAR, _MAX of rfkernels/gather/contract.py
// (tests/rfkernels/gather/test_constants.py checks both sides agree).
enum GatherReduce : int { kGatherNone = 0, kGatherMean = 1, kGatherMeanVar = 2, kGatherMax = 3 };

// Floats per packed camera (CAM_STRIDE of rfkernels/gather/contract.py): [0, 12) world->camera [R|t]
// (opencv, row-major 3x4), [12, 18) the first two rows of K_feat.
constexpr int kGatherCamStride = 18;
constexpr int kGatherCamK = 12;  // offset of K_feat's first row in a packed camera

struct GatherArgs {
    const float* points;  // [B, N, 3] world points
    const float* feat;    // [B, V, H, W, C] channels-last feature maps
    const float* cams;    // [B, V, kGatherCamStride]: world->camera [R|t], first two rows of K_feat;
                          // K_feat mapping camera coords to feature pixels with centres at integers
    int64_t batch;        // B
    int64_t n_points;     // N
    int views;            // V
    int channels;         // C
    int height, width;    // H, W of the feature maps
    float near_eps;       // valid iff depth z > near_eps (and inside the image)
    int reduce;           // GatherReduce
};

// Outputs: out [B,N,V,C] (none) | [B,N,C] (mean, max) | [B,N,2C] (mean_var = [mean, var]);
// mask [B,N,V] (0/1); cam_out [B,N,V,3] camera coords or null; argmax [B,N,C] (max only, -1 = none).
cudaError_t gather_forward(const GatherArgs& a, float* out, uint8_t* mask, float* cam_out, int32_t* argmax,
                           cudaStream_t stream);

// Inputs: g_out (shaped like out), g_cam [B,N,V,3] or null, out (mean_var: the saved mean), the
// saved mask and argmax. Outputs: the feature-map gradient [B,V,H,W,C], accumulated with atomics
// (zero it first) either in float (g_feat) or, deterministically, in int64 fixed point (g_fixed,
// addends trunc(value * *fixed_scale), fixed_scale a device pointer to a power of two; g_feat is
// then null); and g_points [B,N,3] or null (written, not accumulated).
cudaError_t gather_backward(const GatherArgs& a, const float* g_out, const float* g_cam, const float* out,
                            const uint8_t* mask, const int32_t* argmax, float* g_feat, int64_t* g_fixed,
                            const float* fixed_scale, float* g_points, cudaStream_t stream);

}  // namespace rfk
