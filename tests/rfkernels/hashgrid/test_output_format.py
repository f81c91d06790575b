"""Hash-grid output formats (``output_layout``, ``output_dtype``, rfkernels/hashgrid/output.py): every
backend returns the float64 reference's values in the requested layout and dtype, and its gradients
(points, table, scales) for an upstream gradient in that format; edge cases: points outside the
grid, non-contiguous inputs, no points; bad arguments are refused by name."""

import pytest
import torch

import rfkernels
from rfkernels import hashgrid as hg
from rfkernels.hashgrid import reference
from tests.helpers.numerics import assert_close_scaled

FAMILY = "hashgrid"  # fused_backend (conftest) also runs csrc/hashgrid/kernels.cu on the host
# one unit in the last place of the stored dtype, relative (Triton's interpreter truncates to bfloat16
# where the GPU rounds to nearest, so half an ulp is not enough everywhere)
ROUNDING = {None: 2e-6, torch.float16: 2**-10, torch.bfloat16: 2**-7}

FORMATS = [
    ("feature_major", None),
    ("point_major", torch.float16),
    ("feature_major", torch.bfloat16),
]


def make_encoding(D, F, dtype, device, **kw):
    enc = rfkernels.HashGridEncoding(D, 4, F, 9, 4, per_level_scale=1.8, dtype=dtype, device=device, **kw)
    with torch.no_grad():
        enc.params.uniform_(-1.0, 1.0)
    return enc


def reference64(enc, points, scales, seed_grad):
    """Float64 ground truth: (features [N, L*F], d points, d params, d scales) for <features, seed_grad>."""
    leaves = [t.detach().double().requires_grad_() for t in (points, enc.params, scales) if t is not None]
    out = reference.encode(leaves[0], leaves[1], enc.layout, leaves[2] if scales is not None else None)
    return (out.detach(), *torch.autograd.grad(out, leaves, seed_grad.double()))


def check_format(out, layout, dtype, n, width):
    assert out.shape == (n, width) and out.dtype == (dtype or torch.float32)
    if layout == "feature_major":
        assert out.t().is_contiguous(), out.stride()
    else:
        assert out.is_contiguous(), out.stride()


@pytest.mark.parametrize("layout, dtype", FORMATS, ids=lambda v: str(v).replace("torch.", ""))
def test_formats_match_reference(fused_backend, device, seed, layout, dtype):
    """Values within one rounding of the output dtype of the float64 reference; gradients for an
    upstream gradient in the output dtype as the float64 reference's (float32 table, with scales,
    some points outside the grid, non-contiguous points)."""
    D, N = 3, 120
    enc = make_encoding(D, 2, torch.float32, device, output_layout=layout, output_dtype=dtype)
    wide = torch.rand(N, 2 * D, device=device) * 1.4 - 0.2  # some points outside [0, 1]^D
    points = wide[:, ::2].requires_grad_()  # non-contiguous view
    scales = (torch.rand(N, device=device) * 0.2).requires_grad_()
    seed_grad = torch.randn(N, enc.output_dim, device=device).to(dtype or torch.float32)
    expected = reference64(enc, points, scales, seed_grad)
    results = {}
    for backend in ("torch", fused_backend):
        enc.backend = backend
        out = enc(points, scales)
        check_format(out, layout, dtype, N, enc.output_dim)
        grads = torch.autograd.grad(out, [points, enc.params, scales], seed_grad)
        results[backend] = (out, *grads)
        tol = ROUNDING[dtype] * expected[0].abs() + 1e-6
        assert ((out.double() - expected[0]).abs() <= tol).all(), f"{backend} features"
        for name, got, want in zip(("points", "params", "scales"), grads, expected[1:]):
            assert_close_scaled(got, want, rel=2e-4, name=f"{backend} grad_{name}")
    outside = (points < 0) | (points > 1)
    assert bool(outside.any()) and (results[fused_backend][1][outside] == 0).all()


def test_half_table_feature_major_half_output(fused_backend, device, seed):
    """A half table with a half feature-major output: the table gradient (half; the CUDA backend
    accumulates hashed levels in half) equals the reference's within half-precision accumulation."""
    enc = make_encoding(2, 4, torch.float16, device, output_layout="feature_major", output_dtype=torch.float16)
    points = torch.rand(200, 2, device=device)
    seed_grad = torch.randn(200, enc.output_dim, device=device).half()
    expected = reference64(enc, points, None, seed_grad)
    enc.backend = fused_backend
    out = enc(points)
    check_format(out, "feature_major", torch.float16, 200, enc.output_dim)
    (g_params,) = torch.autograd.grad(out, enc.params, seed_grad)
    assert g_params.dtype == torch.float16
    assert_close_scaled(g_params, expected[2], rel=2e-3, name="grad_params")


def test_double_backward_feature_major_half(fused_backend, device, seed, monkeypatch):
    """Eikonal-style second order through a feature-major float16 output: the fused double backward
    (no reference fallback) matches the torch backend's autograd."""
    from rfkernels.hashgrid import ops

    def no_fallback(*args):
        raise AssertionError("the fused double backward fell back to the reference")

    monkeypatch.setattr(ops, "_reference_double_vjp", no_fallback)
    enc = make_encoding(3, 2, torch.float32, device, output_layout="feature_major", output_dtype=torch.float16)
    x = torch.rand(64, 3, device=device).requires_grad_()
    w = torch.randn(enc.output_dim, device=device, requires_grad=True)
    res = {}
    for backend in ("torch", fused_backend):
        enc.backend = backend
        (gx,) = torch.autograd.grad((enc(x).float() @ w).sum(), x, create_graph=True)
        res[backend] = torch.autograd.grad(gx.pow(2).sum() + gx.sum(), [enc.params, x, w])
    for name, got, want in zip(("params", "points", "head"), res[fused_backend], res["torch"]):
        assert_close_scaled(got, want, rel=5e-4, name="eikonal grad_" + name)


def test_no_points(fused_backend, device):
    """N = 0: an empty [0, L*F] result in the requested format, empty gradients."""
    enc = make_encoding(3, 2, torch.float32, device, output_layout="feature_major", output_dtype=torch.float16)
    enc.backend = fused_backend
    points = torch.zeros(0, 3, device=device, requires_grad=True)
    out = enc(points)
    assert out.shape == (0, enc.output_dim) and out.dtype == torch.float16
    g_points, g_params = torch.autograd.grad(out.float().sum(), [points, enc.params], allow_unused=False)
    assert g_points.shape == (0, 3) and not g_params.any()


def test_bad_output_arguments():
    config = dict(n_levels=2, log2_hashmap_size=6)
    points = torch.rand(4, 2)
    params = torch.zeros(hg.make_layout(2, 2, 2, 6, 16, None, None, "linear").n_params)
    with pytest.raises(ValueError, match="output_layout"):
        hg.hash_grid_encode(points, params, **config, output_layout="level_major")
    with pytest.raises(ValueError, match="output_dtype"):
        hg.hash_grid_encode(points, params, **config, output_dtype=torch.int8)
    with pytest.raises(ValueError, match="output_dtype"):
        rfkernels.HashGridEncoding(2, output_dtype="half")
    out = hg.hash_grid_encode(points, params, **config, output_dtype=torch.float32)
    assert out.dtype == torch.float32 and out.is_contiguous()
