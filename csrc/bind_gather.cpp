// PyTorch binding of the feature-gather launchers in gather.cu. Inputs arrive validated and
// contiguous float32 from rfkernels/gather/__init__.py (features already channels-last); this file
// checks device/layout, allocates outputs and passes raw pointers with the current stream.
// Optional tensors are passed as empty tensors and mapped to null pointers.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "gather.h"

namespace {

// All tensors must live on the guarded device (points'): the kernels get raw pointers.
void check_float(const torch::Tensor& t, const char* name, const torch::Device& device) {
    TORCH_CHECK(t.is_cuda() && t.device() == device, name, " must be a CUDA tensor on ", device);
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
    TORCH_CHECK(t.scalar_type() == torch::kFloat32, name, " must be float32");
}

void check_cuda(cudaError_t err, const char* what) {
    TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

rfk::GatherArgs make_args(const torch::Tensor& points, const torch::Tensor& feats, const torch::Tensor& cams,
                          double near_eps, int64_t reduce) {
    const auto device = points.device();
    check_float(points, "points", device);
    check_float(feats, "feats", device);
    check_float(cams, "cams", device);
    TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "points must be [B, N, 3]");
    TORCH_CHECK(feats.dim() == 5 && feats.size(0) == points.size(0), "feats must be [B, V, H, W, C]");
    TORCH_CHECK(cams.dim() == 3 && cams.size(0) == feats.size(0) && cams.size(1) == feats.size(1) &&
                    cams.size(2) == 18,
                "cams must be [B, V, 18]");
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
    const c10::cuda::CUDAGuard guard(points.device());
    const auto a = make_args(points, feats, cams, near_eps, reduce);
    auto out = torch::empty(out_shape(a), points.options());
    auto mask = torch::empty({a.batch, a.n_points, a.views}, points.options().dtype(torch::kUInt8));
    auto cam = want_cam ? torch::empty({a.batch, a.n_points, a.views, 3}, points.options())
                        : torch::empty({0}, points.options());
    auto argmax = reduce == rfk::kGatherMax
                      ? torch::empty({a.batch, a.n_points, a.channels}, points.options().dtype(torch::kInt32))
                      : torch::empty({0}, points.options().dtype(torch::kInt32));
    check_cuda(rfk::gather_forward(a, out.data_ptr<float>(), mask.data_ptr<uint8_t>(),
                                   want_cam ? cam.data_ptr<float>() : nullptr,
                                   reduce == rfk::kGatherMax ? argmax.data_ptr<int32_t>() : nullptr,
                                   c10::cuda::getCurrentCUDAStream()),
               "gather_forward");
    return {out, mask, cam, argmax};
}

// -> {g_feats [B,V,H,W,C], g_points [B,N,3] (empty unless need_points)}. A non-empty fixed_scale
// ([1] float32 power of two) selects the deterministic int64 fixed-point accumulation.
std::vector<torch::Tensor> gather_backward(torch::Tensor g_out, torch::Tensor g_cam, torch::Tensor points,
                                           torch::Tensor feats, torch::Tensor cams, torch::Tensor out,
                                           torch::Tensor mask, torch::Tensor argmax, double near_eps,
                                           int64_t reduce, bool need_points, torch::Tensor fixed_scale) {
    const c10::cuda::CUDAGuard guard(points.device());
    const auto a = make_args(points, feats, cams, near_eps, reduce);
    const auto device = points.device();
    check_float(g_out, "g_out", device);
    TORCH_CHECK(g_out.sizes() == torch::IntArrayRef(out_shape(a)), "g_out has the wrong shape");
    TORCH_CHECK(mask.is_cuda() && mask.device() == device && mask.is_contiguous() &&
                    mask.scalar_type() == torch::kUInt8 && mask.numel() == a.batch * a.n_points * a.views,
                "mask must be a contiguous uint8 [B, N, V] CUDA tensor");
    if (g_cam.numel()) {
        check_float(g_cam, "g_cam", device);
        TORCH_CHECK(g_cam.numel() == a.batch * a.n_points * a.views * 3, "g_cam must be [B, N, V, 3]");
    }
    if (reduce == rfk::kGatherMeanVar) {
        check_float(out, "out", device);
        TORCH_CHECK(out.sizes() == g_out.sizes(), "out must be shaped like g_out");
    }
    if (reduce == rfk::kGatherMax) {
        TORCH_CHECK(argmax.is_cuda() && argmax.device() == device && argmax.is_contiguous() &&
                        argmax.scalar_type() == torch::kInt32 && argmax.numel() == a.batch * a.n_points * a.channels,
                    "argmax must be a contiguous int32 [B, N, C] CUDA tensor");
    }
    const bool fixed = fixed_scale.numel() > 0;
    if (fixed) {
        check_float(fixed_scale, "fixed_scale", device);
        TORCH_CHECK(fixed_scale.numel() == 1, "fixed_scale must have one element");
    }
    auto g_feats = fixed ? torch::zeros_like(feats, feats.options().dtype(torch::kInt64)) : torch::zeros_like(feats);
    auto g_points = need_points ? torch::zeros_like(points) : torch::empty({0}, points.options());
    check_cuda(rfk::gather_backward(a, g_out.data_ptr<float>(), g_cam.numel() ? g_cam.data_ptr<float>() : nullptr,
                                    reduce == rfk::kGatherMeanVar ? out.data_ptr<float>() : nullptr,
                                    mask.data_ptr<uint8_t>(),
                                    reduce == rfk::kGatherMax ? argmax.data_ptr<int32_t>() : nullptr,
                                    fixed ? nullptr : g_feats.data_ptr<float>(),
                                    fixed ? g_feats.data_ptr<int64_t>() : nullptr,
                                    fixed ? fixed_scale.data_ptr<float>() : nullptr,
                                    need_points ? g_points.data_ptr<float>() : nullptr,
                                    c10::cuda::getCurrentCUDAStream()),
               "gather_backward");
    if (fixed) g_feats = g_feats.to(torch::kFloat64).div(fixed_scale.to(torch::kFloat64)).to(torch::kFloat32);
    return {g_feats, g_points};
}

}  // namespace

void rfk_bind_gather(pybind11::module_& m) {
    m.def("gather_forward", &gather_forward, "fused feature gather forward (project, sample, reduce)");
    m.def("gather_backward", &gather_backward, "fused feature gather backward (atomics into the feature grad)");
}
