// Hash-grid encoding kernels: one thread per (point, level), level = blockIdx.y so that the blocks
// running together share one level's table in L2 (as tiny-cuda-nn). Templated on D, F and the
// table type; features are read as one aligned vector per corner. Torch-free; see hashgrid/kernels.h.
// The per-(point, level) bodies are __host__ __device__ (RFK_HD) so tests/rfkernels/hashgrid/host.cu
// can run them on the CPU; the kernels only compute (point, level) and call them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/common.cuh"
#include "hashgrid/kernels.h"

namespace rfk {
namespace {

// tcnn's "CoherentPrime" hash factors (a function: folds to constants in the unrolled loops).
RFK_HD constexpr uint32_t prime(int d) {
    return d == 0 ? 1u : d == 1 ? 2654435761u : d == 2 ? 805459861u : 3674653429u;
}
constexpr int kGridThreads = 128;

RFK_HD float to_float(float v) { return v; }
RFK_HD float to_float(__half v) { return __half2float(v); }

template <typename T, int F>
struct alignas(sizeof(T) * F) FeatureVec {
    T v[F];
};

// Element index of feature column `col` (level * F + k) of point i in the features' buffer.
RFK_HD int64_t out_at(const HashGridArgs& a, int64_t i, int col) {
    return a.out_feature_major ? static_cast<int64_t>(col) * a.n_points + i
                               : i * (static_cast<int64_t>(a.n_levels) * a.n_features) + col;
}

RFK_HD float load_out(const void* p, int64_t at, int dtype) {
    if (dtype == kOutFloat16) return __half2float(static_cast<const __half*>(p)[at]);
    if (dtype == kOutBFloat16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[at]);
    return static_cast<const float*>(p)[at];
}

// Rounds once, here (round to nearest even).
RFK_HD void store_out(void* p, int64_t at, float v, int dtype) {
    if (dtype == kOutFloat16)
        static_cast<__half*>(p)[at] = __float2half_rn(v);
    else if (dtype == kOutBFloat16)
        static_cast<__nv_bfloat16*>(p)[at] = __float2bfloat16_rn(v);
    else
        static_cast<float*>(p)[at] = v;
}

// p[k] += v[k] for the F features of one table entry (p aligned to the entry). sm_90: one float4
// (F % 4 == 0) or float2 (F == 2) vector reduction instead of F scalar ones; elsewhere (and in the
// host emulation) scalar atomics.
template <int F>
RFK_HD void add_features(float* p, const float (&v)[F]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (F % 4 == 0) {
#pragma unroll
        for (int k = 0; k < F; k += 4)
            atomicAdd(reinterpret_cast<float4*>(p + k), make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]));
    } else if constexpr (F == 2) {
        atomicAdd(reinterpret_cast<float2*>(p), make_float2(v[0], v[1]));
    } else
#endif
    {
#pragma unroll
        for (int k = 0; k < F; ++k) atomic_add(p + k, v[k]);
    }
}

// Half table gradient: one __half2 reduction per feature pair (a __half one for F == 1). Each value
// is rounded to half, then added with one rounding (the host emulation does the same in float).
template <int F>
RFK_HD void add_features(__half* p, const float (&v)[F]) {
    if constexpr (F == 1) {
#ifdef __CUDA_ARCH__
        atomicAdd(p, __float2half_rn(v[0]));
#else
        *p = __float2half_rn(__half2float(*p) + __half2float(__float2half_rn(v[0])));
#endif
    } else {
#pragma unroll
        for (int k = 0; k < F; k += 2) {
            const __half2 pair = __floats2half2_rn(v[k], v[k + 1]);
            __half2* q = reinterpret_cast<__half2*>(p + k);
#ifdef __CUDA_ARCH__
            atomicAdd(q, pair);
#else
            *q = __floats2half2_rn(__low2float(*q) + __low2float(pair), __high2float(*q) + __high2float(pair));
#endif
        }
    }
}

// Clamp one coordinate, locate its cell and interpolation weight (upper corner) + d weight / dx.
RFK_HD void locate(float x, float scale, bool smooth, uint32_t& cell, float& w1, float& dw, float& ddw) {
    const bool inside = x >= 0.f && x <= 1.f;
    const float pos = fminf(fmaxf(x, 0.f), 1.f) * scale + 0.5f;
    const float cellf = floorf(pos);
    const float t = pos - cellf;
    cell = static_cast<uint32_t>(static_cast<int>(cellf));
    w1 = smooth ? t * t * (3.f - 2.f * t) : t;
    dw = inside ? (smooth ? 6.f * t * (1.f - t) : 1.f) * scale : 0.f;
    ddw = inside && smooth ? (6.f - 12.f * t) * scale * scale : 0.f;  // second derivative (double backward)
}

