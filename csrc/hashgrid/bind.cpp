// PyTorch binding of the hash-grid launchers in hashgrid/kernels.cu. Inputs arrive validated and
// contiguous from rfkernels/hashgrid/api.py (points/scales float32, table float32 or float16);
// the per-level metadata comes from rfkernels/hashgrid/layout.py as Python lists.
#include "common/bind_common.h"

#include <vector>

#include "hashgrid/kernels.h"

namespace {

using namespace rfk::bind;

rfk::HashGridArgs make_args(const torch::Tensor& points, const torch::Tensor& params, const torch::Tensor& scales,
                            const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes,
                            const std::vector<double>& level_scales, const std::vector<int64_t>& strides,
                            const std::vector<int64_t>& hashed, int64_t n_features, bool smoothstep, double aa_z_max) {
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
    int64_t n_rows = params.numel() / n_features;
    for (int64_t l = 0; l < L; ++l) {
        TORCH_CHECK(sizes[l] >= 1 && offsets[l] >= 0 && offsets[l] + sizes[l] <= n_rows, "level ", l,
                    " lies outside params");
        rfk::set_level(a.levels, static_cast<int>(l), offsets[l], sizes[l], level_scales[l], hashed[l],
                       strides.data() + l * rfk::kHashGridMaxDims);
    }
    return a;
}

torch::Tensor hashgrid_forward(torch::Tensor points, torch::Tensor params, torch::Tensor scales,
                               std::vector<int64_t> offsets, std::vector<int64_t> sizes,
                               std::vector<double> level_scales, std::vector<int64_t> strides,
                               std::vector<int64_t> hashed, int64_t n_features, bool smoothstep, double aa_z_max) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features,
                             smoothstep, aa_z_max);
    auto out = torch::empty({a.n_points, a.n_levels * n_features}, points.options());
    check_cuda(rfk::hashgrid_forward(a, out.data_ptr<float>(), stream()), "hashgrid forward");
    return out;
}

// Returns {g_points [N, D], g_table [n_params] float32, g_scales [N]}; an output not needed is empty.
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor g_out, torch::Tensor points, torch::Tensor params,
                                             torch::Tensor scales, std::vector<int64_t> offsets,
                                             std::vector<int64_t> sizes, std::vector<double> level_scales,
                                             std::vector<int64_t> strides, std::vector<int64_t> hashed,
                                             int64_t n_features, bool smoothstep, double aa_z_max, bool need_points,
                                             bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features,
                             smoothstep, aa_z_max);
    check_f32(g_out, "g_out", points.device());
    TORCH_CHECK(g_out.dim() == 2 && g_out.size(0) == a.n_points && g_out.size(1) == a.n_levels * n_features,
                "g_out must be [N, n_levels * n_features]");
    TORCH_CHECK(!need_scales || a.scales != nullptr || a.n_points == 0, "need_scales requires scales");
    const auto opts = points.options();
    auto g_points = zeros_if(need_points, points.sizes(), opts);
    auto g_table = zeros_if(need_params, {params.numel()}, opts);
    auto g_scales = zeros_if(need_scales, {a.n_points}, opts);
    check_cuda(rfk::hashgrid_backward(a, g_out.data_ptr<float>(), need_params ? g_table.data_ptr<float>() : nullptr,
                                      need_points ? g_points.data_ptr<float>() : nullptr,
                                      need_scales ? g_scales.data_ptr<float>() : nullptr, stream()),
               "hashgrid backward");
    return {g_points, g_table, g_scales};
}

// Deterministic backward of levels [level_base, level_base + n_levels): returns {emit_rows [n, N, 2^D]
// int64, emit_w [n, N, 2^D], g_points partials [n, N, D], g_scales partials [n, N]}; unneeded ones empty.
std::vector<torch::Tensor> hashgrid_backward_levels(torch::Tensor g_out, torch::Tensor points, torch::Tensor params,
                                                    torch::Tensor scales, std::vector<int64_t> offsets,
                                                    std::vector<int64_t> sizes, std::vector<double> level_scales,
                                                    std::vector<int64_t> strides, std::vector<int64_t> hashed,
                                                    int64_t n_features, bool smoothstep, double aa_z_max,
                                                    int64_t level_base, int64_t n_levels, bool need_points,
                                                    bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features,
                             smoothstep, aa_z_max);
    check_f32(g_out, "g_out", points.device());
    TORCH_CHECK(g_out.dim() == 2 && g_out.size(0) == a.n_points && g_out.size(1) == a.n_levels * n_features,
                "g_out must be [N, n_levels * n_features]");
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
            a, g_out.data_ptr<float>(), static_cast<int>(level_base), static_cast<int>(n_levels),
            need_params ? rows.data_ptr<int64_t>() : nullptr, need_params ? w.data_ptr<float>() : nullptr,
            need_points ? px.data_ptr<float>() : nullptr, need_scales ? ps.data_ptr<float>() : nullptr, stream()),
        "hashgrid backward_levels");
    return {rows, w, px, ps};
}

// Backward of the point gradient given its incoming gradient tangent [N, D]: returns {gg_out [N, L*F],
// g_points [N, D], g_table [n_params] float32, g_scales [N]}; an output not needed is empty.
std::vector<torch::Tensor> hashgrid_double_backward(torch::Tensor tangent, torch::Tensor g_out, torch::Tensor points,
                                                    torch::Tensor params, torch::Tensor scales,
                                                    std::vector<int64_t> offsets, std::vector<int64_t> sizes,
                                                    std::vector<double> level_scales, std::vector<int64_t> strides,
                                                    std::vector<int64_t> hashed, int64_t n_features, bool smoothstep,
                                                    double aa_z_max, bool need_g_out, bool need_points,
                                                    bool need_params, bool need_scales) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, params, scales, offsets, sizes, level_scales, strides, hashed, n_features,
                             smoothstep, aa_z_max);
    check_f32(g_out, "g_out", points.device());
    check_f32(tangent, "tangent", points.device());
    TORCH_CHECK(g_out.dim() == 2 && g_out.size(0) == a.n_points && g_out.size(1) == a.n_levels * n_features,
                "g_out must be [N, n_levels * n_features]");
    TORCH_CHECK(tangent.sizes() == points.sizes(), "tangent must be [N, D]");
    TORCH_CHECK(!need_scales || a.scales != nullptr || a.n_points == 0, "need_scales requires scales");
    const auto opts = points.options();
    auto gg_out = empty_if(need_g_out, g_out.sizes(), opts);
    auto g_points = zeros_if(need_points, points.sizes(), opts);
    auto g_table = zeros_if(need_params, {params.numel()}, opts);
    auto g_scales = zeros_if(need_scales, {a.n_points}, opts);
    check_cuda(rfk::hashgrid_double_backward(a, g_out.data_ptr<float>(), tangent.data_ptr<float>(),
                                             need_g_out ? gg_out.data_ptr<float>() : nullptr,
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
