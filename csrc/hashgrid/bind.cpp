// PyTorch binding of the hash-grid launchers in hashgrid/kernels.cu. Inputs arrive validated and
// contiguous from rfkernels/hashgrid/api.py (points/scales float32, table float32 or float16);
// the per-level metadata comes from rfkernels/hashgrid/layout.py as Python lists; the features' buffers
// (out, g_out, gg_out) are [N, L*F] or, feature_major, [L*F, N], in float32/float16/bfloat16
// (rfkernels/hashgrid/output.py).
#include "common/bind_common.h"

#include <vector>

#include "hashgrid/kernels.h"

namespace {

using namespace rfk::bind;

rfk::HashGridArgs make_args(const torch::Tensor& points, const torch::Tensor& params, const torch::Tensor& scales,
                            const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                            const std::vector<double>& level_scales, const std::vector<int64_t>& strides,
                            const std::vector<int64_t>& hashed, int64_t n_features, bool smoothstep, double aa_z_max,
                            bool feature_major) {
    const auto device = points.device();
    check_f32(points, "points", device);
    TORCH_CHECK(points.dim() == 2 && points.size(1) >= 1 && points.size(1) <= rfk::kHashGridMaxDims,
                "points must be [N, D] with D in 1..", rfk::kHashGridMaxDims);
    TORCH_CHECK(params.scalar_type() == torch::kFloat32 || params.scalar_type() == torch::kFloat16,
                "params must be float32 or float16");
    check_tensor(params, "params", device, params.scalar_type());
    TORCH_CHECK(params.dim() == 1, "params must be 1-D");
    TORCH_CHECK(n_features == 1 || n_features == 2 || n_features == 4 || n_features == 8,
                "n_features must be 1, 2, 4 or 8");
    TORCH_CHECK(reinterpret_cast<uintptr_t>(params.data_ptr()) % (n_features * params.element_size()) == 0,
                "params must be aligned to one entry (n_features * element size)");
    const int64_t L = static_cast<int64_t>(offsets.size());
    TORCH_CHECK(L >= 1 && L <= rfk::kHashGridMaxLevels, "n_levels must be in 1..", rfk::kHashGridMaxLevels);
    TORCH_CHECK(static_cast<int64_t>(sizes.size()) == L && static_cast<int64_t>(level_scales.size()) == L &&
                    static_cast<int64_t>(hashed.size()) == L &&
                    static_cast<int64_t>(strides.size()) == L * rfk::kHashGridMaxDims,
                "level metadata lists have inconsistent lengths");
    rfk::HashGridArgs a{};
    a.points = points.data_ptr<float>();
    a.table = params.data_ptr();
    a.scales = nullptr;
    if (scales.numel()) {
        check_f32(scales, "scales", device, points.size(0));  // [N]
        a.scales = scales.data_ptr<float>();
    }
    a.n_points = points.size(0);
    a.n_dims = static_cast<int>(points.size(1));
    a.n_levels = static_cast<int>(L);
    a.n_features = static_cast<int>(n_features);
    a.table_half = params.scalar_type() == torch::kFloat16;
    a.smoothstep = smoothstep;
    a.aa_z_max = static_cast<float>(aa_z_max);
    a.out_feature_major = feature_major;
    a.out_dtype = rfk::kOutFloat32;
    int64_t n_rows = params.numel() / n_features;
    for (int64_t l = 0; l < L; ++l) {
        TORCH_CHECK(sizes[l] >= 1 && offsets[l] >= 0 && offsets[l] + sizes[l] <= n_rows, "level ", l,
                    " lies outside params");
        rfk::set_level(a.levels, static_cast<int>(l), offsets[l], sizes[l], level_scales[l], hashed[l],
                       strides.data() + l * rfk::kHashGridMaxDims);
    }
    return a;
}

// A features' buffer (out, g_out): contiguous on the device, [N, L*F] (or [L*F, N] when feature-major),
// float32/float16/bfloat16; every one of a call's buffers has one dtype, recorded in a.out_dtype.
void check_features(const torch::Tensor& t, const char* name, const torch::Device& device, rfk::HashGridArgs& a) {
    const auto dtype = t.scalar_type();
    TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat16 || dtype == torch::kBFloat16, name,
                " must be float32, float16 or bfloat16, got ", dtype);
    check_tensor(t, name, device, dtype);
    const int64_t cols = static_cast<int64_t>(a.n_levels) * a.n_features;
    const auto rows = a.out_feature_major ? cols : a.n_points, width = a.out_feature_major ? a.n_points : cols;
    TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == width, name, " must be [", rows, ", ", width, "] (",
                a.out_feature_major ? "feature-major [L*F, N]" : "point-major [N, L*F]", "), got ", t.sizes());
    a.out_dtype = dtype == torch::kFloat16    ? rfk::kOutFloat16
                  : dtype == torch::kBFloat16 ? rfk::kOutBFloat16
                                              : rfk::kOutFloat32;
}

