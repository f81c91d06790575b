// PyTorch binding of the occupancy-grid launchers in occgrid/kernels.cu. Inputs arrive validated and
// contiguous float32 (bool grids and masks) from rfkernels/occgrid/api.py; this file checks
// device/layout, allocates the outputs and runs the count pass, the offsets, then the fill pass.
#include "common/bind_common.h"

#include "occgrid/kernels.h"

namespace {

using namespace rfk::bind;

// -> {t_mins [R, M], t_maxs [R, M], hits [R, M] bool}
std::vector<torch::Tensor> occgrid_intersect(torch::Tensor rays_o, torch::Tensor rays_d, torch::Tensor aabbs,
                                             double near, double far, double miss) {
    const DeviceGuard guard(rays_o.device());
    const auto device = rays_o.device();
    const int64_t R = rays_o.size(0), M = aabbs.size(0);
    check_f32(rays_o, "rays_o", device, R * 3);
    check_f32(rays_d, "rays_d", device, R * 3);
    check_f32(aabbs, "aabbs", device, M * 6);
    auto t_mins = torch::empty({R, M}, rays_o.options());
    auto t_maxs = torch::empty({R, M}, rays_o.options());
    auto hits = torch::empty({R, M}, rays_o.options().dtype(torch::kBool));
    check_cuda(rfk::occgrid_intersect(rays_o.data_ptr<float>(), rays_d.data_ptr<float>(), aabbs.data_ptr<float>(), R,
                                      static_cast<int>(M), static_cast<float>(near), static_cast<float>(far),
                                      static_cast<float>(miss), t_mins.data_ptr<float>(), t_maxs.data_ptr<float>(),
                                      reinterpret_cast<uint8_t*>(hits.data_ptr<bool>()), stream()),
               "occgrid_intersect");
    return {t_mins, t_maxs, hits};
}

// -> {offsets [R + 1] int64, t_starts [N], t_ends [N], terminate [R]}
std::vector<torch::Tensor> occgrid_traverse(torch::Tensor rays_o, torch::Tensor rays_d, torch::Tensor binaries,
                                            torch::Tensor aabbs, torch::Tensor near, torch::Tensor far,
                                            torch::Tensor rays_mask, double step_size, double cone_angle,
                                            int64_t max_steps) {
    const DeviceGuard guard(rays_o.device());
    const auto device = rays_o.device();
    const int64_t R = rays_o.size(0), L = binaries.size(0);
    TORCH_CHECK(binaries.dim() == 4 && L >= 1 && L <= rfk::kOccgridMaxLevels,
                "binaries must be [L, X, Y, Z], L <= ", rfk::kOccgridMaxLevels);
    check_f32(rays_o, "rays_o", device, R * 3);
    check_f32(rays_d, "rays_d", device, R * 3);
    check_tensor(binaries, "binaries", device, torch::kBool);
    check_f32(aabbs, "aabbs", device, L * 6);
    check_f32(near, "near", device, R);
    check_f32(far, "far", device, R);
    check_tensor(rays_mask, "rays_mask", device, torch::kBool, R);
    rfk::OccgridArgs a;
    a.rays_o = rays_o.data_ptr<float>();
    a.rays_d = rays_d.data_ptr<float>();
    a.binaries = reinterpret_cast<const uint8_t*>(binaries.data_ptr<bool>());
    a.aabbs = aabbs.data_ptr<float>();
    a.near = near.data_ptr<float>();
    a.far = far.data_ptr<float>();
    a.rays_mask = reinterpret_cast<const uint8_t*>(rays_mask.data_ptr<bool>());
    a.n_rays = R;
    a.levels = static_cast<int>(L);
    for (int ax = 0; ax < 3; ++ax) a.res[ax] = static_cast<int>(binaries.size(ax + 1));
    a.step_size = static_cast<float>(step_size);
    a.cone_angle = static_cast<float>(cone_angle);
    a.max_steps = max_steps;
    auto counts = torch::empty({R}, rays_o.options().dtype(torch::kInt64));
    auto terminate = torch::empty({R}, rays_o.options());
    check_cuda(rfk::occgrid_count(a, counts.data_ptr<int64_t>(), terminate.data_ptr<float>(), stream()),
               "occgrid_count");
    auto offsets = torch::zeros({R + 1}, counts.options());
    offsets.slice(0, 1).copy_(counts.cumsum(0));
    const int64_t N = offsets[R].item<int64_t>();  // the output size: one sync
    auto t_starts = torch::empty({N}, rays_o.options());
    auto t_ends = torch::empty({N}, rays_o.options());
    if (N > 0) {
        check_cuda(rfk::occgrid_fill(a, offsets.data_ptr<int64_t>(), t_starts.data_ptr<float>(),
                                     t_ends.data_ptr<float>(), stream()),
                   "occgrid_fill");
    }
    return {offsets, t_starts, t_ends, terminate};
}

}  // namespace

RFK_BIND_FAMILY(occgrid) {
    m.def("occgrid_intersect", &occgrid_intersect, "ray / axis-aligned box slab intersection");
    m.def("occgrid_traverse", &occgrid_traverse, "occupancy-grid marching (count pass, offsets, fill pass)");
}