template <int D>
RFK_HD uint32_t entry(const uint32_t (&v)[D], const HashGridLevels& lv, int level) {
    uint32_t index = 0;
    if (lv.hashed[level]) {
#pragma unroll
        for (int d = 0; d < D; ++d) index ^= v[d] * prime(d);
    } else {
#pragma unroll
        for (int d = 0; d < D; ++d) index += v[d] * lv.stride[level][d];
    }
    return index % lv.size[level];
}

// Zip-NeRF factor erf(z), z = 1 / (sqrt(8) s scale), and d factor / ds.
RFK_HD void aa_factor(float s, float scale, float z_max, float& factor, float& dfactor) {
    const float c = 0.35355339059327373f / scale;  // 1 / sqrt(8)
    if (s > c / z_max) {
        const float z = c / s;
        factor = erff(z);
        dfactor = -1.1283791670955126f * expf(-z * z) * z / s;  // 2 / sqrt(pi)
    } else {
        factor = 1.f;
        dfactor = 0.f;
    }
}

template <int D>
struct Cell {
    uint32_t cell[D];
    float w1[D], dw[D], ddw[D];
    RFK_HD Cell(const HashGridArgs& a, int64_t i, float scale) {
#pragma unroll
        for (int d = 0; d < D; ++d) locate(a.points[i * D + d], scale, a.smoothstep, cell[d], w1[d], dw[d], ddw[d]);
    }
    // Corner c: its vertex, its weight, and the per-axis factors of the weight.
    RFK_HD float corner(int c, uint32_t (&v)[D], float (&f)[D]) const {
        float w = 1.f;
#pragma unroll
        for (int d = 0; d < D; ++d) {
            const bool up = (c >> d) & 1;
            v[d] = cell[d] + (up ? 1u : 0u);
            f[d] = up ? w1[d] : 1.f - w1[d];
            w *= f[d];
        }
        return w;
    }
};

// Forward of point i at one level: out[i, level*F : (level+1)*F].
template <int D, int F, typename T>
RFK_HD void hashgrid_fwd_point(const HashGridArgs& a, int64_t i, int level, void* __restrict__ out) {
    const float scale = a.levels.scale[level];
    const Cell<D> cell(a, i, scale);
    const auto* table = reinterpret_cast<const FeatureVec<T, F>*>(a.table) + a.levels.offset[level];
    float acc[F] = {};
#pragma unroll
    for (int c = 0; c < (1 << D); ++c) {
        uint32_t v[D];
        float f[D];
        const float w = cell.corner(c, v, f);
        const FeatureVec<T, F> val = table[entry<D>(v, a.levels, level)];
#pragma unroll
        for (int k = 0; k < F; ++k) acc[k] += w * to_float(val.v[k]);
    }
    float factor = 1.f, dfactor;
    if (a.scales) aa_factor(a.scales[i], scale, a.aa_z_max, factor, dfactor);
#pragma unroll
    for (int k = 0; k < F; ++k) store_out(out, out_at(a, i, level * F + k), acc[k] * factor, a.out_dtype);
}

template <int D, int F, typename T>
__global__ void __launch_bounds__(kGridThreads) hashgrid_fwd_kernel(const HashGridArgs a, void* __restrict__ out) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < a.n_points) hashgrid_fwd_point<D, F, T>(a, i, blockIdx.y, out);
}

// Backward outputs. Atomic mode: the table gradient (g_table float32 [n_params], or for half tables
// g_table_half for hashed levels + g_table for dense ones, see kernels.h), g_points [N, D],
// g_scales [N] accumulated with atomics. Deterministic mode (det): levels [level_base, level_base + gridDim.y) write, per
// level slot, emit_rows/emit_w [n, N, 2^D] (global table row, weight * factor) and partial
// g_points [n, N, D] / g_scales [n, N]; the caller reduces them in a fixed order.
struct Grads {
    const void* g_out;
    float* g_table;
    __half* g_table_half;
    float* g_points;
    float* g_scales;
    int64_t* emit_rows;
    float* emit_w;
    int level_base;
    bool det;
};

RFK_HD void accumulate(float* p, float v, bool det) {
    if (det)
        *p = v;
    else
        atomic_add(p, v);
}

