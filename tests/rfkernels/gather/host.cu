// Runs the per-lane bodies of csrc/gather/kernels.cu on the CPU (loops over points and team lanes instead of
// a grid; the team's point-gradient shares are summed as the device shuffles do), so the CUDA
// backend's arithmetic is tested on machines without a GPU. Built by tests/helpers/cuda_host.py.
#include "gather/kernels.cu"

namespace {

rfk::GatherArgs args(const float* points, const float* feat, const float* cams, int64_t B, int64_t N, int V, int C,
                     int H, int W, float near_eps, int reduce) {
    return rfk::GatherArgs{points, feat, cams, B, N, V, C, H, W, near_eps, reduce};
}

template <int R>
void forward_all(const rfk::GatherArgs& a, float* out, uint8_t* mask, float* cam, int32_t* arg) {
    const int team = rfk::team_size(a.channels);
    for (int64_t p = 0; p < a.batch * a.n_points; ++p)
        for (int lane = 0; lane < team; ++lane) rfk::gather_forward_lane<R>(a, p, lane, team, out, mask, cam, arg);
}

template <int R, bool FIXED>
void backward_all(const rfk::GatherArgs& a, const float* g_out, const float* g_cam, const float* out,
                  const uint8_t* mask, const int32_t* arg, const rfk::FeatGrad<FIXED>& gf, float* g_points) {
    const int team = rfk::team_size(a.channels);
    for (int64_t p = 0; p < a.batch * a.n_points; ++p) {
        float gp[3] = {0.f, 0.f, 0.f};
        for (int lane = 0; lane < team; ++lane)
            rfk::gather_backward_lane<R, FIXED>(a, p, lane, team, g_out, g_cam, out, mask, arg, gf, g_points != nullptr,
                                                gp);
        if (g_points)
            for (int j = 0; j < 3; ++j) g_points[p * 3 + j] = gp[j];
    }
}

template <int R>
void backward_any(const rfk::GatherArgs& a, const float* g_out, const float* g_cam, const float* out,
                  const uint8_t* mask, const int32_t* arg, float* g_feat, int64_t* g_fixed, float scale,
                  float* g_points) {
    if (g_fixed)
        backward_all<R, true>(a, g_out, g_cam, out, mask, arg, rfk::FeatGrad<true>{nullptr, g_fixed, scale}, g_points);
    else
        backward_all<R, false>(a, g_out, g_cam, out, mask, arg, rfk::FeatGrad<false>{g_feat, nullptr, 0.f}, g_points);
}

}  // namespace

extern "C" {

// The named kernel constants of csrc/gather/kernels.h, for tests/rfkernels/gather/test_constants.py.
void host_gather_constants(int* reduce_none_mean_meanvar_max, int* cam_stride, int* cam_k) {
    const int codes[4] = {rfk::kGatherNone, rfk::kGatherMean, rfk::kGatherMeanVar, rfk::kGatherMax};
    for (int i = 0; i < 4; ++i) reduce_none_mean_meanvar_max[i] = codes[i];
    *cam_stride = rfk::kGatherCamStride;
    *cam_k = rfk::kGatherCamK;
}

void host_gather_forward(const float* points, const float* feat, const float* cams, int64_t B, int64_t N, int V, int C,
                         int H, int W, float near_eps, int reduce, float* out, uint8_t* mask, float* cam,
                         int32_t* arg) {
    const auto a = args(points, feat, cams, B, N, V, C, H, W, near_eps, reduce);
    switch (reduce) {
        case rfk::kGatherNone: forward_all<rfk::kGatherNone>(a, out, mask, cam, arg); break;
        case rfk::kGatherMean: forward_all<rfk::kGatherMean>(a, out, mask, cam, arg); break;
        case rfk::kGatherMeanVar: forward_all<rfk::kGatherMeanVar>(a, out, mask, cam, arg); break;
        default: forward_all<rfk::kGatherMax>(a, out, mask, cam, arg); break;
    }
}

void host_gather_backward(const float* points, const float* feat, const float* cams, int64_t B, int64_t N, int V, int C,
                          int H, int W, float near_eps, int reduce, const float* g_out, const float* g_cam,
                          const float* out, const uint8_t* mask, const int32_t* arg, float* g_feat, int64_t* g_fixed,
                          float scale, float* g_points) {
    const auto a = args(points, feat, cams, B, N, V, C, H, W, near_eps, reduce);
    switch (reduce) {
        case rfk::kGatherNone:
            backward_any<rfk::kGatherNone>(a, g_out, g_cam, out, mask, arg, g_feat, g_fixed, scale, g_points);
            break;
        case rfk::kGatherMean:
            backward_any<rfk::kGatherMean>(a, g_out, g_cam, out, mask, arg, g_feat, g_fixed, scale, g_points);
            break;
        case rfk::kGatherMeanVar:
            backward_any<rfk::kGatherMeanVar>(a, g_out, g_cam, out, mask, arg, g_feat, g_fixed, scale, g_points);
            break;
        default:
            backward_any<rfk::kGatherMax>(a, g_out, g_cam, out, mask, arg, g_feat, g_fixed, scale, g_points);
            break;
    }
}
}
