"""Every fused rfkernels op is a registered torch operator (issue 22): ``torch.library.opcheck`` (schema,
autograd registration, fake tensors, AOT dispatch with dynamic shapes) for each fused backend runnable
here (Triton in the interpreter; ``cuda`` = the CUDA host emulation where nvcc is present), padded,
packed (ragged, with empty rays) and empty inputs; meta tensors give the public ops' output shapes;
the public ops trace into one graph (``fullgraph=True``) with every backend, validation on."""

from __future__ import annotations

import pytest
import torch

import rfkernels as rk
from rfkernels import _dispatch, _operators, _packing
from rfkernels.gather import ops as gather_ops
from rfkernels.gather.adapters import pack_cameras
from rfkernels.hashgrid import ops as hashgrid_ops
from rfkernels.hashgrid.layout import make_layout
from rfkernels.occgrid import ops as occgrid_ops
from rfkernels.sampling import ops as sampling_ops
from rfkernels.volrend import ops as volrend_ops
from tests.helpers.backends import all_backends
from tests.helpers.gather_scenes import random_scene
from tests.helpers.occ_scenes import nested_aabbs, random_binaries, random_rays

META = torch.device("meta")
HG = dict(n_levels=2, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4, per_level_scale=1.5)
RAGGED = torch.tensor([0, 3, 3, 8, 9])  # 4 rays of 3, 0, 5, 1 samples


@pytest.fixture(params=["volrend", "sampling", "hashgrid", "gather", "occgrid"])
def family_backends(request):
    """(family, its fused backends runnable here)."""
    with all_backends(request.param) as names:
        fused = [n for n in names if n != "torch"]
        if not fused:
            pytest.skip(f"no fused {request.param} backend runs here")
        yield request.param, fused


def _rays(offsets, channels=3, grad=True):
    """Packed per-sample tensors over ``offsets``: sigmas, deltas, tmids (sorted per ray), colors."""
    g = torch.Generator().manual_seed(int(offsets[-1]) + channels)
    N = int(offsets[-1])
    deltas = torch.rand(N, generator=g) * 0.2 + 0.01
    sigmas = torch.rand(N, generator=g) * 4
    tmids = torch.cumsum(deltas, 0)
    colors = torch.rand(N, channels, generator=g)
    return [t.requires_grad_(grad) for t in (sigmas, deltas, tmids, colors)]


def _volrend_cases(backend):
    padded = torch.arange(4) * 5  # 3 rays of 5
    for offsets in (padded, RAGGED, torch.zeros(3, dtype=torch.long)):  # last: 2 rays, no samples
        sig, dlt, tm, col = _rays(offsets)
        yield volrend_ops.composite, (sig, dlt, tm, col, offsets, 0.0, False, backend)  # volume_render's call
        yield volrend_ops.distortion, (sig, tm, dlt, offsets, backend)
    sig, dlt, _, _ = _rays(RAGGED)
    yield volrend_ops.composite, (sig, dlt, None, None, RAGGED, 1e-2, True, backend)  # render_weights' call


def _sampling_cases(backend):
    for offsets in (torch.arange(4) * 5, RAGGED):
        g = torch.Generator().manual_seed(len(offsets))
        N, R = int(offsets[-1]), len(offsets) - 1
        bins = torch.cumsum(torch.rand(N + R, generator=g), 0)
        w = torch.rand(N, generator=g)
        max_bins = _packing.max_count(offsets)
        jitter = torch.rand(R, 4, generator=g)
        yield sampling_ops.sample_pdf, (bins, w, offsets, jitter, 4, 0.01, None, False, max_bins, backend)
        yield sampling_ops.sample_pdf, (bins, w, offsets, None, 3, 0.0, torch.full((R,), 0.05), True, max_bins, backend)
        prop = torch.arange(R + 1) * 2
        tp = torch.cumsum(torch.rand(2 * R + R, generator=g), 0)
        wp = torch.rand(2 * R, generator=g).requires_grad_()
        for blur in (None, torch.full((R,), 0.1)):
            yield sampling_ops.interlevel, (bins, w, offsets, tp, wp, prop, blur, 1e-7, max_bins, 2, backend)


