// Occupancy-grid ray marching launchers (torch-free): ray/box intersection and the traversal of
// multi-level binary grids (the rule: rfkernels/occgrid/contract.py). Float buffers float32, contiguous.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

constexpr int kOccgridMaxLevels = 8;     // MAX_LEVELS of rfkernels/occgrid/contract.py
constexpr float kOccgridDdaEps = 1e-6f;  // DDA_EPS
constexpr float kOccgridDtMax = 1e10f;   // DT_MAX

struct OccgridArgs {
    const float* rays_o;      // [R, 3]
    const float* rays_d;      // [R, 3]
    const uint8_t* binaries;  // [L, X, Y, Z] occupancy (0/1)
    const float* aabbs;       // [L, 6] xmin, ymin, zmin, xmax, ymax, zmax
    const float* near;        // [R] where the march starts
    const float* far;         // [R] where it ends (may be inf)
    const uint8_t* rays_mask;  // [R] 0 = skip the ray
    int64_t n_rays;           // R
    int levels;               // L (1..kOccgridMaxLevels)
    int res[3];               // X, Y, Z
    float step_size;          // > 0
    float cone_angle;         // >= 0
    int64_t max_steps;        // intervals per ray at most; <= 0: no limit
};

// t_mins/t_maxs [R, M] (miss where missed), hits [R, M] (0/1) for M boxes.
cudaError_t occgrid_intersect(const float* rays_o, const float* rays_d, const float* aabbs, int64_t n_rays, int n_boxes,
                              float near, float far, float miss, float* t_mins, float* t_maxs, uint8_t* hits,
                              cudaStream_t stream);

// Count pass: counts [R] int64 intervals per ray and terminate [R] (where each march stopped).
cudaError_t occgrid_count(const OccgridArgs& a, int64_t* counts, float* terminate, cudaStream_t stream);

// Fill pass (same march): t_starts/t_ends [N] written at offsets [R + 1] (cumulative counts).
cudaError_t occgrid_fill(const OccgridArgs& a, const int64_t* offsets, float* t_starts, float* t_ends,
                         cudaStream_t stream);

}  // namespace rfk
