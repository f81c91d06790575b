// Runs the per-ray bodies of csrc/occgrid/kernels.cu on the CPU (a loop over rays instead of a grid;
// the offsets between the two passes are summed here as the binding does), so the CUDA backend's
// marching arithmetic is tested on machines without a GPU. Built by tests/helpers/cuda_host.py.
#include "occgrid/kernels.cu"

extern "C" {

// The named kernel constants of csrc/occgrid/kernels.h, for tests/rfkernels/occgrid/test_cuda_host.py.
void host_occgrid_constants(int* max_levels, float* dda_eps, float* dt_max) {
    *max_levels = rfk::kOccgridMaxLevels;
    *dda_eps = rfk::kOccgridDdaEps;
    *dt_max = rfk::kOccgridDtMax;
}

void host_occgrid_intersect(const float* rays_o, const float* rays_d, const float* aabbs, int64_t n_rays, int n_boxes,
                            float near, float far, float miss, float* t_mins, float* t_maxs, uint8_t* hits) {
    for (int64_t i = 0; i < n_rays * n_boxes; ++i) {
        const int64_t r = i / n_boxes;
        float tmin, tmax;
        const bool hit =
            rfk::slab_intersect(rays_o + r * 3, rays_d + r * 3, aabbs + (i % n_boxes) * 6, near, far, tmin, tmax);
        t_mins[i] = hit ? tmin : miss;
        t_maxs[i] = hit ? tmax : miss;
        hits[i] = hit;
    }
}

// Count pass: counts [R], terminate [R]; the caller sums offsets and calls host_occgrid_fill.
void host_occgrid_count(const rfk::OccgridArgs* a, int64_t* counts, float* terminate) {
    for (int64_t r = 0; r < a->n_rays; ++r) {
        const auto s = rfk::march_ray<false>(*a, r, nullptr, nullptr);
        counts[r] = s.count;
        terminate[r] = s.terminate;
    }
}

void host_occgrid_fill(const rfk::OccgridArgs* a, const int64_t* offsets, float* t_starts, float* t_ends) {
    for (int64_t r = 0; r < a->n_rays; ++r)
        if (offsets[r + 1] > offsets[r]) rfk::march_ray<true>(*a, r, t_starts + offsets[r], t_ends + offsets[r]);
}
}