// Backward of point i at level slot (level = gr.level_base + slot).
template <int D, int F, typename T>
RFK_HD void hashgrid_bwd_point(const HashGridArgs& a, const Grads& gr, int64_t i, int slot) {
    const int level = slot + gr.level_base;
    const int64_t prow = gr.det ? i + slot * a.n_points : i;  // row of the point in the outputs
    const float scale = a.levels.scale[level];
    const Cell<D> cell(a, i, scale);
    const int64_t offset = a.levels.offset[level];
    const auto* table = reinterpret_cast<const FeatureVec<T, F>*>(a.table) + offset;
    float factor = 1.f, dfactor = 0.f;
    if (a.scales) aa_factor(a.scales[i], scale, a.aa_z_max, factor, dfactor);
    float g[F], gf[F];
#pragma unroll
    for (int k = 0; k < F; ++k) {
        g[k] = load_out(gr.g_out, out_at(a, i, level * F + k), a.out_dtype);
        gf[k] = g[k] * factor;
    }
    const bool half_grad = gr.g_table_half != nullptr && a.levels.hashed[level];
    const bool need_values = gr.g_points || gr.g_scales;
    float gx[D] = {};
    float feat[F] = {};
#pragma unroll
    for (int c = 0; c < (1 << D); ++c) {
        uint32_t v[D];
        float f[D];
        const float w = cell.corner(c, v, f);
        const uint32_t e = entry<D>(v, a.levels, level);
        if (gr.emit_rows) {
            gr.emit_rows[prow * (1 << D) + c] = offset + e;
            gr.emit_w[prow * (1 << D) + c] = w * factor;
        } else if (gr.g_table || half_grad) {
            float contrib[F];
#pragma unroll
            for (int k = 0; k < F; ++k) contrib[k] = w * gf[k];
            if (half_grad)
                add_features<F>(gr.g_table_half + (offset + e) * F, contrib);
            else
                add_features<F>(gr.g_table + (offset + e) * F, contrib);
        }
        if (need_values) {
            const FeatureVec<T, F> val = table[e];
            float dot = 0.f;
#pragma unroll
            for (int k = 0; k < F; ++k) {
                const float x = to_float(val.v[k]);
                dot += x * gf[k];
                feat[k] += w * x;
            }
#pragma unroll
            for (int d = 0; d < D; ++d) {
                float dwd = ((c >> d) & 1) ? cell.dw[d] : -cell.dw[d];
#pragma unroll
                for (int e2 = 0; e2 < D; ++e2)
                    if (e2 != d) dwd *= f[e2];
                gx[d] += dot * dwd;
            }
        }
    }
    if (gr.g_points)
#pragma unroll
        for (int d = 0; d < D; ++d) accumulate(gr.g_points + prow * D + d, gx[d], gr.det);
    if (gr.g_scales) {
        float dot = 0.f;
#pragma unroll
        for (int k = 0; k < F; ++k) dot += g[k] * feat[k];
        accumulate(gr.g_scales + prow, dot * dfactor, gr.det);
    }
}

template <int D, int F, typename T>
__global__ void __launch_bounds__(kGridThreads) hashgrid_bwd_kernel(const HashGridArgs a, const Grads gr) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < a.n_points) hashgrid_bwd_point<D, F, T>(a, gr, i, blockIdx.y);
}

// Double backward: inputs g_out and the incoming gradient (tangent) t [N, D] of the backward's point
// gradient g_x = sum_c (val_c . g factor) dW_c/dx. With G_d = t_d dW_c/dx_d (signed per corner):
// W'_c = sum_d G_d prod_{k != d} f_k; outputs (null = not needed): gg_out [N, L*F] = factor sum_c W'_c
// val_c (stored), g_table += W'_c g factor, g_points[e] += (val_c . g factor) sum_d t_d d2W_c/dx_d dx_e,
// g_scales += dfactor sum_c W'_c (val_c . g) (atomics).
struct DoubleGrads {
    const void* g_out;
    const float* tangent;
    void* gg_out;
    float* g_table;
    float* g_points;
    float* g_scales;
};