// The table gradient buffers of hashgrid_backward (see kernels.h): float tables -> one float32
// [n_params]; half tables -> the half gradient [n_params] plus a float32 buffer up to the end of the
// last dense level (empty when every level is hashed), merged by merge_dense_levels.
struct TableGrad {
    torch::Tensor full;   // [n_params] in the table dtype (the result)
    torch::Tensor dense;  // float32 [dense_end * F] (half tables) or undefined
};

TableGrad table_grad(const torch::Tensor& params, const std::vector<int64_t>& offsets,
                     const std::vector<int64_t>& sizes, const std::vector<int64_t>& hashed, int64_t n_features) {
    if (params.scalar_type() != torch::kFloat16) return {torch::zeros({params.numel()}, params.options()), {}};
    int64_t dense_end = 0;
    for (size_t l = 0; l < offsets.size(); ++l)
        if (!hashed[l]) dense_end = std::max(dense_end, offsets[l] + sizes[l]);
    return {torch::zeros({params.numel()}, params.options()),
            torch::zeros({dense_end * n_features}, params.options().dtype(torch::kFloat32))};
}

// Half tables: the dense levels' float32 sums, rounded once into the half gradient.
void merge_dense_levels(TableGrad& g, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                        const std::vector<int64_t>& hashed, int64_t n_features) {
    if (!g.dense.defined()) return;
    for (size_t l = 0; l < offsets.size(); ++l)
        if (!hashed[l])
            g.full.narrow(0, offsets[l] * n_features, sizes[l] * n_features)
                .copy_(g.dense.narrow(0, offsets[l] * n_features, sizes[l] * n_features));
}

// Writes the features into `out` (allocated by the caller in the requested layout and dtype).
void hashgrid_forward(torch::Tensor points, torch::Tensor params, torch::Tensor scales, torch::Tensor out,
                      std::vector<int64_t> offsets, std::vector<int64_t> sizes, std::vector<double> level_scales,
                      std::vector<int64_t> strides, std::vector<int64_t> hashed, int64_t n_features, bool smoothstep,
                      double aa_z_max, bool feature_major) {
    const DeviceGuard guard(points.device());
    auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features, smoothstep,
                       aa_z_max, feature_major);
    check_features(out, "out", points.device(), a);
    check_cuda(rfk::hashgrid_forward(a, out.data_ptr(), stream()), "hashgrid forward");
}

// Returns {g_points [N, D], g_table [n_params] in the table dtype, g_scales [N]}; an output not needed is empty.
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor g_out, torch::Tensor points, torch::Tensor params,
                                             torch::Tensor scales, std::vector<int64_t> offsets,
                                             std::vector<int64_t> sizes, std::vector<double> level_scales,
                                             std::vector<int64_t> strides, std::vector<int64_t> hashed,
                                             int64_t n_features, bool smoothstep, double aa_z_max, bool feature_major,
                                             bool need_points, bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features, smoothstep,
                       aa_z_max, feature_major);
    check_features(g_out, "g_out", points.device(), a);
    TORCH_CHECK(!need_scales || a.scales != nullptr || a.n_points == 0, "need_scales requires scales");
    const auto opts = points.options();
    auto g_points = zeros_if(need_points, points.sizes(), opts);
    auto g_scales = zeros_if(need_scales, {a.n_points}, opts);
    TableGrad g_table = need_params ? table_grad(params, offsets, sizes, hashed, n_features) : TableGrad{};
    float* g_table_f32 = nullptr;
    void* g_table_half = nullptr;
    if (need_params && a.table_half) {
        g_table_half = g_table.full.data_ptr();
        g_table_f32 = g_table.dense.numel() ? g_table.dense.data_ptr<float>() : nullptr;
    } else if (need_params) {
        g_table_f32 = g_table.full.data_ptr<float>();
    }
    check_cuda(rfk::hashgrid_backward(a, g_out.data_ptr(), g_table_f32, g_table_half,
                                      need_points ? g_points.data_ptr<float>() : nullptr,
                                      need_scales ? g_scales.data_ptr<float>() : nullptr, stream()),
               "hashgrid backward");
    if (!need_params) return {g_points, torch::empty({0}, opts), g_scales};
    merge_dense_levels(g_table, offsets, sizes, hashed, n_features);
    return {g_points, g_table.full, g_scales};
}