def _hashgrid_cases(backend):
    layout = make_layout(3, 3, 2, 10, 4, max_resolution=64)  # 2 dense levels and 1 hashed
    dims, b, interp = hashgrid_ops._fields(layout)
    g = torch.Generator().manual_seed(0)
    params = (torch.rand(layout.n_params, generator=g) * 2 - 1).requires_grad_()
    for n in (40, 0):
        x = torch.rand(n, 3, generator=g).requires_grad_()
        s = (torch.rand(n, generator=g) * 0.05).requires_grad_()
        for scales, det, fmt in ((s, False, "point_major"), (None, True, "feature_major")):
            yield hashgrid_ops.encode_op, (x, params, scales, dims, b, interp, det, fmt, None, backend)
    x = torch.rand(20, 3, generator=g)
    g_out = torch.rand(20, 6, generator=g)
    yield (
        hashgrid_ops.encode_double_backward,
        (torch.rand(20, 3, generator=g), g_out, x, params.detach(), None, dims, b, interp, "point_major", None)
        + (True, True, True, False, backend),
    )


def _gather_cases(backend):
    torch.manual_seed(0)
    points, feats, K, E = random_scene(1, 12, 3, 2, 5, 6, (10, 12), "cpu")
    cams = pack_cameras(K, E, (10, 12), (5, 6), "opencv")
    feats = feats.permute(0, 1, 3, 4, 2).contiguous().requires_grad_()
    points = points.requires_grad_()
    for reduce, want_cam, det in (
        ("none", True, False),
        ("mean", False, True),
        ("mean_var", False, False),
        ("max", True, False),
    ):
        yield gather_ops.gather, (points, feats, cams, 1e-4, reduce, want_cam, det, backend)


def _occgrid_cases(backend):
    g = torch.Generator().manual_seed(0)
    for n_rays, levels in ((6, 2), (0, 1)):
        o, d = random_rays(n_rays, g, device="cpu")
        binaries, aabbs = random_binaries(levels, (5, 4, 3), 0.5, g, device="cpu"), nested_aabbs(levels, device="cpu")
        yield occgrid_ops.intersect, (o, d, aabbs, 0.0, 1e10, 1e10, backend)
        near, far, mask = torch.zeros(n_rays), torch.full((n_rays,), 1e10), torch.ones(n_rays, dtype=torch.bool)
        yield occgrid_ops.traverse, (o, d, binaries, aabbs, near, far, mask, 0.1, 0.0, 1000, backend)


CASES = {
    "volrend": _volrend_cases,
    "sampling": _sampling_cases,
    "hashgrid": _hashgrid_cases,
    "gather": _gather_cases,
    "occgrid": _occgrid_cases,
}


QUICK_CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")


def test_opcheck_quick(family_backends):
    """Schema, autograd registration and fake tensors of each operator with the first fused backend."""
    family, backends = family_backends
    seen = set()
    for op, args in CASES[family](backends[0]):
        if op not in seen:  # one case per operator (the interpreter is slow): all of them in the slow test
            seen.add(op)
            torch.library.opcheck(op, args, test_utils=QUICK_CHECKS)


@pytest.mark.slow
def test_opcheck_every_operator(family_backends):
    """Every opcheck (AOT dispatch, static and dynamic shapes, included) for every fused backend."""
    family, backends = family_backends
    for backend in backends:
        for op, args in CASES[family](backend):
            torch.library.opcheck(op, args)


def test_every_fused_op_is_registered():
    registered = set(_operators.operators())
    for family in _dispatch.families():
        assert any(name.startswith(f"rfkernels::{family}_") for name in registered), family
    for name in registered:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "Meta"), name  # fake = meta kernel


# ----------------------------------------------------------------------------- meta tensors, shapes
def _meta(*shape):
    return torch.empty(shape, device=META)


