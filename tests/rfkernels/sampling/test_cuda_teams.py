"""The CUDA sampling and interlevel kernels' team-of-lanes algorithm (csrc/sampling/, common/team.cuh) run on
the CPU at every team width against the torch reference: histograms shorter than, equal to and longer than
one chunk (CDF, knot-CDF and float64 prefix carries across chunks), one bin, ragged packed rays, interval
edges from centres handed between lanes and across chunks."""

import pytest
import torch

from rfkernels.sampling import reference
from tests.helpers import cuda_host
from tests.helpers.numerics import assert_close, assert_close_scaled

pytestmark = pytest.mark.skipif(cuda_host.nvcc_missing_reason() is not None, reason="nvcc not found")

WIDTHS = [8, 16, 32]
COUNTS = [0, 1, 7, 8, 9, 16, 17, 33, 70]  # bins per ray: an empty ray, chunk boundaries of every width


def _histograms(counts, seed):
    """Packed (bins [N + R], weights [N], offsets [R + 1]) and the per-ray ([1, S + 1], [1, S]) pairs."""
    gen = torch.Generator().manual_seed(seed)
    rays = []
    for S in counts:
        t = torch.sort(torch.rand(1, S + 1, generator=gen) * 4.0 + 0.5, -1).values
        if S > 4:
            t[0, 3] = t[0, 2]  # a zero-width bin
        rays.append((t, torch.rand(1, S, generator=gen) ** 2))
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts), 0)
    return torch.cat([t[0] for t, _ in rays]), torch.cat([w[0] for _, w in rays]), offsets, rays


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "n, blurred, edges", [(5, False, False), (40, False, True), (1, False, True), (24, True, True)]
)
def test_sample_matches_reference_at_every_team_width(width, n, blurred, edges):
    from tests.rfkernels.sampling import cuda_host as host

    bins, weights, offsets, rays = _histograms(COUNTS, seed=width + n)
    R = len(rays)
    jitter = torch.rand(R, n, generator=torch.Generator().manual_seed(n))
    blur = torch.full((R,), 0.05) if blurred else None
    out = host.sample(bins, weights, offsets, jitter, n, 0.01, blur, edges, max(COUNTS), team=width)
    for r, (t, w) in enumerate(rays):
        ref = reference.sample_pdf(t, w, n, jitter[r : r + 1], 0.01, None if blur is None else blur[r : r + 1], edges)
        assert_close(out[r], ref[0], atol=2e-5, name=f"ray {r} ({t.shape[1] - 1} bins)")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("blur", [None, 0.02])
def test_interlevel_matches_reference_at_every_team_width(width, blur):
    from tests.rfkernels.sampling import cuda_host as host

    t, w, t_off, fine = _histograms(COUNTS, seed=width)
    tp, wp, tp_off, prop = _histograms(list(reversed(COUNTS)), seed=width + 1)
    R = len(fine)
    blur_t = torch.full((R,), blur) if blur is not None else None
    loss, _ = host.interlevel_forward(t, w, t_off, tp, wp, tp_off, blur_t, 1e-7, 0, 0, team=width)
    g_loss = torch.linspace(0.5, 2.0, R)
    g_wp = (
        host.interlevel_backward(g_loss, t, w, t_off, tp, wp, tp_off, 1e-7, 0, 0, team=width) if blur is None else None
    )
    for r, ((tf, wf), (tq, wq)) in enumerate(zip(fine, prop)):
        wq64 = wq.double().requires_grad_()
        if blur is None:
            ref = reference.lossfun_outer(tf.double(), wf.double(), tq.double(), wq64, 1e-7)
        else:
            ref = reference.lossfun_blurred(tf.double(), wf.double(), tq.double(), wq64, blur_t[r : r + 1], 1e-7)
        assert_close(loss[r], ref[0], atol=1e-6, rtol=1e-5, name=f"ray {r} loss")
        if g_wp is not None:
            (g_ref,) = torch.autograd.grad(ref[0] * g_loss[r].double(), wq64)
            ray = slice(int(tp_off[r]), int(tp_off[r + 1]))
            assert_close_scaled(g_wp[ray], g_ref[0], rel=1e-6, name=f"ray {r} grad prop_weights")
