// PyTorch binding of the feature-gather launchers in gather/kernels.cu. Inputs arrive validated and
// contiguous float32 from rfkernels/gather/api.py (features already channels-last); this file
// checks device/layout, allocates outputs and passes raw pointers with the current stream.
// Optional tensors are passed as empty tensors and mapped to null pointers.
#include "common/bind_common.h"

#include "gather/kernels.h"

namespace {

using namespace rfk::bind;

rfk::GatherArgs make_args(const torch::Tensor& points, const torch::Tensor& feats, const torch::Tensor& cams,
                          double near_eps, int64_t reduce) {
    const auto device = points.device();
    check_f32(points, "points", device);
    check_f32(feats, "feats", device);
    check_f32(cams, "cams", device);
    TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "points must be [B, N, 3]");
    TORCH_CHECK(feats.dim() == 5 && feats.size(0) == points.size(0), "feats must be [B, V, H, W, C]");
    TORCH_CHECK(cams.dim() == 3 && cams.size(0) == feats.size(0) && cams.size(1) == feats.size(1) &&
                    cams.size(2) == rfk::kGatherCamStride,
                "cams must be [B, V, ", rfk::kGatherCamStride, "]");
    TORCH_CHECK(reduce >= rfk::kGatherNone && reduce <= rfk::kGatherMax, "unknown reduce code ", reduce);
    rfk::GatherArgs a;
    a.points = points.data_ptr<float>();
    a.feat = feats.data_ptr<float>();
    a.cams = cams.data_ptr<float>();
    a.batch = points.size(0);
    a.n_points = points.size(1);
    a.views = static_cast<int>(feats.size(1));
    a.height = static_cast<int>(feats.size(2));
    a.width = static_cast<int>(feats.size(3));
    a.channels = static_cast<int>(feats.size(4));
    a.near_eps = static_cast<float>(near_eps);
    a.reduce = static_cast<int>(reduce);
    return a;
}

std::vector<int64_t> out_shape(const rfk::GatherArgs& a) {
    if (a.reduce == rfk::kGatherNone) return {a.batch, a.n_points, a.views, a.channels};
    return {a.batch, a.n_points, a.reduce == rfk::kGatherMeanVar ? 2 * a.channels : a.channels};
}

// -> {out, mask [B,N,V] uint8, camera coords [B,N,V,3] (empty unless want_cam), argmax [B,N,C] int32 (max)}
std::vector<torch::Tensor> gather_forward(torch::Tensor points, torch::Tensor feats, torch::Tensor cams,
                                          double near_eps, int64_t reduce, bool want_cam) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, feats, cams, near_eps, reduce);
    auto out = torch::empty(out_shape(a), points.options());
    auto mask = torch::empty({a.batch, a.n_points, a.views}, points.options().dtype(torch::kUInt8));
    auto cam = empty_if(want_cam, {a.batch, a.n_points, a.views, 3}, points.options());
    auto argmax =
        empty_if(reduce == rfk::kGatherMax, {a.batch, a.n_points, a.channels}, points.options().dtype(torch::kInt32));
    check_cuda(rfk::gather_forward(a, out.data_ptr<float>(), mask.data_ptr<uint8_t>(),
                                   want_cam ? cam.data_ptr<float>() : nullptr,
                                   reduce == rfk::kGatherMax ? argmax.data_ptr<int32_t>() : nullptr, stream()),
               "gather_forward");
    return {out, mask, cam, argmax};
}

// -> {g_feats [B,V,H,W,C], g_points [B,N,3] (empty unless need_points)}. A non-empty fixed_scale
// ([1] float32 power of two) selects the deterministic int64 fixed-point accumulation.
std::vector<torch::Tensor> gather_backward(torch::Tensor g_out, torch::Tensor g_cam, torch::Tensor points,
                                           torch::Tensor feats, torch::Tensor cams, torch::Tensor out,
                                           torch::Tensor mask, torch::Tensor argmax, double near_eps, int64_t reduce,
                                           bool need_points, torch::Tensor fixed_scale) {
    const DeviceGuard guard(points.device());
    const auto a = make_args(points, feats, cams, near_eps, reduce);
    const auto device = points.device();
    check_f32(g_out, "g_out", device);
    TORCH_CHECK(g_out.sizes() == torch::IntArrayRef(out_shape(a)), "g_out has the wrong shape");
    check_tensor(mask, "mask", device, torch::kUInt8, a.batch * a.n_points * a.views);  // [B, N, V]
    if (g_cam.numel()) {
        check_f32(g_cam, "g_cam", device, a.batch * a.n_points * a.views * 3);  // [B, N, V, 3]
    }
    if (reduce == rfk::kGatherMeanVar) {
        check_f32(out, "out", device);
        TORCH_CHECK(out.sizes() == g_out.sizes(), "out must be shaped like g_out");
    }
    if (reduce == rfk::kGatherMax) {
        check_tensor(argmax, "argmax", device, torch::kInt32, a.batch * a.n_points * a.channels);  // [B, N, C]
    }
    const bool fixed = fixed_scale.numel() > 0;
    if (fixed) {
        check_f32(fixed_scale, "fixed_scale", device, 1);
    }
    auto g_feats = fixed ? torch::zeros_like(feats, feats.options().dtype(torch::kInt64)) : torch::zeros_like(feats);
    auto g_points = zeros_if(need_points, points.sizes(), points.options());
    check_cuda(
        rfk::gather_backward(a, g_out.data_ptr<float>(), g_cam.numel() ? g_cam.data_ptr<float>() : nullptr,
                             reduce == rfk::kGatherMeanVar ? out.data_ptr<float>() : nullptr, mask.data_ptr<uint8_t>(),
                             reduce == rfk::kGatherMax ? argmax.data_ptr<int32_t>() : nullptr,
                             fixed ? nullptr : g_feats.data_ptr<float>(), fixed ? g_feats.data_ptr<int64_t>() : nullptr,
                             fixed ? fixed_scale.data_ptr<float>() : nullptr,
                             need_points ? g_points.data_ptr<float>() : nullptr, stream()),
        "gather_backward");
    if (fixed) g_feats = g_feats.to(torch::kFloat64).div(fixed_scale.to(torch::kFloat64)).to(torch::kFloat32);
    return {g_feats, g_points};
}

}  // namespace

RFK_BIND_FAMILY(gather) {
    m.def("gather_forward", &gather_forward, "fused feature gather forward (project, sample, reduce)");
    m.def("gather_backward", &gather_backward, "fused feature gather backward (atomics into the feature grad)");
}
