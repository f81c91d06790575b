// Runs the per-(point, level) bodies of csrc/hashgrid/kernels.cu on the CPU (loops over levels and points
// instead of a grid; atomics become plain adds), so the CUDA backend's arithmetic is tested on
// machines without a GPU. Built by tests/helpers/cuda_host.py; called from tests/rfkernels/hashgrid/cuda_host.py.
#include "hashgrid/kernels.cu"

namespace {

// The HashGridArgs that csrc/hashgrid/bind.cpp's make_args builds from the same metadata lists.
rfk::HashGridArgs args(const float* points, const void* table, const float* scales, int64_t n_points, int n_dims,
                       int n_levels, int n_features, int table_half, int smoothstep, double aa_z_max,
                       const int64_t* offsets, const int64_t* sizes, const double* level_scales, const int64_t* strides,
                       const int64_t* hashed, int out_feature_major, int out_dtype) {
    rfk::HashGridArgs a{};
    a.points = points;
    a.table = table;
    a.scales = scales;
    a.n_points = n_points;
    a.n_dims = n_dims;
    a.n_levels = n_levels;
    a.n_features = n_features;
    a.table_half = table_half != 0;
    a.smoothstep = smoothstep != 0;
    a.aa_z_max = static_cast<float>(aa_z_max);
    a.out_feature_major = out_feature_major != 0;
    a.out_dtype = out_dtype;
    for (int l = 0; l < n_levels; ++l) {
        rfk::set_level(a.levels, l, offsets[l], sizes[l], level_scales[l], hashed[l],
                       strides + l * rfk::kHashGridMaxDims);
    }
    return a;
}

// One pass over the (level, point) grid: mode 0 forward, 1 backward (levels gr->level_base ..
// + n_levels), 2 double backward.
struct Pass {
    int mode;
    void* out;
    const rfk::Grads* g;
    const rfk::DoubleGrads* dg;
    int n_levels;
};

template <int D, int F, typename T>
int run(const rfk::HashGridArgs& a, const Pass& p) {
    for (int slot = 0; slot < p.n_levels; ++slot)
        for (int64_t i = 0; i < a.n_points; ++i) {
            if (p.mode == 0)
                rfk::hashgrid_fwd_point<D, F, T>(a, i, slot, p.out);
            else if (p.mode == 1)
                rfk::hashgrid_bwd_point<D, F, T>(a, *p.g, i, slot);
            else
                rfk::hashgrid_dbl_point<D, F, T>(a, *p.dg, i, slot);
        }
    return 0;
}

template <int D, typename T>
int by_features(const rfk::HashGridArgs& a, const Pass& p) {
    switch (a.n_features) {
        case 1: return run<D, 1, T>(a, p);
        case 2: return run<D, 2, T>(a, p);
        case 4: return run<D, 4, T>(a, p);
        case 8: return run<D, 8, T>(a, p);
        default: return 1;
    }
}

template <typename T>
int by_dims(const rfk::HashGridArgs& a, const Pass& p) {
    switch (a.n_dims) {
        case 1: return by_features<1, T>(a, p);
        case 2: return by_features<2, T>(a, p);
        case 3: return by_features<3, T>(a, p);
        case 4: return by_features<4, T>(a, p);
        default: return 1;
    }
}

// Mirrors hashgrid.cu's dispatch(): same early exits and range checks; 0 on success.
int run_pass(const rfk::HashGridArgs& a, const Pass& p) {
    if (a.n_points == 0 || p.n_levels == 0) return 0;
    const int base = p.g ? p.g->level_base : 0;
    if (a.n_levels > rfk::kHashGridMaxLevels || base < 0 || base + p.n_levels > a.n_levels) return 1;
    return a.table_half ? by_dims<__half>(a, p) : by_dims<float>(a, p);
}

}  // namespace

#define HG_ARGS                                                                                                        \
    const float *points, const void *table, const float *scales, int64_t n_points, int n_dims, int n_levels,           \
        int n_features, int table_half, int smoothstep, double aa_z_max, const int64_t *offsets, const int64_t *sizes, \
        const double *level_scales, const int64_t *strides, const int64_t *hashed, int out_feature_major,              \
        int out_dtype
#define HG_PASS                                                                                                    \
    args(points, table, scales, n_points, n_dims, n_levels, n_features, table_half, smoothstep, aa_z_max, offsets, \
         sizes, level_scales, strides, hashed, out_feature_major, out_dtype)

extern "C" {

int host_hashgrid_forward(HG_ARGS, void* out) { return run_pass(HG_PASS, Pass{0, out, nullptr, nullptr, n_levels}); }

// Same contract as rfk::hashgrid_backward (outputs zero-initialised by the caller).
int host_hashgrid_backward(HG_ARGS, const void* g_out, float* g_table, void* g_table_half, float* g_points,
                           float* g_scales) {
    if (!g_table && !g_table_half && !g_points && !g_scales) return 0;
    if (g_table_half && !table_half) return 1;
    const rfk::Grads g{g_out, g_table, static_cast<__half*>(g_table_half), g_points, g_scales, nullptr, nullptr,
                       0,     false};
    return run_pass(HG_PASS, Pass{1, nullptr, &g, nullptr, n_levels});
}

// Same contract as rfk::hashgrid_backward_levels.
int host_hashgrid_backward_levels(HG_ARGS, const void* g_out, int level_base, int n_run, int64_t* emit_rows,
                                  float* emit_w, float* g_points, float* g_scales) {
    if (!emit_rows && !g_points && !g_scales) return 0;
    if ((emit_rows == nullptr) != (emit_w == nullptr)) return 1;
    const rfk::Grads g{g_out, nullptr, nullptr, g_points, g_scales, emit_rows, emit_w, level_base, true};
    return run_pass(HG_PASS, Pass{1, nullptr, &g, nullptr, n_run});
}

// Same contract as rfk::hashgrid_double_backward.
int host_hashgrid_double_backward(HG_ARGS, const void* g_out, const float* tangent, void* gg_out, float* g_table,
                                  float* g_points, float* g_scales) {
    if (!gg_out && !g_table && !g_points && !g_scales) return 0;
    const rfk::DoubleGrads dg{g_out, tangent, gg_out, g_table, g_points, g_scales};
    return run_pass(HG_PASS, Pass{2, nullptr, nullptr, &dg, n_levels});
}
}
