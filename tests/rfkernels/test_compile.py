"""The opt-in compiled ``torch`` path (``rfkernels.set_torch_compile``): same values and gradients
as the eager path, shapes padded to a bucket, and a failed compile falls back with one warning."""

import pytest
import torch

import rfkernels
from reconfusion.config import tiny
from rfkernels import _compile
from rfkernels.hashgrid import vectorized
from rfkernels.hashgrid.adapters import COMPILE_BUCKET, Reference
from rfkernels.hashgrid.module import HashGridEncoding


@pytest.fixture
def compile_on(monkeypatch):
    monkeypatch.setattr(_compile, "_vetoed", False)  # conftest vetoes compiling for the other tests
    with rfkernels.use_torch_compile(True):
        yield


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    enc = HashGridEncoding(3, 3, 2, 10, 4, max_resolution=64, backend="torch")  # 2 dense + 1 hashed level
    with torch.no_grad():
        enc.params.uniform_(-1, 1, generator=g)
    x = torch.rand(n, 3, generator=g)
    scales = torch.rand(n, generator=g) * 0.05
    return enc, x, scales


@pytest.mark.usefixtures("compile_on")
def test_compiled_encoding_matches_eager():
    enc, x, scales = _inputs(COMPILE_BUCKET + 37, seed=torch.seed() % 2**31)  # not a multiple: padded
    x = x.t().contiguous().t()  # non-contiguous
    results = []
    for on in (True, False):
        rfkernels.set_torch_compile(on)
        p = enc.params.detach().clone().requires_grad_()
        xi, si = x.clone().requires_grad_(), scales.clone().requires_grad_()
        out = rfkernels.hash_grid_encode(
            xi,
            p,
            n_levels=3,
            n_features_per_level=2,
            log2_hashmap_size=10,
            base_resolution=4,
            max_resolution=64,
            scales=si,
            backend="torch",
        )
        g = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), (p, xi, si))
        results.append((out.detach(), *g))
    assert results[0][0].shape == (x.shape[0], 6)
    for a, b, what in zip(results[0], results[1], ("features", "d params", "d points", "d scales")):
        # float32 sums over thousands of points in another order: relative to the largest entry
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()), msg=what)


def test_compile_switch_is_validated():
    with pytest.raises(ValueError, match="enabled"):
        rfkernels.set_torch_compile(1)


@pytest.mark.usefixtures("compile_on")
def test_failed_compile_falls_back_once_with_a_warning(monkeypatch):
    def broken(fn, **kw):
        def call(*a):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(_compile.torch, "compile", broken)
    impl = Reference()  # a fresh compiled wrapper
    enc, x, _ = _inputs(50, seed=0)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        out = impl.encode(x, enc.params, None, enc.layout, False)
    torch.testing.assert_close(out, vectorized.encode(x, enc.params, enc.layout, None))
    assert impl._encode.failure is not None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        impl.encode(x, enc.params, None, enc.layout, False)  # eager from now on, silently


def test_veto_wins(monkeypatch):
    monkeypatch.setattr(_compile, "_vetoed", True)
    with rfkernels.use_torch_compile(True):
        assert not rfkernels.torch_compile_enabled()


@pytest.mark.usefixtures("compile_on")
def test_tiny_model_trains_and_renders_the_same_compiled():
    """The tiny preset's path (cfg.torch_compile): a model's forward and gradients agree compiled and eager."""
    from reconfusion.reconstruct import build_model
    from tests.helpers.recon_scenes import boxes_scene

    scene = boxes_scene(n_views=2, size=16)
    assert tiny().torch_compile
    torch.manual_seed(0)
    model = build_model(tiny().replace(n_samples=(8, 8)), scene)
    rays = scene.view_rays(0)[:200]
    outs = []
    for on in (True, False):
        model.cfg.torch_compile = on
        with rfkernels.use_torch_compile(on):
            model.zero_grad()
            out = model(rays)  # deterministic samples (progress None)
            out.rgb.sum().backward()
        outs.append((out.rgb.detach(), out.depth.detach(), model.field.encoding.grid.params.grad.clone()))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))
