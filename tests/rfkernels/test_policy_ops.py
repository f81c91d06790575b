"""The README's numerics policy for the hash grid, sampling and gather families, on every backend
runnable here (torch, triton, cuda or its host emulation): the issue-13 repros (NaN points,
empty sizes, max_resolution=inf, inf weights in sample_pdf, mixed dtypes in gather_features,
SpaceMap near of the wrong shape, meta tensors)."""

import math

import pytest
import torch

import rfkernels as rk
from rfkernels.hashgrid.module import HashGridEncoding
from tests.helpers.backends import all_backends
from tests.helpers.gather_scenes import random_scene
from tests.helpers.numerics import assert_close

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("out_of_bounds", ["clamp", "error"])
def test_hashgrid_nan_points_raise(out_of_bounds):
    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8, out_of_bounds=out_of_bounds)
    pts = torch.rand(4, 3)
    pts[2, 1] = NAN
    with all_backends("hashgrid") as names:
        for be in names:
            with pytest.raises(ValueError, match="`points` has 1 point.* NaN"):
                rk.hash_grid_encode(
                    pts, enc.params.detach(), n_levels=2, log2_hashmap_size=8, out_of_bounds=out_of_bounds, backend=be
                )


def test_hashgrid_empty_points():
    """Issue 13 #6: HashGridEncoding on zeros(0, 3), values and gradients, every backend."""
    enc = HashGridEncoding(n_levels=2, log2_hashmap_size=8)
    with all_backends("hashgrid") as names:
        for be in names:
            pts = torch.zeros(0, 3, requires_grad=True)
            out = rk.hash_grid_encode(pts, enc.params, n_levels=2, log2_hashmap_size=8, backend=be)
            assert out.shape == (0, enc.output_dim), be
            out.sum().backward()
            assert torch.equal(enc.params.grad, torch.zeros_like(enc.params)), be
            enc.params.grad = None
    assert enc(torch.zeros(0, 3)).shape == (0, enc.output_dim)


def test_hashgrid_max_resolution_must_be_finite():
    for bad in (INF, NAN):
        with pytest.raises(ValueError, match="`max_resolution` must be a finite number"):
            rk.hash_grid_encode(torch.rand(2, 3), torch.zeros(10), max_resolution=bad)


def test_sample_pdf_rejects_non_finite_weights():
    """Issue 13 #8: an inf weight put samples outside the bin on torch, inside it on Triton."""
    bins = torch.tensor([[0.0, 1, 2, 3]])
    with all_backends("sampling") as names:
        for be in names:
            for bad in (INF, NAN):
                with pytest.raises(ValueError, match="`weights` must be finite"):
                    rk.sample_pdf(bins, torch.tensor([[1.0, bad, 1.0]]), 4, mode="midpoint", backend=be)


def test_space_map_near_shape():
    """Issue 13 #11: a per-ray near of the wrong shape names `near`."""
    m = rk.SpaceMap("linear", near=torch.rand(3), far=5.0)
    assert m.t_to_s(torch.rand(3, 5)).shape == (3, 5)
    with pytest.raises(ValueError, match="`near` must be a scalar or per-ray"):
        m.t_to_s(torch.rand(4, 5))
    with pytest.raises(ValueError, match="`near` must be a scalar or per-ray"):
        m.s_to_t(torch.rand(5))
    with pytest.raises(ValueError, match="same shape"):
        rk.SpaceMap("linear", near=torch.zeros(3), far=torch.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        rk.SpaceMap("linear", near=NAN, far=1.0)


@pytest.mark.parametrize("cast", ["f16 features", "bf16 features", "f64 features", "f64 points", "f64 cameras"])
def test_gather_mixed_dtypes(cast):
    """Issue 13 #5: the torch backend takes the dtypes the fused ones take, returns the same dtypes."""
    torch.manual_seed(0)
    p, f, K, E = random_scene(1, 16, 2, 4, 8, 8, (32, 32), torch.device("cpu"))
    if cast.endswith("features"):
        f = f.to({"f16": torch.float16, "bf16": torch.bfloat16, "f64": torch.float64}[cast.split()[0]])
    elif cast == "f64 points":
        p = p.double()
    else:
        K, E = K.double(), E.double()
    with all_backends("gather") as names:
        outs = {
            be: rk.gather_features(p, f, K, E, image_size=(32, 32), backend=be, return_camera_coords=True)
            for be in names
        }
    ref = outs["torch"]
    assert ref.features.dtype == f.dtype
    for be, o in outs.items():
        assert o.features.dtype == ref.features.dtype, be
        assert_close(
            o.features.float(), ref.features.float(), atol=2e-2 if f.dtype == torch.bfloat16 else 2e-3, name=be
        )


def test_meta_tensors_give_shapes_and_shape_errors():
    """Meta tensors are accepted (issue 22: shapes, no values); shape checks still name the argument."""
    meta = torch.device("meta")
    with pytest.raises(ValueError, match="`params` must have"):
        rk.hash_grid_encode(torch.rand(2, 3, device=meta), torch.zeros(10, device=meta))
    assert rk.sample_pdf(torch.rand(2, 4, device=meta), torch.rand(2, 3, device=meta), 4).shape == (2, 4)
    d = rk.distortion_loss(torch.rand(2, 3, device=meta), torch.rand(2, 3, device=meta), torch.rand(2, 3, device=meta))
    assert d.shape == (2,) and d.is_meta
