// Proposal-sampling launchers (torch-free). Packed rays: ray r owns weights [off[r], off[r+1]) and
// the S_r + 1 edges [off[r] + r, off[r+1] + r]. Float buffers are float32 and contiguous; the
// interlevel scratch is float64 (see rfkernels/sampling/triton_interlevel.py for why).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace rfk {

struct SampleArgs {
    const float* bins;       // [N + R] edges
    const float* weights;    // [N] masses
    const int64_t* offsets;  // [R + 1] over the weights
    int64_t n_rays;
    int64_t n_bins;          // N (the mean bins per ray picks the team width: common/team.cuh)
    const float* jitter;     // [R, n] (jitter_mode 2), [R, 1] (1) or null (0: midpoints)
    int jitter_mode;
    int n_samples;           // n
    bool return_edges;       // write n + 1 interval edges instead of n samples
    float padding;           // histogram padding added to positive-width bins
    const float* blur;       // [R] blur half-widths, or null (no blur)
};

// Scratch: cdf [N + R]; knot_x, knot_p, knot_f [2 (N + R)] (only read/written when blur != null).
// Output: out [R, n] or [R, n + 1].
cudaError_t sample_pdf(const SampleArgs& a, float* cdf, float* knot_x, float* knot_p, float* knot_f, float* out,
                       cudaStream_t stream);

struct InterlevelArgs {
    const float* t;          // fine edges [N + R]
    const float* w;          // fine weights [N]
    const int64_t* off;      // [R + 1] over the fine weights
    const float* tp;         // proposal edges [Np + R]
    const float* wp;         // proposal weights [Np]
    const int64_t* offp;     // [R + 1] over the proposal weights
    int64_t n_rays;
    int64_t n_fine;          // N and Np: the team widths of the passes over fine / proposal bins
    int64_t n_prop;
    const float* blur;       // [R] blur half-widths (Zip-NeRF loss) or null (mip-NeRF 360 lossfun_outer)
    float eps;
};

// Outer loss (blur == null): scratch cy [Np + R] float64 (proposal prefix mass), g unused.
// Blurred loss: scratch cy, g [N + R] float64 (fine prefix mass and its integral); also writes
// dwp [Np] = d loss / d wp (elementwise: the blurred fine mass does not depend on wp).
// Output: loss [R].
cudaError_t interlevel_forward(const InterlevelArgs& a, double* cy, double* g, float* loss, float* dwp,
                               cudaStream_t stream);

// Outer loss backward. Scratch: cy [Np + R] float64, u [Np] float64 zero-initialized by the caller.
// Output: g_wp [Np].
cudaError_t interlevel_outer_backward(const InterlevelArgs& a, const float* g_loss, double* cy, double* u, float* g_wp,
                                      cudaStream_t stream);

}  // namespace rfk
