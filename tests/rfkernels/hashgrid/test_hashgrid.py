"""Hash-grid encoding: fused backends vs the torch reference (values, table/point/scale grads),
the reference vs a scalar re-implementation of the documented index formula, the tcnn layout,
clamping/validation, gradcheck in float64 and the double backward."""

import math

import pytest
import torch

import rfkernels
from rfkernels import _dispatch
from rfkernels import hashgrid as hg
from rfkernels.hashgrid import deterministic, ops, reference
from rfkernels.hashgrid import layout as hl
from tests.helpers.numerics import assert_close, assert_close_scaled

FAMILY = "hashgrid"  # fused_backend (conftest) also runs csrc/hashgrid/kernels.cu on the host


def make_encoding(D, L=4, F=2, T=10, base=4, pls=1.7, interp="linear", dtype=torch.float32, device="cpu", **kw):
    enc = rfkernels.HashGridEncoding(
        D, L, F, T, base, per_level_scale=pls, interpolation=interp, dtype=dtype, device=device, **kw
    )
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)
    return enc


def run(enc, points, scales, backend, seed_grad):
    """-> (out, grad_points, grad_params, grad_scales) for loss = <out, seed_grad>."""
    enc.backend = backend
    inputs = [points, enc.params] + ([scales] if scales is not None else [])
    out = enc(points, scales)
    grads = torch.autograd.grad((out * seed_grad).sum(), inputs)
    return (out, *grads, *([None] if scales is None else []))


def compare(enc, points, scales, backend, rel=2e-4):
    seed_grad = torch.randn(points.shape[0], enc.output_dim, device=points.device)
    ref = run(enc, points, scales, "torch", seed_grad)
    fus = run(enc, points, scales, backend, seed_grad)
    fp16 = enc.params.dtype == torch.float16
    assert fus[0].dtype == torch.float32
    assert_close(fus[0], ref[0], atol=1e-5, rtol=1e-4, name="features")
    assert_close_scaled(fus[1], ref[1], rel=rel, name="grad_points")
    assert fus[2].dtype == enc.params.dtype
    assert_close_scaled(fus[2].float(), ref[2].float(), rel=2e-3 if fp16 else rel, name="grad_params")
    if scales is not None:
        assert_close_scaled(fus[3], ref[3], rel=rel, name="grad_scales")
    return ref, fus


CONFIGS = [  # D, L, F, T, base, pls, interpolation, table dtype, scales
    (2, 4, 2, 8, 4, 1.7, "linear", torch.float32, False),
    (3, 4, 2, 10, 4, 1.7, "linear", torch.float32, True),
    (3, 3, 1, 8, 3, 2.0, "linear", torch.float16, False),
    (2, 3, 4, 7, 5, 1.5, "smoothstep", torch.float32, True),
    (3, 2, 8, 7, 2, 3.0, "smoothstep", torch.float16, True),
    (2, 5, 2, 8, 8, 1.26, "linear", torch.float16, True),
    (1, 3, 2, 4, 8, 2.0, "linear", torch.float32, True),
    (4, 2, 2, 9, 3, 2.0, "linear", torch.float32, False),
    (3, 2, 2, 16, 32768, 2.0, "linear", torch.float32, False),  # level 1: resolution 65536, uint32 stride wrap
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"D{c[0]}L{c[1]}F{c[2]}T{c[3]}-{c[6]}-{str(c[7])[6:]}-s{int(c[8])}"
)
def test_fused_matches_reference(fused_backend, device, seed, cfg):
    D, L, F, T, base, pls, interp, dtype, with_scales = cfg
    enc = make_encoding(D, L, F, T, base, pls, interp, dtype, device)
    assert any(enc.layout.level_hashed) and not all(enc.layout.level_hashed)  # both kinds of level
    N = 300
    points = torch.rand(N, D, device=device).requires_grad_()
    scales = (torch.rand(N, device=device) * 0.3).requires_grad_() if with_scales else None
    compare(enc, points, scales, fused_backend)


