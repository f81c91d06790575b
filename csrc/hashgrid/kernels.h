// Multiresolution hash-grid encoding launchers (torch-free). Layout and index formula: see
// rfkernels/hashgrid/layout.py (tiny-cuda-nn's HashGrid). Points are float32 [N, D] (clamped to
// [0, 1] in the kernels), the table is float32 or float16 [n_params]. Features (and their gradient)
// are float32, float16 or bfloat16 (out_dtype), point-major [N, L*F] or feature-major [L*F, N]
// (out_feature_major; rfkernels/hashgrid/output.py); the kernels compute in float32.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

constexpr int kHashGridMaxLevels = 32;
constexpr int kHashGridMaxDims = 4;

// Per-level metadata, passed by value to the kernels (level = blockIdx.y).
struct HashGridLevels {
    int64_t offset[kHashGridMaxLevels];                     // first table entry (rows of F features)
    uint32_t size[kHashGridMaxLevels];                      // entries in the level
    float scale[kHashGridMaxLevels];                        // cells per unit length
    uint32_t stride[kHashGridMaxLevels][kHashGridMaxDims];  // dense strides (uint32, tcnn's loop)
    uint32_t hashed[kHashGridMaxLevels];                    // 1: spatial hash, 0: dense strides
};

// Level `l`'s metadata from the per-level lists the Python layout computes (strides: L x kHashGridMaxDims).
inline void set_level(HashGridLevels& levels, int l, int64_t offset, int64_t size, double scale, int64_t hashed,
                      const int64_t* strides) {
    levels.offset[l] = offset;
    levels.size[l] = static_cast<uint32_t>(size);
    levels.scale[l] = static_cast<float>(scale);
    levels.hashed[l] = hashed ? 1u : 0u;
    for (int d = 0; d < kHashGridMaxDims; ++d) levels.stride[l][d] = static_cast<uint32_t>(strides[d]);
}

// dtype of the features' buffers (out, g_out, gg_out).
enum HashGridOutDtype : int { kOutFloat32 = 0, kOutFloat16 = 1, kOutBFloat16 = 2 };

struct HashGridArgs {
    const float* points;   // [N, D]
    const void* table;     // [n_params] float or __half (table_half)
    const float* scales;   // [N] Zip-NeRF std per point, or null
    int64_t n_points;      // N
    int n_dims;            // D in 1..4
    int n_levels;          // L <= kHashGridMaxLevels
    int n_features;        // F in {1, 2, 4, 8}
    bool table_half;
    bool smoothstep;
    float aa_z_max;        // anti-aliasing factor is exactly 1 where 1/(sqrt(8) s scale) >= aa_z_max
    bool out_feature_major;  // features stored [L*F, N] (else [N, L*F])
    int out_dtype;           // HashGridOutDtype of the features' buffers
    HashGridLevels levels;
};

// out: the features' buffer (level-major columns; layout and dtype from a).
cudaError_t hashgrid_forward(const HashGridArgs& a, void* out, cudaStream_t stream);

// g_out: the features' gradient (same layout and dtype as out). Optional outputs (null = not needed),
// zero-initialised by the caller, accumulated with atomics: g_points [N, D] and g_scales [N] float32;
// the table gradient [n_params]: float tables -> g_table (float32, one vector reduction per 2 or 4
// features on sm_90); half tables -> g_table_half (__half, one half2 reduction per feature pair,
// tiny-cuda-nn's scheme) for hashed levels, and g_table (float32, indexed like the table) for dense
// levels, whose few entries each receive many contributions (the caller casts that part).
cudaError_t hashgrid_backward(const HashGridArgs& a, const void* g_out, float* g_table, void* g_table_half,
                              float* g_points, float* g_scales, cudaStream_t stream);

// Deterministic backward of levels [level_base, level_base + n_levels), no atomics. Per level slot
// s = level - level_base: emit_rows/emit_w [n_levels, N, 2^D] get each corner's global table row and
// weight (times the anti-aliasing factor), or are both null; g_points [n_levels, N, D] and g_scales
// [n_levels, N] get per-level partial gradients (or are null). The caller reduces them in order.
cudaError_t hashgrid_backward_levels(const HashGridArgs& a, const void* g_out, int level_base, int n_levels,
                                     int64_t* emit_rows, float* emit_w, float* g_points, float* g_scales,
                                     cudaStream_t stream);

// Double backward (backward of the point gradient): g_out (the features' gradient) and tangent [N, D]
// (the incoming gradient of g_points) -> gg_out (g_out's layout and dtype, stored), g_table [n_params]
// float32, g_points [N, D], g_scales [N] (zero-initialised, atomics); null outputs are skipped.
cudaError_t hashgrid_double_backward(const HashGridArgs& a, const void* g_out, const float* tangent, void* gg_out,
                                     float* g_table, float* g_points, float* g_scales, cudaStream_t stream);

}  // namespace rfk