// Deterministic backward of levels [level_base, level_base + n_levels): returns {emit_rows [n, N, 2^D]
// int64, emit_w [n, N, 2^D], g_points partials [n, N, D], g_scales partials [n, N]}; unneeded ones empty.
std::vector<torch::Tensor> hashgrid_backward_levels(torch::Tensor g_out, torch::Tensor points, torch::Tensor params,
                                                    torch::Tensor scales, std::vector<int64_t> offsets,
                                                    std::vector<int64_t> sizes, std::vector<double> level_scales,
                                                    std::vector<int64_t> strides, std::vector<int64_t> hashed,
                                                    int64_t n_features, bool smoothstep, double aa_z_max,
                                                    bool feature_major, int64_t level_base, int64_t n_levels,
                                                    bool need_points, bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features, smoothstep,
                       aa_z_max, feature_major);
    check_features(g_out, "g_out", points.device(), a);
    TORCH_CHECK(level_base >= 0 && n_levels >= 0 && level_base + n_levels <= a.n_levels, "bad level range");
    TORCH_CHECK(!need_scales || a.scales != nullptr || a.n_points == 0, "need_scales requires scales");
    const int64_t C = int64_t{1} << a.n_dims;
    const auto opts = points.options();
    auto rows = empty_if(need_params, {n_levels, a.n_points, C}, opts.dtype(torch::kInt64));
    auto w = empty_if(need_params, {n_levels, a.n_points, C}, opts);
    auto px = empty_if(need_points, {n_levels, a.n_points, a.n_dims}, opts);
    auto ps = empty_if(need_scales, {n_levels, a.n_points}, opts);
    check_cuda(
        rfk::hashgrid_backward_levels(
            a, g_out.data_ptr(), static_cast<int>(level_base), static_cast<int>(n_levels),
            need_params ? rows.data_ptr<int64_t>() : nullptr, need_params ? w.data_ptr<float>() : nullptr,
            need_points ? px.data_ptr<float>() : nullptr, need_scales ? ps.data_ptr<float>() : nullptr, stream()),
        "hashgrid backward_levels");
    return {rows, w, px, ps};
}

// Backward of the point gradient given its incoming gradient tangent [N, D]: returns {gg_out (g_out's shape),
// g_points [N, D], g_table [n_params] float32, g_scales [N]}; an output not needed is empty.
std::vector<torch::Tensor> hashgrid_double_backward(torch::Tensor tangent, torch::Tensor g_out, torch::Tensor points,
                                                    torch::Tensor params, torch::Tensor scales,
                                                    std::vector<int64_t> offsets, std::vector<int64_t> sizes,
                                                    std::vector<double> level_scales, std::vector<int64_t> strides,
                                                    std::vector<int64_t> hashed, int64_t n_features, bool smoothstep,
                                                    double aa_z_max, bool feature_major, bool need_g_out,
                                                    bool need_points, bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features, smoothstep,
                       aa_z_max, feature_major);
    check_features(g_out, "g_out", points.device(), a);
    check_f32(tangent, "tangent", points.device());
    TORCH_CHECK(tangent.sizes() == points.sizes(), "tangent must be [N, D]");
    TORCH_CHECK(!need_scales || a.scales != nullptr || a.n_points == 0, "need_scales requires scales");
    const auto opts = points.options();
    auto gg_out = empty_if(need_g_out, g_out.sizes(), g_out.options());
    auto g_points = zeros_if(need_points, points.sizes(), opts);
    auto g_table = zeros_if(need_params, {params.numel()}, opts);
    auto g_scales = zeros_if(need_scales, {a.n_points}, opts);
    check_cuda(rfk::hashgrid_double_backward(a, g_out.data_ptr(), tangent.data_ptr<float>(),
                                             need_g_out ? gg_out.data_ptr() : nullptr,
                                             need_params ? g_table.data_ptr<float>() : nullptr,
                                             need_points ? g_points.data_ptr<float>() : nullptr,
                                             need_scales ? g_scales.data_ptr<float>() : nullptr, stream()),
               "hashgrid double_backward");
    return {gg_out, g_points, g_table, g_scales};
}

}  // namespace

RFK_BIND_FAMILY(hashgrid) {
    m.def("hashgrid_forward", &hashgrid_forward, "hash-grid encoding forward");
    m.def("hashgrid_backward", &hashgrid_backward, "hash-grid encoding backward (table/points/scales grads)");
    m.def("hashgrid_double_backward", &hashgrid_double_backward, "hash-grid backward of the point gradient");
    m.def("hashgrid_backward_levels", &hashgrid_backward_levels, "deterministic hash-grid backward of a level range");
}
