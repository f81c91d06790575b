"""The README's numerics policy for volume rendering, per backend: the repros of issue 13
(cancellation next to an opaque sample, NaN, 0 x inf, mixed dtypes, empty sizes, unsorted
distortion intervals, unclear errors) give the documented result on torch and every fused backend."""

import math

import pytest
import torch

import rfkernels as rk
from rfkernels.volrend import reference
from tests.helpers.numerics import assert_close

FAMILY = "volrend"
INF, NAN = math.inf, math.nan


def _backends(fused_backend):
    return ("torch", fused_backend)


def test_opaque_sample_no_cancellation(fused_backend):
    """Issue 13 #2: an exclusive prefix computed as cumsum - tau lost 2.8e-4 of opacity here."""
    sig = torch.tensor([[0.3731, 0.4129, 2e4, 0.1]], dtype=torch.float64)
    d = torch.full((1, 4), 0.5, dtype=torch.float64)
    ts = d.cumsum(-1) - d
    ref = reference.composite_padded(sig, d, ts + d / 2, torch.ones(1, 4, 3, dtype=torch.float64))
    for be in _backends(fused_backend):
        inputs = [x.float().requires_grad_() for x in (sig, ts, ts + d)]
        out = rk.volume_render(inputs[0], torch.ones(1, 4, 3), inputs[1], inputs[2], backend=be)
        assert_close(out.opacity, ref[2], atol=2e-7, rtol=0, name=f"{be} opacity")
        assert_close(out.weights, ref[3], atol=2e-7, rtol=0, name=f"{be} weights")
        assert_close(out.depth, ref[1], atol=1e-6, rtol=0, name=f"{be} depth")


def test_opaque_sample_grads_match_float64(fused_backend):
    """Gradients w.r.t. the interval bounds next to an opaque sample (was off by 1.2e-2)."""
    torch.manual_seed(3)
    sig = torch.rand(4, 70, dtype=torch.float64) * 2
    sig[:, 37] = 2e4 / 0.05  # tau just under TAU_MAX after a long prefix
    d = torch.full((4, 70), 0.05, dtype=torch.float64)
    ts = d.cumsum(-1) - d
    col = torch.rand(4, 70, 3, dtype=torch.float64)

    def grads(be, dtype):
        x = [t.detach().to(dtype).requires_grad_() for t in (sig, ts, ts + d)]
        out = rk.volume_render(x[0], col.to(dtype), x[1], x[2], backend=be)
        (out.rgb.sum() + out.depth.sum() + out.opacity.sum()).backward()
        return [t.grad for t in x]

    ref = grads("torch", torch.float64)
    for be in _backends(fused_backend):
        for g, r, n in zip(grads(be, torch.float32), ref, ("sigmas", "t_starts", "t_ends")):
            assert_close(g, r, atol=2e-4, rtol=1e-3, name=f"{be} d{n}")


def test_zero_times_inf_is_zero(fused_backend):
    """Issue 13 #4: sigma=0 on [1, inf) is transparent: rgb 0, opacity 1 - exp(-0.5)."""
    sig, ts, te = torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, INF]])
    for be in _backends(fused_backend):
        out = rk.volume_render(sig, torch.zeros(1, 2, 3), ts, te, backend=be)
        assert torch.equal(out.rgb, torch.zeros(1, 3)), be
        assert_close(out.opacity, torch.tensor([1 - math.exp(-0.5)]), name=f"{be} opacity")
        assert_close(out.depth, torch.tensor([0.5 * (1 - math.exp(-0.5))]), name=f"{be} depth")
        # infinite density on an empty interval: transparent too
        out = rk.volume_render(
            torch.tensor([[INF, 1.0]]),
            torch.ones(1, 2, 1),
            torch.tensor([[0.0, 0.0]]),
            torch.tensor([[0.0, 1.0]]),
            backend=be,
        )
        assert_close(out.opacity, torch.tensor([1 - math.exp(-1.0)]), name=f"{be} opacity (inf * 0)")