def test_boundaries_and_corners(fused_backend, device, seed):
    """Points on cell boundaries of every level and at 0 / 1: values and table grads match (the
    point gradient is one-sided there, so it is compared only where both sides agree)."""
    D = 3
    enc = make_encoding(D, L=3, F=2, T=9, base=4, pls=2.0, device=device)  # integer level scales 3, 7, 15
    k = torch.arange(0, 16, device=device, dtype=torch.float32)
    on_edges = torch.cat([(k - 0.5) / 15.0, (k[:8] - 0.5) / 7.0]).clamp(0, 1)
    coords = torch.cat([on_edges, torch.tensor([0.0, 1.0, 0.5], device=device)])
    idx = torch.randint(0, coords.numel(), (200, D), device=device)
    points = coords[idx].requires_grad_()
    points.data[:8] = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]] * 2, device=device
    )
    seed_grad = torch.randn(200, enc.output_dim, device=device)
    ref = run(enc, points, None, "torch", seed_grad)
    fus = run(enc, points, None, fused_backend, seed_grad)
    assert_close(fus[0], ref[0], atol=1e-5, name="features")
    assert_close_scaled(fus[2], ref[2], name="grad_params")
    assert torch.isfinite(fus[1]).all()


def test_out_of_bounds_clamp(fused_backend, device, seed):
    D = 2
    enc = make_encoding(D, device=device)
    points = (torch.rand(200, D, device=device) * 1.6 - 0.3).requires_grad_()
    ref, fus = compare(enc, points, None, fused_backend)
    clamped = enc(points.detach().clamp(0, 1))
    assert_close(fus[0], clamped, atol=1e-6, name="clamped features")
    outside = (points < 0) | (points > 1)
    assert bool(outside.any())
    assert (fus[1][outside] == 0).all() and (ref[1][outside] == 0).all()


def test_out_of_bounds_error(device):
    enc = make_encoding(2, device=device, out_of_bounds="error")
    enc(torch.rand(10, 2, device=device))
    enc(torch.tensor([[0.0, 1.0]], device=device))
    for bad in (1.0001, -1e-6, float("nan")):
        with pytest.raises(ValueError, match="points"):
            enc(torch.tensor([[0.5, bad]], device=device))
    with pytest.raises(ValueError, match="out_of_bounds"):
        hg.hash_grid_encode(
            torch.rand(3, 2),
            enc.params.detach().cpu(),
            n_levels=4,
            log2_hashmap_size=10,
            base_resolution=4,
            per_level_scale=1.7,
            out_of_bounds="wrap",
        )


def scalar_encode(x, params, lay):
    """The documented formula for one point, in plain Python (uint32 arithmetic by masking)."""
    F, D, out = lay.n_features_per_level, lay.n_input_dims, []
    for l in range(lay.n_levels):
        size, res = lay.level_size(l), lay.resolutions[l]
        pos = [min(max(v, 0.0), 1.0) * lay.level_scales[l] + 0.5 for v in x]
        cell = [math.floor(p) for p in pos]
        t = [p - c for p, c in zip(pos, cell)]
        acc = [0.0] * F
        for c in range(1 << D):
            v = [cell[d] + ((c >> d) & 1) for d in range(D)]
            w = math.prod(t[d] if (c >> d) & 1 else 1 - t[d] for d in range(D))
            stride, index = 1, 0
            for d in range(D):
                if stride > size:
                    break
                index = (index + v[d] * stride) & 0xFFFFFFFF
                stride = (stride * res) & 0xFFFFFFFF
            if size < stride:
                index = 0
                for d in range(D):
                    index ^= (v[d] * hl.PRIMES[d]) & 0xFFFFFFFF
            row = lay.level_offsets[l] + index % size
            for f in range(F):
                acc[f] += w * float(params[row * F + f])
        out += acc
    return out


@pytest.mark.parametrize("D", [2, 3])
def test_reference_matches_scalar_formula(seed, D):
    enc = make_encoding(D, L=5, F=2, T=8, base=3, pls=1.9, dtype=torch.float64)
    x = torch.rand(6, D, dtype=torch.float64)
    x[0] = 1.0
    x[1] = 0.0
    out = reference.encode(x, enc.params.detach(), enc.layout)
    want = torch.tensor([scalar_encode(p.tolist(), enc.params.detach(), enc.layout) for p in x], dtype=torch.float64)
    assert_close(out, want, atol=1e-10, name="features")


