// PyTorch binding of the volume-rendering launchers in volrend/kernels.cu. Inputs arrive validated and
// contiguous float32 from rfkernels/volrend/api.py; this file only checks device/layout,
// allocates outputs and passes raw pointers with the current stream.
#include "common/bind_common.h"

#include "volrend/kernels.h"

namespace {

using namespace rfk::bind;

rfk::CompositeArgs make_args(const torch::Tensor& sigmas, const torch::Tensor& deltas, const torch::Tensor& tmids,
                             const torch::Tensor& colors, const torch::Tensor& offsets, int64_t channels, double eps,
                             double tau_max) {
    const auto device = sigmas.device();
    check_f32(sigmas, "sigmas", device);
    const int64_t N = sigmas.numel();
    check_f32(deltas, "deltas", device, N);
    check_offsets(offsets, "offsets", device);
    if (tmids.numel()) check_f32(tmids, "tmids", device, N);
    TORCH_CHECK(channels >= 0, "channels must be >= 0");
    if (channels > 0) {  // colors [N, C] (a null pointer when N = 0)
        check_f32(colors, "colors", device);
        TORCH_CHECK(colors.dim() == 2 && colors.size(0) == N && colors.size(1) == channels, "colors must be [N, ",
                    channels, "]");
    }
    rfk::CompositeArgs a;
    a.sigma = sigmas.data_ptr<float>();
    a.delta = deltas.data_ptr<float>();
    a.tmid = opt_ptr(tmids);
    a.color = channels > 0 ? opt_ptr(colors) : nullptr;
    a.offsets = offsets.data_ptr<int64_t>();
    a.n_rays = offsets.numel() - 1;
    a.n_samples = N;
    a.channels = static_cast<int>(channels);
    a.eps = static_cast<float>(eps);
    a.tau_max = static_cast<float>(tau_max);
    return a;
}

std::vector<torch::Tensor> composite_forward(torch::Tensor sigmas, torch::Tensor deltas, torch::Tensor tmids,
                                             torch::Tensor colors, torch::Tensor offsets, int64_t channels, double eps,
                                             double tau_max, bool want_trans) {
    const DeviceGuard guard(sigmas.device());
    const auto a = make_args(sigmas, deltas, tmids, colors, offsets, channels, eps, tau_max);
    auto rgb = torch::empty({a.n_rays, channels}, sigmas.options());
    auto depth = torch::empty({a.n_rays}, sigmas.options());
    auto opacity = torch::empty({a.n_rays}, sigmas.options());
    auto weights = torch::empty_like(sigmas);
    // Not wanted: an empty trans and a null pointer, so the kernel skips the per-sample store.
    auto trans = empty_if(want_trans, {a.n_samples}, sigmas.options());
    check_cuda(rfk::composite_forward(a, rgb.data_ptr<float>(), depth.data_ptr<float>(), opacity.data_ptr<float>(),
                                      weights.data_ptr<float>(), opt_mut_ptr(trans), stream()),
               "volrend composite_forward");
    return {rgb, depth, opacity, weights, trans};
}

std::vector<torch::Tensor> composite_backward(torch::Tensor g_rgb, torch::Tensor g_depth, torch::Tensor g_opacity,
                                              torch::Tensor g_weights, torch::Tensor g_trans, torch::Tensor sigmas,
                                              torch::Tensor deltas, torch::Tensor tmids, torch::Tensor colors,
                                              torch::Tensor offsets, torch::Tensor rgb, torch::Tensor depth,
                                              torch::Tensor opacity, int64_t channels, double eps, double tau_max) {
    const DeviceGuard guard(sigmas.device());
    const auto a = make_args(sigmas, deltas, tmids, colors, offsets, channels, eps, tau_max);
    const auto device = sigmas.device();
    const int64_t R = a.n_rays, N = sigmas.numel();
    check_f32(g_depth, "g_depth", device, R);
    check_f32(g_opacity, "g_opacity", device, R);
    check_f32(depth, "depth", device, R);
    check_f32(opacity, "opacity", device, R);
    if (channels > 0) {
        check_f32(g_rgb, "g_rgb", device, R * channels);
        check_f32(rgb, "rgb", device, R * channels);
    }
    if (g_weights.numel()) check_f32(g_weights, "g_weights", device, N);
    if (g_trans.numel()) check_f32(g_trans, "g_trans", device, N);
    auto g_sigmas = torch::empty_like(sigmas);
    auto g_deltas = torch::empty_like(deltas);
    auto g_tmids = torch::empty_like(tmids);
    auto g_colors = torch::empty_like(colors);
    check_cuda(
        rfk::composite_backward(a, channels > 0 ? g_rgb.data_ptr<float>() : nullptr, g_depth.data_ptr<float>(),
                                g_opacity.data_ptr<float>(), opt_ptr(g_weights), opt_ptr(g_trans),
                                channels > 0 ? rgb.data_ptr<float>() : nullptr, depth.data_ptr<float>(),
                                opacity.data_ptr<float>(), g_sigmas.data_ptr<float>(), g_deltas.data_ptr<float>(),
                                opt_mut_ptr(g_tmids), channels > 0 ? g_colors.data_ptr<float>() : nullptr, stream()),
        "volrend composite_backward");
    return {g_sigmas, g_deltas, g_tmids, g_colors};
}

torch::Tensor distortion_forward(torch::Tensor weights, torch::Tensor tmids, torch::Tensor deltas,
                                 torch::Tensor offsets) {
    const DeviceGuard guard(weights.device());
    const auto device = weights.device();
    check_f32(weights, "weights", device);
    check_f32(tmids, "tmids", device, weights.numel());
    check_f32(deltas, "deltas", device, weights.numel());
    const int64_t n_rays = check_offsets(offsets, "offsets", device);
    auto loss = torch::empty({n_rays}, weights.options());
    check_cuda(
        rfk::distortion_forward(weights.data_ptr<float>(), tmids.data_ptr<float>(), deltas.data_ptr<float>(),
                                offsets.data_ptr<int64_t>(), n_rays, weights.numel(), loss.data_ptr<float>(), stream()),
        "volrend distortion_forward");
    return loss;
}

std::vector<torch::Tensor> distortion_backward(torch::Tensor g_loss, torch::Tensor weights, torch::Tensor tmids,
                                               torch::Tensor deltas, torch::Tensor offsets) {
    const DeviceGuard guard(weights.device());
    const auto device = weights.device();
    check_f32(weights, "weights", device);
    check_f32(tmids, "tmids", device, weights.numel());
    check_f32(deltas, "deltas", device, weights.numel());
    const int64_t n_rays = check_offsets(offsets, "offsets", device);
    check_f32(g_loss, "g_loss", device, n_rays);
    auto g_w = torch::empty_like(weights);
    auto g_m = torch::empty_like(tmids);
    auto g_d = torch::empty_like(deltas);
    check_cuda(rfk::distortion_backward(g_loss.data_ptr<float>(), weights.data_ptr<float>(), tmids.data_ptr<float>(),
                                        deltas.data_ptr<float>(), offsets.data_ptr<int64_t>(), n_rays, weights.numel(),
                                        g_w.data_ptr<float>(), g_m.data_ptr<float>(), g_d.data_ptr<float>(), stream()),
               "volrend distortion_backward");
    return {g_w, g_m, g_d};
}

}  // namespace

RFK_BIND_FAMILY(volrend) {
    m.def("volrend_composite_forward", &composite_forward, "packed volume rendering forward");
    m.def("volrend_composite_backward", &composite_backward, "packed volume rendering backward");
    m.def("volrend_distortion_forward", &distortion_forward, "packed distortion loss forward");
    m.def("volrend_distortion_backward", &distortion_backward, "packed distortion loss backward");
}