def test_infinite_density_is_opaque_with_finite_grads(fused_backend):
    """sigma=inf: an opaque wall; gradients to t_starts/t_ends finite and equal on all backends."""
    results = []
    for be in _backends(fused_backend):
        sig = torch.tensor([[1.0, INF, 1.0], [0.5, 2.0, 0.0]], requires_grad=True)
        ts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], requires_grad=True)
        te = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, INF]], requires_grad=True)
        col = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
        out = rk.volume_render(sig, col, ts, te, backend=be)
        assert_close(out.opacity[0], torch.tensor(1.0), name=f"{be} opacity")
        (out.rgb.sum() + out.depth.sum() + 0.3 * out.opacity.sum()).backward()
        grads = [sig.grad, ts.grad, te.grad, col.grad]
        for g, n in zip(grads, ("sigmas", "t_starts", "t_ends", "colors")):
            assert bool(torch.isfinite(g).all()), f"{be}: non-finite d{n}: {g}"
        results.append(grads)
    for g, r in zip(results[1], results[0]):
        assert_close(g, r, name=f"{fused_backend} vs torch grads")


def test_zero_density_on_finite_intervals_gets_gradient(fused_backend):
    """sigma = 0 on a finite interval: tau = sigma * delta is smooth there, so d/dsigma = delta * d/dtau
    (the 0 * inf rule must not zero it); checked against plain float64 autograd of the formula."""
    g = torch.Generator().manual_seed(1)
    sig = torch.rand(3, 6, generator=g, dtype=torch.float64) * 2
    sig[:, ::2] = 0.0
    d = torch.rand(3, 6, generator=g, dtype=torch.float64) * 0.5 + 0.1
    ts = d.cumsum(-1) - d
    col = torch.rand(3, 6, 3, generator=g, dtype=torch.float64)

    def loss(out_rgb, out_depth):
        return (out_rgb * torch.tensor([1.0, -2.0, 0.5], dtype=out_rgb.dtype)).sum() + out_depth.sum()

    x = [t.clone().requires_grad_() for t in (sig, ts, ts + d)]
    tau = x[0] * (x[2] - x[1])
    w = torch.exp(-(tau.cumsum(-1) - tau)) * (1 - torch.exp(-tau))
    loss((w[..., None] * col).sum(1), (w * (x[1] + x[2]) / 2).sum(-1)).backward()
    ref = [t.grad for t in x]
    assert bool((ref[0][:, ::2].abs() > 1e-3).any())  # the zero-density samples do matter
    for be in _backends(fused_backend):
        y = [t.detach().float().requires_grad_() for t in (sig, ts, ts + d)]
        out = rk.volume_render(y[0], col.float(), y[1], y[2], backend=be)
        loss(out.rgb, out.depth).backward()
        for gy, r, n in zip((t.grad for t in y), ref, ("sigmas", "t_starts", "t_ends")):
            assert_close(gy, r, atol=1e-5, rtol=1e-4, name=f"{be} d{n}")


@pytest.mark.parametrize("what", ["sigmas", "t_starts", "t_ends", "colors"])
def test_nan_inputs_raise(fused_backend, what):
    """NaN policy: NaN input -> ValueError naming the argument (validation on), every backend."""
    args = dict(
        sigmas=torch.ones(2, 3), colors=torch.ones(2, 3, 3), t_starts=torch.zeros(2, 3), t_ends=torch.ones(2, 3)
    )
    args[what] = args[what].clone()
    args[what].view(-1)[1] = NAN
    for be in _backends(fused_backend):
        with pytest.raises(ValueError, match=f"`{what}`"):
            rk.volume_render(args["sigmas"], args["colors"], args["t_starts"], args["t_ends"], backend=be)


def test_nan_propagates_without_validation(fused_backend):
    """Validation off: NaN in -> NaN out from the NaN sample on, identically (no backend turns NaN
    into an opaque wall or a zero weight)."""
    sig = torch.tensor([[1.0, NAN, 1.0], [1.0, 1.0, 1.0]])
    t0, t1 = torch.tensor([[0.0, 1, 2]] * 2), torch.tensor([[1.0, 2, 3]] * 2)
    rk.set_validation(False)
    try:
        outs = [rk.volume_render(sig, torch.ones(2, 3, 2), t0, t1, backend=be) for be in _backends(fused_backend)]
    finally:
        rk.set_validation(True)
    for out in outs:
        assert (
            bool(out.opacity[0].isnan()) and bool(out.rgb[0].isnan().all()) and bool(out.weights[0, 1:].isnan().all())
        )
        assert float(out.weights[0, 0]) == pytest.approx(1 - math.exp(-1), rel=1e-6)
        assert bool(torch.isfinite(out.opacity[1]))