def test_tcnn_layout_and_config():
    cfg = {
        "otype": "HashGrid",
        "n_levels": 16,
        "n_features_per_level": 2,
        "log2_hashmap_size": 19,
        "base_resolution": 16,
        "per_level_scale": 2.0,
    }
    enc = rfkernels.HashGridEncoding.from_tcnn_config(3, cfg)
    lay = enc.layout
    assert enc.resolutions[:4] == [16, 32, 64, 128]
    assert enc.level_scales[:3] == [15.0, 31.0, 63.0]
    sizes = [lay.level_size(l) for l in range(16)]
    assert sizes[:4] == [16**3, 32**3, 64**3, 2**19] and set(sizes[3:]) == {2**19}
    assert lay.level_offsets[1] == 4096 and enc.params.numel() == (4096 + 32768 + 262144 + 13 * 2**19) * 2
    assert lay.level_hashed[:3] == (False,) * 3 and lay.level_hashed[3]
    # tcnn's uint32 stride loop wraps to 0 at resolution 65536 (level 12): that level is "dense"
    assert enc.resolutions[12] == 65536 and lay.level_strides[12] == (1, 65536, 0) and not lay.level_hashed[12]
    assert enc.output_dim == 32 and enc.level_table(3).shape == (2**19, 2)
    assert enc.tcnn_config()["per_level_scale"] == 2.0
    # defaults, "Grid"+"Hash", case-insensitive names, smoothstep, 2-D non-multiple-of-8 padding
    e2 = rfkernels.HashGridEncoding.from_tcnn_config(
        2, {"otype": "Grid", "type": "Hash", "n_levels": 2, "base_resolution": 5, "interpolation": "Smoothstep"}
    )
    assert e2.layout.interpolation == "smoothstep" and e2.layout.log2_hashmap_size == 19
    assert e2.resolutions == [5, 10] and e2.level_offsets == [0, 32, 136]  # 25 -> 32, 100 -> 104
    for bad in (
        {"otype": "DenseGrid"},
        {"otype": "Grid", "type": "Tiled"},
        {"otype": "HashGrid", "foo": 1},
        {"otype": "HashGrid", "interpolation": "Nearest"},
        {"otype": "HashGrid", "hash": "Prime"},
    ):
        with pytest.raises(ValueError, match="config"):
            rfkernels.HashGridEncoding.from_tcnn_config(3, bad)


