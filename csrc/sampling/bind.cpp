// PyTorch binding of the proposal-sampling launchers in sampling/kernels.cu and sampling/interlevel.cu.
// Inputs arrive validated, contiguous float32 from rfkernels/sampling/api.py; this file checks
// device/layout, allocates outputs and scratch, and passes raw pointers with the current stream.
#include "common/bind_common.h"

#include "sampling/kernels.h"

namespace {

using namespace rfk::bind;

// bins [N + R], weights [N], offsets [R + 1], jitter [R, J] or empty, blur [R] or empty.
torch::Tensor sample_pdf(torch::Tensor bins, torch::Tensor weights, torch::Tensor offsets, torch::Tensor jitter,
                         int64_t n_samples, double padding, torch::Tensor blur, bool return_edges) {
    const DeviceGuard guard(bins.device());
    const auto device = bins.device();
    check_f32(bins, "bins", device);
    check_f32(weights, "weights", device);
    const int64_t n_rays = check_offsets(offsets, "offsets", device);
    TORCH_CHECK(bins.numel() == weights.numel() + n_rays, "bins must have N + R entries");
    TORCH_CHECK(n_samples >= 1, "n_samples must be >= 1");
    rfk::SampleArgs a;
    a.bins = bins.data_ptr<float>();
    a.weights = opt_ptr(weights);
    a.offsets = offsets.data_ptr<int64_t>();
    a.n_rays = n_rays;
    a.n_bins = weights.numel();
    a.jitter_mode = 0;
    a.jitter = nullptr;
    if (jitter.numel()) {
        check_f32(jitter, "jitter", device);
        TORCH_CHECK(
            jitter.dim() == 2 && jitter.size(0) == n_rays && (jitter.size(1) == 1 || jitter.size(1) == n_samples),
            "jitter must be [R, 1] or [R, n_samples]");
        a.jitter = jitter.data_ptr<float>();
        a.jitter_mode = jitter.size(1) == 1 ? 1 : 2;
    }
    a.n_samples = static_cast<int>(n_samples);
    a.return_edges = return_edges;
    a.padding = static_cast<float>(padding);
    a.blur = nullptr;
    if (blur.numel()) {
        check_f32(blur, "blur", device, n_rays);  // one entry per ray
        a.blur = blur.data_ptr<float>();
    }
    auto cdf = torch::empty_like(bins);
    const int64_t n_knots = a.blur ? 2 * bins.numel() : 0;
    auto kx = torch::empty({n_knots}, bins.options());
    auto kp = torch::empty({n_knots}, bins.options());
    auto kf = torch::empty({n_knots}, bins.options());
    auto out = torch::empty({n_rays, return_edges ? n_samples + 1 : n_samples}, bins.options());
    check_cuda(rfk::sample_pdf(a, cdf.data_ptr<float>(), a.blur ? kx.data_ptr<float>() : nullptr,
                               a.blur ? kp.data_ptr<float>() : nullptr, a.blur ? kf.data_ptr<float>() : nullptr,
                               out.data_ptr<float>(), stream()),
               "sampling sample_pdf");
    return out;
}

rfk::InterlevelArgs interlevel_args(const torch::Tensor& t, const torch::Tensor& w, const torch::Tensor& off,
                                    const torch::Tensor& tp, const torch::Tensor& wp, const torch::Tensor& offp,
                                    const torch::Tensor& blur, double eps) {
    const auto device = t.device();
    check_f32(t, "fine_bins", device);
    check_f32(w, "fine_weights", device);
    check_f32(tp, "prop_bins", device);
    check_f32(wp, "prop_weights", device);
    const int64_t n_rays = check_offsets(off, "fine offsets", device);
    check_offsets(offp, "prop offsets", device);
    TORCH_CHECK(offp.numel() - 1 == n_rays, "fine and proposal offsets must describe the same rays");
    TORCH_CHECK(t.numel() == w.numel() + n_rays && tp.numel() == wp.numel() + n_rays, "bins must have N + R entries");
    rfk::InterlevelArgs a;
    a.t = t.data_ptr<float>();
    a.w = opt_ptr(w);
    a.off = off.data_ptr<int64_t>();
    a.tp = tp.data_ptr<float>();
    a.wp = opt_ptr(wp);
    a.offp = offp.data_ptr<int64_t>();
    a.n_rays = n_rays;
    a.n_fine = w.numel();
    a.n_prop = wp.numel();
    a.blur = nullptr;
    if (blur.defined() && blur.numel()) {
        check_f32(blur, "blur", device, n_rays);  // one entry per ray
        a.blur = blur.data_ptr<float>();
    }
    a.eps = static_cast<float>(eps);
    return a;
}

// -> {loss [R], dwp [Np] (blurred; empty for the outer loss)}
std::vector<torch::Tensor> interlevel_forward(torch::Tensor t, torch::Tensor w, torch::Tensor off, torch::Tensor tp,
                                              torch::Tensor wp, torch::Tensor offp, torch::Tensor blur, double eps) {
    const DeviceGuard guard(t.device());
    const auto a = interlevel_args(t, w, off, tp, wp, offp, blur, eps);
    auto f64 = tp.options().dtype(torch::kFloat64);
    auto cy = torch::empty({a.blur ? t.numel() : tp.numel()}, f64);
    auto g = torch::empty({a.blur ? t.numel() : 0}, f64);
    auto loss = torch::empty({a.n_rays}, t.options());
    auto dwp = torch::empty({a.blur ? wp.numel() : 0}, wp.options());
    check_cuda(rfk::interlevel_forward(a, cy.data_ptr<double>(), a.blur ? g.data_ptr<double>() : nullptr,
                                       loss.data_ptr<float>(), a.blur ? dwp.data_ptr<float>() : nullptr, stream()),
               "sampling interlevel_forward");
    return {loss, dwp};
}

// Outer loss only (the blurred loss's gradient is dwp * g_loss).
torch::Tensor interlevel_outer_backward(torch::Tensor g_loss, torch::Tensor t, torch::Tensor w, torch::Tensor off,
                                        torch::Tensor tp, torch::Tensor wp, torch::Tensor offp, double eps) {
    const DeviceGuard guard(t.device());
    const auto a = interlevel_args(t, w, off, tp, wp, offp, torch::Tensor(), eps);
    check_f32(g_loss, "g_loss", t.device(), a.n_rays);  // one entry per ray
    auto g_wp = torch::zeros_like(wp);
    if (wp.numel() == 0) return g_wp;
    auto f64 = tp.options().dtype(torch::kFloat64);
    auto cy = torch::empty({tp.numel()}, f64);
    auto u = torch::zeros({wp.numel()}, f64);
    check_cuda(rfk::interlevel_outer_backward(a, g_loss.data_ptr<float>(), cy.data_ptr<double>(), u.data_ptr<double>(),
                                              g_wp.data_ptr<float>(), stream()),
               "sampling interlevel_outer_backward");
    return g_wp;
}

}  // namespace

RFK_BIND_FAMILY(sampling) {
    m.def("sampling_sample_pdf", &sample_pdf, "packed inverse-CDF sampling (optionally blurred)");
    m.def("sampling_interlevel_forward", &interlevel_forward, "packed interlevel loss forward");
    m.def("sampling_interlevel_outer_backward", &interlevel_outer_backward, "packed outer interlevel loss backward");
}