@pytest.mark.parametrize("eps", [NAN, -0.1, 1.5, INF, "a"])
def test_early_stop_eps_checked(fused_backend, eps):
    for be in _backends(fused_backend):
        with pytest.raises(ValueError, match="early_stop_eps"):
            rk.volume_render(
                torch.ones(1, 2),
                torch.ones(1, 2, 3),
                torch.zeros(1, 2),
                torch.ones(1, 2),
                early_stop_eps=eps,
                backend=be,
            )


def test_negative_density_raises(fused_backend):
    for be in _backends(fused_backend):
        with pytest.raises(ValueError, match="`sigmas` must be >= 0"):
            rk.volume_render(-torch.ones(1, 2), torch.ones(1, 2, 3), torch.zeros(1, 2), torch.ones(1, 2), backend=be)


def test_mixed_dtypes_accumulate_in_float32(fused_backend):
    """Issue 13 #5: float16 colors among float32 inputs; bf16 at S=256 agrees across backends."""
    torch.manual_seed(1)
    R, S = 16, 256
    sig = torch.rand(R, S) * 0.5
    d = torch.full((R, S), 4.0 / S)
    ts = d.cumsum(-1) - d
    col = torch.rand(R, S, 3)
    outs = [rk.volume_render(sig, col.half(), ts, ts + d, backend=be) for be in _backends(fused_backend)]
    assert all(o.rgb.dtype == torch.float32 for o in outs)
    assert_close(outs[0].rgb, outs[1].rgb, atol=1e-5, name="f16 colors")
    bf = [x.bfloat16() for x in (sig, col, ts, ts + d)]
    ref = reference.composite_padded(
        bf[0].double(), (bf[3] - bf[2]).double(), (0.5 * (bf[2] + bf[3])).double(), bf[1].double()
    )
    for be in _backends(fused_backend):
        out = rk.volume_render(*bf, backend=be)
        assert out.depth.dtype == torch.bfloat16
        err = (out.depth.double() - ref[1]).abs().max().item()
        assert err < 0.01, f"{be}: bf16 depth error {err:.3g} (bf16 output rounding is ~0.004 here)"


def test_empty_sizes(fused_backend):
    """Issue 13 #6: C=0 colors, no rays, no samples, packed rays without samples."""
    for be in _backends(fused_backend):
        out = rk.volume_render(torch.rand(2, 3), torch.rand(2, 3, 0), torch.zeros(2, 3), torch.ones(2, 3), backend=be)
        assert out.rgb.shape == (2, 0) and out.opacity.shape == (2,)
        out = rk.volume_render(torch.rand(0, 3), torch.rand(0, 3, 3), torch.zeros(0, 3), torch.ones(0, 3), backend=be)
        assert out.rgb.shape == (0, 3)
        out = rk.volume_render(
            torch.rand(0),
            torch.rand(0, 3),
            torch.zeros(0),
            torch.zeros(0),
            offsets=torch.zeros(3, dtype=torch.int64),
            background=1.0,
            backend=be,
        )
        assert torch.equal(out.rgb, torch.ones(2, 3)) and torch.equal(out.opacity, torch.zeros(2))
        loss = rk.distortion_loss(torch.rand(3, 0), torch.zeros(3, 0), torch.zeros(3, 0), backend=be)
        assert torch.equal(loss, torch.zeros(3))


def test_distortion_unsorted_intervals_raise(fused_backend):
    """Issue 13 #7: the O(S) formula needs sorted midpoints; unsorted input is refused."""
    w, ts, te = torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    for be in _backends(fused_backend):
        with pytest.raises(ValueError, match="sorted"):
            rk.distortion_loss(w, ts, te, backend=be)
        # packed: a new ray may start below the previous one's end, that is fine
        loss = rk.distortion_loss(w.view(-1), ts.view(-1), te.view(-1), offsets=torch.tensor([0, 1, 2]), backend=be)
        assert_close(loss, torch.tensor([0.5**2 / 3, 0.5**2 / 3]), name=be)
        with pytest.raises(ValueError, match="sorted"):
            rk.distortion_loss(w.view(-1), ts.view(-1), te.view(-1), offsets=torch.tensor([0, 2]), backend=be)
    sorted_ = rk.distortion_loss(w, ts.flip(-1), te.flip(-1))
    assert_close(sorted_, reference.distortion_bruteforce(w, 0.5 * (ts + te).flip(-1), (te - ts).flip(-1)))