def test_max_resolution():
    enc = rfkernels.HashGridEncoding(3, n_levels=8, base_resolution=16, max_resolution=2048, log2_hashmap_size=12)
    assert abs(enc.level_scales[-1] - 2047) < 0.05 and abs(enc.level_scales[0] - 15) < 1e-6
    assert rfkernels.HashGridEncoding(2, n_levels=1, max_resolution=64).layout.per_level_scale == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_features_per_level": 3}, "n_features_per_level"),
        ({"n_input_dims": 5}, "n_input_dims"),
        ({"n_input_dims": 0}, "n_input_dims"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"per_level_scale": 2.0, "max_resolution": 512}, "per_level_scale"),
        ({"per_level_scale": 0.5}, "per_level_scale"),
        ({"max_resolution": 4}, "max_resolution"),
        ({"n_levels": 0}, "n_levels"),
        ({"n_levels": 33}, "n_levels"),
        ({"log2_hashmap_size": 31}, "log2_hashmap_size"),
        ({"base_resolution": 1}, "base_resolution"),
        ({"dtype": torch.int32}, "dtype"),
        ({"n_levels": 2.0}, "n_levels"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rfkernels.HashGridEncoding(**kwargs)


def test_bad_inputs(device):
    enc = make_encoding(3, device=device)
    p = enc.params.detach()
    kw = dict(n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=1.7)
    x = torch.rand(8, 3, device=device)
    with pytest.raises(ValueError, match="points"):
        enc(torch.rand(8, 2, device=device))
    with pytest.raises(ValueError, match="points"):
        enc(torch.rand(8, device=device))
    with pytest.raises(ValueError, match="points"):
        enc(torch.randint(0, 2, (8, 3), device=device))
    with pytest.raises(ValueError, match="points"):
        hg.hash_grid_encode(torch.rand(8, 5, device=device), p, **kw)
    with pytest.raises(ValueError, match="params"):
        hg.hash_grid_encode(x, p[:-2], **kw)
    with pytest.raises(ValueError, match="params"):
        hg.hash_grid_encode(x, p.to(torch.int32), **kw)
    with pytest.raises(ValueError, match="scales"):
        enc(x, torch.rand(7, device=device))
    with pytest.raises(ValueError, match="scales"):
        enc(x, -torch.rand(8, device=device))


def test_float64_table_rejected_by_fused(fused_backend, device):
    enc = make_encoding(2, device=device, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        enc.backend = fused_backend
        enc(torch.rand(4, 2, device=device))


def test_functional_matches_module(fused_backend, device, seed):
    enc = make_encoding(3, device=device)
    x = torch.rand(50, 3, device=device)
    out = hg.hash_grid_encode(
        x,
        enc.params,
        n_levels=4,
        n_features_per_level=2,
        log2_hashmap_size=10,
        base_resolution=4,
        per_level_scale=1.7,
        backend=fused_backend,
    )
    assert_close(out, enc(x), atol=1e-5, name="functional")
    assert rfkernels.hash_grid_encode is hg.hash_grid_encode


def test_empty_and_noncontiguous(fused_backend, device, seed):
    enc = make_encoding(3, device=device)
    enc.backend = fused_backend
    empty = torch.zeros(0, 3, device=device, requires_grad=True)
    out = enc(empty)
    assert out.shape == (0, enc.output_dim)
    out.sum().backward()
    assert empty.grad.shape == (0, 3)
    empty_s = torch.zeros(0, device=device, requires_grad=True)  # empty batch with scales
    (gx, gs) = torch.autograd.grad(enc(empty, empty_s).sum(), (empty, empty_s), create_graph=True)
    assert gx.shape == (0, 3) and gs.shape == (0,)
    torch.autograd.grad(gx.sum(), (empty, empty_s), allow_unused=True)  # fused double backward
    xt = torch.rand(3, 100, device=device).t().requires_grad_()  # non-contiguous view
    s = (torch.rand(200, device=device)[::2] * 0.1).requires_grad_()  # strided
    compare(enc, xt, s, fused_backend)


def test_grads_only_when_needed(fused_backend, device, monkeypatch):
    enc = make_encoding(2, device=device)
    enc.backend = fused_backend
    mod = _dispatch.implementation("hashgrid", fused_backend, torch.zeros(1, device=device)).kernels
    calls = []
    real = mod.backward

    def spy(*args, **kwargs):
        calls.append(args[-3:])
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "backward", spy)
    x = torch.rand(20, 2, device=device)
    enc(x).sum().backward()
    assert calls[-1] == (False, True, False)
    enc.params.requires_grad_(False)
    xg = x.clone().requires_grad_()
    enc(xg, torch.rand(20, device=device)).sum().backward()
    assert calls[-1] == (True, False, False) and xg.grad is not None


def test_scales_factor(device, seed):
    """Level features are multiplied by erf(1 / sqrt(8 s^2 scale_l^2)); s = 0 is the identity."""
    enc = make_encoding(2, device=device, dtype=torch.float64)
    x = torch.rand(30, 2, device=device, dtype=torch.float64)
    s = torch.rand(30, device=device, dtype=torch.float64) * 0.2
    plain = enc(x).view(30, 4, 2)
    scaled = enc(x, s).view(30, 4, 2)
    for l, sl in enumerate(enc.level_scales):
        want = torch.erf(1.0 / torch.sqrt(8 * s**2 * sl**2))
        assert_close(scaled[:, l], plain[:, l] * want[:, None], atol=1e-12, name=f"level {l}")
    assert_close(enc(x, torch.zeros_like(s)), enc(x), atol=0, rtol=0, name="s=0")


def test_gradcheck_reference(seed):
    enc = make_encoding(2, L=3, F=2, T=6, base=3, pls=1.8, dtype=torch.float64, interp="smoothstep")
    x = (torch.rand(12, 2, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    s = (torch.rand(12, dtype=torch.float64) * 0.2 + 0.01).requires_grad_()
    fn = lambda x_, p_, s_: reference.encode(x_, p_, enc.layout, s_)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, enc.params, s), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize(
    "D, interp, with_scales, F, dtype",
    [
        (3, "linear", False, 2, torch.float32),
        (2, "smoothstep", True, 2, torch.float32),
        pytest.param(4, "linear", True, 2, torch.float32, marks=pytest.mark.slow),  # D=4: ~7 s interpreted
        (3, "smoothstep", True, 4, torch.float16),
    ],
    ids=lambda v: str(v)[6:] if isinstance(v, torch.dtype) else None,
)
def test_double_backward(fused_backend, device, seed, monkeypatch, D, interp, with_scales, F, dtype):
    """Eikonal-style loss L = |d(out . w)/dx|^2: its gradients w.r.t. the table, the points (second
    derivatives), the head w (through g_out) and the scales match the reference (fused 2nd order)."""

    def no_fallback(*args):
        raise AssertionError("the fused double backward fell back to the reference")

    monkeypatch.setattr(ops, "_reference_double_vjp", no_fallback)
    enc = make_encoding(D, F=F, interp=interp, dtype=dtype, device=device)
    x = torch.rand(64, D, device=device).requires_grad_()
    s = (torch.rand(64, device=device) * 0.2).requires_grad_() if with_scales else None
    w = torch.randn(enc.output_dim, device=device, requires_grad=True)
    inputs = [enc.params, x, w] + ([s] if with_scales else [])
    res = {}
    for be in ("torch", fused_backend):
        enc.backend = be
        (gx,) = torch.autograd.grad((enc(x, s) @ w).sum(), x, create_graph=True)
        res[be] = torch.autograd.grad(gx.pow(2).sum() + gx.sum(), inputs)
    for name, a, b in zip(["params", "points", "head", "scales"], res[fused_backend], res["torch"]):
        assert_close_scaled(a, b, rel=5e-4, name="eikonal grad_" + name)


def test_double_backward_general_falls_back(fused_backend, device, seed):
    """Second order through the table gradient too (e.g. a gradient penalty on all grads)."""
    enc = make_encoding(2, device=device)
    x = torch.rand(40, 2, device=device).requires_grad_()
    res = {}
    for be in ("torch", fused_backend):
        enc.backend = be
        gx, gp = torch.autograd.grad(enc(x).pow(2).sum(), (x, enc.params), create_graph=True)
        res[be] = torch.autograd.grad(gx.pow(2).sum() + gp.pow(2).sum(), (enc.params, x))
    for name, a, b in zip(["params", "points"], res[fused_backend], res["torch"]):
        assert_close_scaled(a, b, rel=5e-4, name="grad_" + name)


def test_fp16_table_precision(fused_backend, device, seed):
    """float16 tables are read exactly and accumulated in float32: equal to the float32 encoding
    of the same (upcast) table."""
    enc16 = make_encoding(3, dtype=torch.float16, device=device)
    enc32 = make_encoding(3, device=device)
    with torch.no_grad():
        enc32.params.copy_(enc16.params.float())
    x = torch.rand(100, 3, device=device)
    enc16.backend = enc32.backend = fused_backend
    assert_close(enc16(x), enc32(x), atol=1e-6, rtol=1e-6, name="fp16 table")


@pytest.mark.parametrize("D, F, dtype", [(3, 2, torch.float32), (2, 4, torch.float16)])
def test_deterministic_mode(fused_backend, device, seed, monkeypatch, D, F, dtype):
    """deterministic=True (no atomics; 4 levels in chunks of 3 + 1 here, so both a chunk starting
    past level 0 and level slots > 0 in one chunk are exercised) matches the reference and gives
    bitwise identical gradients run to run."""
    N = 150
    per_level = N * ((1 << D) * (12 + 4 * F) + 4 * D + 4)  # deterministic.py's temporary bytes per level
    monkeypatch.setattr(deterministic, "CHUNK_BYTES", 3 * per_level)
    enc = make_encoding(D, F=F, dtype=dtype, device=device, deterministic=True)
    mod = _dispatch.implementation("hashgrid", fused_backend, torch.zeros(1, device=device)).kernels
    chunks, real = [], mod.backward_levels
    monkeypatch.setattr(mod, "backward_levels", lambda *a, **k: chunks.append(a[5:7]) or real(*a, **k))
    points = torch.rand(N, D, device=device).requires_grad_()
    scales = (torch.rand(N, device=device) * 0.2).requires_grad_()
    _, fus = compare(enc, points, scales, fused_backend)
    assert chunks == [(0, 3), (3, 1)]
    again = run(enc, points, scales, fused_backend, torch.ones(N, enc.output_dim, device=device))
    again2 = run(enc, points, scales, fused_backend, torch.ones(N, enc.output_dim, device=device))
    for a, b in zip(again[1:], again2[1:]):
        assert torch.equal(a, b)