// Double backward of point i at one level.
template <int D, int F, typename T>
RFK_HD void hashgrid_dbl_point(const HashGridArgs& a, const DoubleGrads& gr, int64_t i, int level) {
    const float scale = a.levels.scale[level];
    const Cell<D> cell(a, i, scale);
    const int64_t offset = a.levels.offset[level];
    const auto* table = reinterpret_cast<const FeatureVec<T, F>*>(a.table) + offset;
    float factor = 1.f, dfactor = 0.f;
    if (a.scales) aa_factor(a.scales[i], scale, a.aa_z_max, factor, dfactor);
    float g[F], gf[F], t[D];
#pragma unroll
    for (int k = 0; k < F; ++k) {
        g[k] = load_out(gr.g_out, out_at(a, i, level * F + k), a.out_dtype);
        gf[k] = g[k] * factor;
    }
#pragma unroll
    for (int d = 0; d < D; ++d) t[d] = gr.tangent[i * D + d];
    const bool need_values = gr.gg_out || gr.g_points || gr.g_scales;
    float hx[D] = {};
    float acc[F] = {};
#pragma unroll
    for (int c = 0; c < (1 << D); ++c) {
        uint32_t v[D];
        float f[D], sdw[D], G[D];
        cell.corner(c, v, f);
        float wt = 0.f;
#pragma unroll
        for (int d = 0; d < D; ++d) {
            sdw[d] = ((c >> d) & 1) ? cell.dw[d] : -cell.dw[d];
            G[d] = t[d] * sdw[d];
        }
#pragma unroll
        for (int d = 0; d < D; ++d) {
            float p = G[d];
#pragma unroll
            for (int k = 0; k < D; ++k)
                if (k != d) p *= f[k];
            wt += p;
        }
        const uint32_t e = entry<D>(v, a.levels, level);
        if (gr.g_table) {
            float contrib[F];
#pragma unroll
            for (int k = 0; k < F; ++k) contrib[k] = wt * gf[k];
            add_features<F>(gr.g_table + (offset + e) * F, contrib);
        }
        if (need_values) {
            const FeatureVec<T, F> val = table[e];
            float dot = 0.f;
#pragma unroll
            for (int k = 0; k < F; ++k) {
                const float x = to_float(val.v[k]);
                dot += x * gf[k];
                acc[k] += wt * x;
            }
            if (gr.g_points) {
#pragma unroll
                for (int e2 = 0; e2 < D; ++e2) {
                    float diag = t[e2] * (((c >> e2) & 1) ? cell.ddw[e2] : -cell.ddw[e2]);
                    float cross = 0.f;
#pragma unroll
                    for (int d = 0; d < D; ++d) {
                        if (d == e2) continue;
                        float p = G[d];
#pragma unroll
                        for (int k = 0; k < D; ++k)
                            if (k != d && k != e2) p *= f[k];
                        cross += p;
                    }
#pragma unroll
                    for (int k = 0; k < D; ++k)
                        if (k != e2) diag *= f[k];
                    hx[e2] += dot * (diag + sdw[e2] * cross);
                }
            }
        }
    }
    if (gr.gg_out)
#pragma unroll
        for (int k = 0; k < F; ++k) store_out(gr.gg_out, out_at(a, i, level * F + k), acc[k] * factor, a.out_dtype);
    if (gr.g_points)
#pragma unroll
        for (int d = 0; d < D; ++d) atomic_add(gr.g_points + i * D + d, hx[d]);
    if (gr.g_scales) {
        float dot = 0.f;
#pragma unroll
        for (int k = 0; k < F; ++k) dot += g[k] * acc[k];
        atomic_add(gr.g_scales + i, dot * dfactor);
    }
}

// Minimum resident blocks of 128 threads per SM the double backward is compiled for: 8 caps it at 64
// registers (32 warps/SM, the irregular-gather occupancy target). Only the variants ptxas fits there
// without spilling get the cap; the wider ones (D = 4, or D = 3 with F >= 4) get 0, no minimum (ptxas'
// own choice; 1 would let it take more), as spilling per-corner values to local memory would cost more
// than the occupancy gains.
template <int D, int F>
constexpr int dbl_min_blocks() {
    return D <= 2 || (D == 3 && F <= 2) ? 8 : 0;
}

template <int D, int F, typename T>
__global__ void __launch_bounds__(kGridThreads, dbl_min_blocks<D, F>())
    hashgrid_dbl_kernel(const HashGridArgs a, const DoubleGrads gr) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i < a.n_points) hashgrid_dbl_point<D, F, T>(a, gr, i, blockIdx.y);
}