def test_distortion_errors_name_weights():
    with pytest.raises(ValueError, match="to match `weights`"):
        rk.distortion_loss(torch.rand(2, 3), torch.zeros(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="`weights` must be finite"):
        rk.distortion_loss(torch.tensor([[NAN, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2))


def test_unclear_errors_are_clear():
    """Issue 13 #11 (volrend part)."""
    meta = [
        torch.ones(2, 3, device="meta"),
        torch.ones(2, 3, 3, device="meta"),
        torch.zeros(2, 3, device="meta"),
        torch.ones(2, 3, device="meta"),
    ]
    out = rk.volume_render(*meta)  # meta tensors give shapes (issue 22; they were refused before)
    assert [tuple(t.shape) for t in out] == [(2, 3), (2,), (2,), (2, 3)] and out.rgb.is_meta
    packed = (torch.rand(3), torch.rand(3, 3), torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"`ray_indices` must lie in \[0, n_rays\)"):
        rk.volume_render(*packed, ray_indices=torch.tensor([-1, 0, 0]), n_rays=2)
    with pytest.raises(ValueError, match=r"`ray_indices` must lie in \[0, n_rays\)"):
        rk.volume_render(*packed, ray_indices=torch.tensor([0, 0, 2]), n_rays=2)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="`n_rays` must be an int >= 0"):
            rk.volume_render(*packed, ray_indices=torch.tensor([0, 0, 0]), n_rays=bad)
    for shape in ((5, 3), (2, 2), (2, 3, 1)):
        with pytest.raises(ValueError, match="`background`"):
            rk.volume_render(
                torch.rand(2, 3), torch.rand(2, 3, 3), torch.zeros(2, 3), torch.ones(2, 3), background=torch.rand(shape)
            )


def test_tiny_optical_depth_keeps_precision(fused_backend):
    """1 - exp(-tau) cancels in float32 for tiny tau (found by tests/rfkernels/test_fuzz.py): alpha must be
    tau to float32 precision, not 0."""
    sig = torch.tensor([[1e-6, 3e-5, 0.004, 0.02]])
    d = torch.tensor([[1e-3, 1e-3, 1.0, 1.0]])
    ts = d.cumsum(-1) - d
    ref = reference.composite_padded(sig.double(), d.double(), (ts + d / 2).double(), None)
    for be in _backends(fused_backend):
        w, _, alphas = rk.render_weights(sig, ts, ts + d, backend=be)
        assert_close(w, ref[3], atol=0, rtol=1e-6, name=f"{be} weights")
        assert_close(alphas, -torch.expm1(-(sig * d).double()), atol=0, rtol=1e-6, name=f"{be} alphas")


@pytest.mark.parametrize("tau", [9000.0, 9990.0, 1e4, 2e4])
def test_values_and_grads_next_to_the_saturation_clamp(fused_backend, tau):
    """Issue 25: a sample of optical depth just under TAU_MAX lets no light through, so nothing after
    it depends on its tau: d/dtau is exactly 0 there on every backend (a suffix sum formed as
    total - prefix left its rounding error, times sigma ~ 2e4, in d t_starts / d t_ends); at and
    above the clamp the sample passes no gradient either. Values and all four gradients vs torch."""
    g = torch.Generator().manual_seed(7)
    R, S = 8, 6
    d = torch.full((R, S), 0.5)
    sig = torch.rand(R, S, generator=g) * 2
    sig[torch.arange(R), torch.arange(R) % S] = tau / 0.5  # the near-opaque sample at every position
    ts = d.cumsum(-1) - d
    col = torch.rand(R, S, 3, generator=g)
    seeds = [torch.randn(shape, generator=g) for shape in ((R, 3), (R,), (R,), (R, S))]
    results = {}
    for be in _backends(fused_backend):
        x = [t.clone().requires_grad_() for t in (sig, ts, ts + d, col)]
        out = rk.volume_render(x[0], x[3], x[1], x[2], backend=be)
        sum((o * s).sum() for o, s in zip(out, seeds)).backward()
        results[be] = (out, [t.grad for t in x])
    (ref, ref_g), (fus, fus_g) = results["torch"], results[fused_backend]
    for name, a, b in zip(ref._fields, fus, ref):
        assert_close(a, b, atol=1e-6, rtol=1e-5, name=f"{fused_backend} {name} at tau={tau}")
    for name, a, b in zip(("sigmas", "t_starts", "t_ends", "colors"), fus_g, ref_g):
        assert_close(a, b, atol=1e-5, rtol=1e-4, name=f"{fused_backend} d{name} at tau={tau}")
