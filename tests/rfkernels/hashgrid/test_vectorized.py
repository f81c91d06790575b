"""The ``torch`` backend's vectorized hash grid against the readable reference: values and the
gradients of table, points and scales, on fresh random inputs, every index path (dense/hashed,
int32/int64 arithmetic), boundaries and the uint32 stride wrap."""

import pytest
import torch

from rfkernels.hashgrid import make_layout, reference, vectorized
from tests.helpers.numerics import assert_close, assert_close_scaled

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = [  # D, L, F, T, base, per-level scale, interpolation, table dtype, scales
    (3, 8, 2, 16, 16, 1.6, "linear", torch.float32, True),  # the tiny preset's NeRF grid shape
    (3, 5, 1, 12, 16, 1.4, "smoothstep", torch.float32, True),
    (2, 4, 4, 8, 4, 1.7, "linear", torch.float16, False),
    (1, 3, 2, 4, 8, 2.0, "linear", torch.float32, True),
    (4, 2, 8, 9, 3, 2.0, "linear", torch.float64, True),
    (3, 2, 2, 16, 32768, 2.0, "linear", torch.float32, False),  # level 1: resolution 65536, stride wrap
]


def _inputs(D, n, dtype, gen):
    x = torch.rand(n, D, generator=gen, dtype=torch.float64)
    x[:4] = 0.0
    x[4:8] = 1.0
    x[8:12] = x[8:12] * 1.3 - 0.1  # outside [0, 1]: clamped
    s = torch.rand(n, generator=gen, dtype=torch.float64) * 0.05
    s[:3] = 0.0
    return x.to(dtype if dtype == torch.float64 else torch.float32), s.to(
        x.dtype if dtype == torch.float64 else torch.float32
    )


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c[:7])))
@pytest.mark.parametrize("int64", [False, True], ids=["auto-index", "int64-index"])
def test_matches_reference(cfg, int64, seed, monkeypatch):
    D, L, F, T, base, pls, interp, dtype, with_scales = cfg
    if int64:
        monkeypatch.setattr(vectorized, "_index_dtype", lambda *a: torch.int64)
    lay = make_layout(D, L, F, T, base, pls, None, interp)
    gen = torch.Generator().manual_seed(seed)
    x, s = _inputs(D, 257, dtype, gen)
    x.requires_grad_()
    s = s.requires_grad_() if with_scales else None
    p = (torch.rand(lay.n_params, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).requires_grad_()
    g = torch.randn(257, L * F, generator=gen, dtype=torch.float64).to(x.dtype)
    want = reference.encode(x, p, lay, s)
    got = vectorized.encode(x, p, lay, s)
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_close(got, want, atol=tol, rtol=tol, name="features")
    inputs = [x, p] + ([s] if with_scales else [])
    gw = torch.autograd.grad((want * g).sum(), inputs)
    gg = torch.autograd.grad((got * g).sum(), inputs)
    for name, a, b in zip(["grad_points", "grad_params", "grad_scales"], gg, gw):
        assert a.dtype == b.dtype
        # float16 tables get float16 gradients: summation order moves them by an ulp (2^-11 relative)
        assert_close_scaled(a.float(), b.float(), rel=1e-3 if a.dtype == torch.float16 else 1e-4, name=name)


def test_gradcheck(seed):
    lay = make_layout(2, 3, 2, 6, 3, 1.8, None, "smoothstep")
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(12, 2, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    s = (torch.rand(12, generator=gen, dtype=torch.float64) * 0.2 + 0.01).requires_grad_()
    p = torch.randn(lay.n_params, generator=gen, dtype=torch.float64).requires_grad_()
    fn = lambda x_, p_, s_: vectorized.encode(x_, p_, lay, s_)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, p, s), eps=1e-7, atol=1e-6)


def test_empty_and_inference_mode(seed):
    lay = make_layout(3, 4, 2, 10, 4, 1.7, None, "linear")
    p = torch.randn(lay.n_params, generator=torch.Generator().manual_seed(seed))
    assert vectorized.encode(torch.zeros(0, 3), p, lay).shape == (0, 8)
    x = torch.rand(50, 3)
    with torch.inference_mode():
        got = vectorized.encode(x, p.requires_grad_(), lay)
    assert_close(got, reference.encode(x, p.detach(), lay), atol=1e-6, name="features")


def test_torch_backend_uses_it(monkeypatch):
    import rfkernels

    calls = []
    monkeypatch.setattr(vectorized, "encode", lambda *a, **k: calls.append(1) or reference.encode(*a, **k))
    enc = rfkernels.HashGridEncoding(3, 2, 2, 8, 4, backend="torch")
    enc(torch.rand(5, 3))
    assert calls == [1]