template <int D, int F, typename T>
cudaError_t launch(const HashGridArgs& a, void* out, const Grads* g, const DoubleGrads* dg, int n_levels,
                   cudaStream_t stream) {
    const dim3 blocks(num_blocks(a.n_points, kGridThreads), n_levels);
    if (dg != nullptr)
        hashgrid_dbl_kernel<D, F, T><<<blocks, kGridThreads, 0, stream>>>(a, *dg);
    else if (g != nullptr)
        hashgrid_bwd_kernel<D, F, T><<<blocks, kGridThreads, 0, stream>>>(a, *g);
    else
        hashgrid_fwd_kernel<D, F, T><<<blocks, kGridThreads, 0, stream>>>(a, out);
    return last_launch_error();
}

template <int D, typename T>
cudaError_t dispatch_features(const HashGridArgs& a, void* out, const Grads* g, const DoubleGrads* dg, int n,
                              cudaStream_t stream) {
    switch (a.n_features) {
        case 1: return launch<D, 1, T>(a, out, g, dg, n, stream);
        case 2: return launch<D, 2, T>(a, out, g, dg, n, stream);
        case 4: return launch<D, 4, T>(a, out, g, dg, n, stream);
        case 8: return launch<D, 8, T>(a, out, g, dg, n, stream);
        default: return cudaErrorInvalidValue;
    }
}

template <typename T>
cudaError_t dispatch_dims(const HashGridArgs& a, void* out, const Grads* g, const DoubleGrads* dg, int n,
                          cudaStream_t stream) {
    switch (a.n_dims) {
        case 1: return dispatch_features<1, T>(a, out, g, dg, n, stream);
        case 2: return dispatch_features<2, T>(a, out, g, dg, n, stream);
        case 3: return dispatch_features<3, T>(a, out, g, dg, n, stream);
        case 4: return dispatch_features<4, T>(a, out, g, dg, n, stream);
        default: return cudaErrorInvalidValue;
    }
}

// One of: forward (g = dg = null), backward (g), double backward (dg). n_levels: levels launched
// (grid y), starting at g->level_base (0 otherwise).
cudaError_t dispatch(const HashGridArgs& a, void* out, const Grads* g, const DoubleGrads* dg, int n_levels,
                     cudaStream_t stream) {
    if (a.n_points == 0 || n_levels == 0) return cudaSuccess;
    const int base = g ? g->level_base : 0;
    if (a.n_levels > kHashGridMaxLevels || base < 0 || base + n_levels > a.n_levels) return cudaErrorInvalidValue;
    return a.table_half ? dispatch_dims<__half>(a, out, g, dg, n_levels, stream)
                        : dispatch_dims<float>(a, out, g, dg, n_levels, stream);
}

}  // namespace

cudaError_t hashgrid_forward(const HashGridArgs& a, void* out, cudaStream_t stream) {
    return dispatch(a, out, nullptr, nullptr, a.n_levels, stream);
}

cudaError_t hashgrid_backward(const HashGridArgs& a, const void* g_out, float* g_table, void* g_table_half,
                              float* g_points, float* g_scales, cudaStream_t stream) {
    if (!g_table && !g_table_half && !g_points && !g_scales) return cudaSuccess;
    if (g_table_half && !a.table_half) return cudaErrorInvalidValue;
    const Grads g{g_out, g_table, static_cast<__half*>(g_table_half), g_points, g_scales, nullptr, nullptr, 0, false};
    return dispatch(a, nullptr, &g, nullptr, a.n_levels, stream);
}

cudaError_t hashgrid_backward_levels(const HashGridArgs& a, const void* g_out, int level_base, int n_levels,
                                     int64_t* emit_rows, float* emit_w, float* g_points, float* g_scales,
                                     cudaStream_t stream) {
    if (!emit_rows && !g_points && !g_scales) return cudaSuccess;
    if ((emit_rows == nullptr) != (emit_w == nullptr)) return cudaErrorInvalidValue;
    const Grads g{g_out, nullptr, nullptr, g_points, g_scales, emit_rows, emit_w, level_base, true};
    return dispatch(a, nullptr, &g, nullptr, n_levels, stream);
}

cudaError_t hashgrid_double_backward(const HashGridArgs& a, const void* g_out, const float* tangent, void* gg_out,
                                     float* g_table, float* g_points, float* g_scales, cudaStream_t stream) {
    if (!gg_out && !g_table && !g_points && !g_scales) return cudaSuccess;
    const DoubleGrads dg{g_out, tangent, gg_out, g_table, g_points, g_scales};
    return dispatch(a, nullptr, nullptr, &dg, a.n_levels, stream);
}

}  // namespace rfk
