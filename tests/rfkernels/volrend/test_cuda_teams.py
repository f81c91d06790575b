"""The CUDA volume-rendering kernels' team-of-lanes algorithm (csrc/volrend/kernels.cu, common/team.cuh) run
on the CPU at every team width against the torch reference, values and gradients: rays shorter than, equal to
and longer than one chunk (carries across chunk boundaries), empty rays, one sample, ragged packed rays."""

import pytest
import torch

from rfkernels.volrend import reference
from tests.helpers import cuda_host
from tests.helpers.numerics import assert_close, assert_close_scaled

pytestmark = pytest.mark.skipif(cuda_host.nvcc_missing_reason() is not None, reason="nvcc not found")

WIDTHS = [8, 16, 32]
COUNTS = [0, 1, 7, 8, 9, 16, 17, 31, 32, 33, 70, 0, 2]  # chunk boundaries of every width, empty rays


def _packed(counts, C, seed):
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts), 0)
    N = int(offsets[-1])
    sigmas = torch.rand(N, generator=gen) * 8.0
    sigmas[::11] = 0.0
    deltas = torch.rand(N, generator=gen) * 0.3
    deltas[::13] = 0.0
    tmids = torch.rand(N, generator=gen) * 4.0
    colors = torch.rand(N, C, generator=gen)
    return sigmas, deltas, tmids, colors, offsets


def _rays(offsets):
    return [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("C, eps", [(3, 0.0), (6, 1e-3)])  # C = 6: two colour sweeps
def test_composite_matches_reference_at_every_team_width(width, C, eps):
    from tests.rfkernels.volrend import cuda_host as host

    sigmas, deltas, tmids, colors, offsets = _packed(COUNTS, C, seed=width + C)
    outs = host.composite_forward(sigmas, deltas, tmids, colors, offsets, eps, team=width)
    gen = torch.Generator().manual_seed(1)
    g_out = [torch.randn(o.shape, generator=gen) for o in outs]
    g_in = host.composite_backward(*g_out, sigmas, deltas, tmids, colors, offsets, *outs[:3], eps, team=width)
    for r, ray in enumerate(_rays(offsets)):
        inputs = [x[ray].unsqueeze(0).clone().requires_grad_() for x in (sigmas, deltas, tmids, colors)]
        ref = reference.composite_padded(*inputs, early_stop_eps=eps)
        ref_outs = (ref[0][0], ref[1][0], ref[2][0], ref[3][0], ref[4][0])
        ours = (outs[0][r], outs[1][r], outs[2][r], outs[3][ray], outs[4][ray])
        for name, a, b in zip(("rgb", "depth", "opacity", "weights", "trans"), ours, ref_outs):
            assert_close(a, b, name=f"ray {r} {name}")
        seeds = (g_out[0][r], g_out[1][r], g_out[2][r], g_out[3][ray], g_out[4][ray])
        if ray.stop == ray.start:
            continue
        loss = sum((o * g).sum() for o, g in zip(ref_outs, seeds))
        ref_g = torch.autograd.grad(loss, inputs)
        for name, a, b in zip(("sigmas", "deltas", "tmids", "colors"), g_in, ref_g):
            assert_close_scaled(a[ray], b[0], rel=5e-4, name=f"ray {r} grad_{name}")


@pytest.mark.parametrize("width", WIDTHS)
def test_distortion_matches_reference_at_every_team_width(width):
    from tests.rfkernels.volrend import cuda_host as host

    _, deltas, tmids, _, offsets = _packed(COUNTS, 1, seed=width)
    weights = torch.rand(deltas.shape, generator=torch.Generator().manual_seed(width)) * 0.2
    loss = host.distortion_forward(weights, tmids, deltas, offsets, team=width)
    g_loss = torch.linspace(-1.0, 2.0, offsets.numel() - 1)
    grads = host.distortion_backward(g_loss, weights, tmids, deltas, offsets, team=width)
    for r, ray in enumerate(_rays(offsets)):
        inputs = [x[ray].unsqueeze(0).clone().requires_grad_() for x in (weights, tmids, deltas)]
        ref = reference.distortion_padded(*inputs)
        assert_close(loss[r], ref[0], name=f"ray {r} loss")
        if ray.stop == ray.start:
            continue
        ref_g = torch.autograd.grad((ref * g_loss[r]).sum(), inputs)
        for name, a, b in zip(("weights", "tmids", "deltas"), grads, ref_g):
            assert_close_scaled(a[ray], b[0], name=f"ray {r} grad_{name}")


def test_team_width_follows_the_samples_per_ray():
    from tests.rfkernels.volrend import cuda_host as host

    assert [host.team_width(n, 10) for n in (0, 10, 80, 81, 160, 161, 640)] == [8, 8, 8, 16, 16, 32, 32]