def test_meta_tensors_give_shapes():
    R, S, C = 3, 5, 4
    out = rk.volume_render(_meta(R, S), _meta(R, S, C), _meta(R, S), _meta(R, S), background=_meta(C))
    assert [tuple(t.shape) for t in out] == [(R, C), (R,), (R,), (R, S)] and out.rgb.is_meta
    off = RAGGED.to(META)
    out = rk.volume_render(_meta(9), _meta(9, C), _meta(9), _meta(9), offsets=off)
    assert [tuple(t.shape) for t in out] == [(4, C), (4,), (4,), (9,)]
    ri = torch.zeros(9, dtype=torch.long, device=META)
    assert rk.distortion_loss(_meta(9), _meta(9), _meta(9), ray_indices=ri, n_rays=6).shape == (6,)
    assert [t.shape for t in rk.render_weights(_meta(R, S), _meta(R, S), _meta(R, S))] == [(R, S)] * 3
    assert rk.sample_pdf(_meta(R, S + 1), _meta(R, S), 7).shape == (R, 7)
    assert rk.sample_pdf(_meta(9 + 4), _meta(9), 2, offsets=off, return_edges=True).shape == (4, 3)
    assert rk.interlevel_loss(_meta(R, S + 1), _meta(R, S), _meta(9 + R), _meta(9), prop_offsets=off[:4]).shape == (R,)
    enc = rk.hash_grid_encode(_meta(10, 3), _meta(make_layout(3, **HG).n_params), **HG)
    assert enc.shape == (10, 4) and enc.is_meta
    points, feats, K, E = (t.to(META) for t in random_scene(2, 7, 3, 5, 4, 6, (8, 12), "cpu"))
    out = rk.gather_features(points, feats, K, E, reduce="mean_var", return_camera_coords=True)
    assert [tuple(t.shape) for t in out] == [(2, 7, 10), (2, 7, 3), (2, 7, 3, 3)] and out.mask.dtype == torch.bool


def test_meta_with_explicit_torch_backend_padded():
    """The torch reference runs on meta tensors too where no size depends on data (padded rays)."""
    out = rk.volume_render(_meta(2, 3), _meta(2, 3, 3), _meta(2, 3), _meta(2, 3), backend="torch")
    assert [tuple(t.shape) for t in out] == [(2, 3), (2,), (2,), (2, 3)]


# ------------------------------------------------------------------ public ops trace without breaks
def _public_calls(packed_rays: bool):
    g = torch.Generator().manual_seed(0)
    R, S = 4, 6
    sig, ts = torch.rand(R, S, generator=g) * 3, torch.sort(torch.rand(R, S + 1, generator=g), -1).values
    col = torch.rand(R, S, 3, generator=g)
    w = torch.rand(R, S, generator=g)
    x = torch.rand(16, 3, generator=g)
    params = torch.rand(make_layout(3, **HG).n_params, generator=g)

    def fn():
        out = rk.volume_render(sig, col, ts[:, :-1], ts[:, 1:], background=1.0)
        dist = rk.distortion_loss(out.weights, ts[:, :-1], ts[:, 1:])
        inter = rk.interlevel_loss(ts, w, ts, out.weights)
        samples = rk.sample_pdf(ts, w, 5, mode="midpoint")
        enc = rk.hash_grid_encode(x, params, **HG)
        if not packed_rays:
            return out.rgb, dist, inter, samples, enc
        packed = rk.volume_render(
            sig.view(-1),
            col.view(-1, 3),
            ts[:, :-1].reshape(-1),
            ts[:, 1:].reshape(-1),
            ray_indices=torch.arange(R).repeat_interleave(S),
            n_rays=R,
        )
        return out.rgb, dist, inter, samples, enc, packed.rgb

    return fn


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_public_ops_trace_into_one_graph(backend):
    """``fullgraph=True`` (aot_eager: dynamo + fake tensors + AOT autograd, no inductor codegen) with
    validation on: value checks are skipped while tracing, shape checks run; values match eager.
    Packed rays only through the fused operators: the torch reference pads them to the longest ray,
    a size that depends on the data (docs/kernels.md)."""
    if backend not in rk.available_backends("cpu"):
        pytest.skip(f"{backend} does not run here")
    fn = _public_calls(packed_rays=backend != "torch")
    with rk.use_backend(backend):
        eager = fn()
        traced = torch.compile(fn, fullgraph=True, backend="aot_eager")()
    for a, b in zip(traced, eager):
        torch.testing.assert_close(a, b)
