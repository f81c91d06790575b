"""Proposal sampling and interlevel losses: fused backends vs the torch reference (values and
gradients), statistics of the samples (KS bounds), independent re-derivations of the reference
(brute-force outer measure, sort-based blur, numerical quadrature), edge cases, bad input, s-space."""

import math

import pytest
import torch

import rfkernels
from rfkernels.sampling import reference
from tests.helpers.numerics import assert_close, assert_close_scaled

MODES = ("stratified", "single_jitter", "midpoint")


FAMILY = "sampling"  # fused_backend (conftest) also runs csrc/sampling/ on the host


def random_hist(R, S, device, dtype=torch.float32, lo=0.5, span=4.0, zero_ray=True):
    """Sorted bins [R, S+1] with some duplicate edges, weights [R, S] with zeros and (if zero_ray)
    an all-zero first ray."""
    bins = torch.sort(torch.rand(R, S + 1, device=device, dtype=dtype) * span + lo, dim=-1).values
    w = torch.rand(R, S, device=device, dtype=dtype) ** 3
    if S >= 4:
        bins[:, 2] = bins[:, 1]  # a zero-width bin on every ray
        bins[1::3, 3] = bins[1::3, 2]
        w[:, 1] = 5.0  # mass on the zero-width bin must be ignored
    w[:, ::5] = 0.0
    if zero_ray:
        w[0] = 0.0
    return bins, w


def _sample(bins, w, n, backend, seed=3, **kw):
    g = torch.Generator(device=bins.device).manual_seed(seed)
    return rfkernels.sample_pdf(bins, w, n, generator=g, backend=backend, **kw)


def _quantiles(bins, w, x, blur=None, padding=0.01):
    """F(x) of the (blurred) sampling distribution, in float64 via the reference: comparing samples
    in probability space makes the tolerance independent of the local density (where the density
    is small, float32 rounding of the CDF moves x a lot but F(x) only by ~1e-7)."""
    bins, w, x = bins.double(), w.double(), x.double()
    cdf = reference.step_cdf(bins, w, padding)
    if blur is None:
        return reference.eval_step_cdf(bins, cdf, x)
    r = blur.double() if isinstance(blur, torch.Tensor) else torch.full_like(bins[:, 0], blur)
    xk, F, p = reference.blurred_knots(bins, cdf, r)
    i = (torch.searchsorted(xk, x.contiguous(), right=True) - 1).clamp(0, xk.shape[1] - 2)
    x0, x1 = torch.gather(xk, -1, i), torch.gather(xk, -1, i + 1)
    p0, p1 = torch.gather(p, -1, i), torch.gather(p, -1, i + 1)
    h = (x - x0).clamp(min=0.0)
    slope = torch.where(x1 > x0, (p1 - p0) / (x1 - x0).clamp(min=1e-300), torch.zeros_like(p0))
    val = torch.gather(F, -1, i) + p0 * h + 0.5 * slope * h * h
    return torch.where(x <= xk[:, :1], torch.zeros_like(x), torch.where(x >= xk[:, -1:], torch.ones_like(x), val))


def assert_same_samples(out, ref, bins, w, blur=None, padding=0.01, dx=2e-5, name="", ref32=None):
    """Per sample: close in value (|out - ref| <= dx) or in probability (|F(out) - F(ref)| <= du).
    Where the density is large, float32 rounding of x moves F(x) a lot; where it is small, rounding
    of the CDF moves x a lot; a correct inverse is always close in one of the two. ``du`` is the
    worst-case float32 rounding of the K-term CDF prefix sum (K knots), doubled for edges (which
    extrapolate 2c - mid)."""
    K = bins.shape[-1] * (2 if blur is not None else 1)
    du = 2.0 * K * 2.0**-24
    ex = (out.double() - ref.double()).abs()
    eu = (_quantiles(bins, w, out, blur, padding) - _quantiles(bins, w, ref, blur, padding)).abs()
    bad = (ex > dx) & (eu > du)
    if ref32 is not None:  # ill-conditioned spots (a near-zero-width bin under a blur: a huge density)
        # amplify float32 rounding of the knots beyond du; there the kernel must match the float32
        # reference (the same math at the same precision) within dx
        bad &= (out.double() - ref32.double()).abs() > dx
    assert not bool(bad.any()), (
        f"{name}: {int(bad.sum())} samples differ (max |dx| {ex[bad].max().item():.3g}, "
        f"max |dF| {eu[bad].max().item():.3g})"
    )
    if ref32 is not None:  # a gross-error cap; at an ill-conditioned spot the float32 reference itself can
        # be >1e-3 from float64 (seed 3476842223: 1.1e-3, the kernel equal to it), so cap the distance
        # to the nearer of the two references
        ex = torch.minimum(ex, (out.double() - ref32.double()).abs())
    assert float(ex.max()) < 1e-3, f"{name}: max |dx| {ex.max().item():.3g}"


def _assert_sorted(x, name=""):
    assert bool((x[..., 1:] >= x[..., :-1]).all()), f"{name}: output not sorted"


# --------------------------------------------------------------------------------- fused vs reference
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("blur", [None, "per_ray"])
def test_sample_matches_reference(fused_backend, device, seed, mode, blur):
    R, S, n = 8, 70, 37  # S + 1 > BLOCK: the prefix passes cross a block boundary
    edges = mode == "single_jitter"
    bins, w = random_hist(R, S, device)
    if blur == "per_ray":
        blur = torch.rand(R, device=device) * 0.2 + 0.01
    kw = dict(mode=mode, blur_halfwidth=blur)
    ref = _sample(bins.double(), w.double(), n, "torch", **kw)
    out = _sample(bins, w, n, fused_backend, **kw)
    assert out.shape == (R, n) and out.dtype == torch.float32
    assert_same_samples(
        out, ref, bins, w, blur, name=f"{mode} blur={blur is not None}", ref32=_sample(bins, w, n, "torch", **kw)
    )
    _assert_sorted(out, fused_backend)
    _assert_sorted(ref, "torch")
    if edges:  # edges are a fixed function of the centers (float32 rounding of the centers is
        # amplified differently at the edges, so check that function on the same centers)
        e = _sample(bins, w, n, fused_backend, return_edges=True, **kw)
        assert e.shape == (R, n + 1)
        assert_close(e, reference.centers_to_edges(out, bins[:, :1], bins[:, -1:]), atol=1e-6, rtol=1e-6, name="edges")
        _assert_sorted(e, "edges")


@pytest.mark.parametrize("blur", [None, pytest.param(0.02, marks=pytest.mark.slow)])  # blurred: ~5-20 s interpreted
def test_sample_large_S(fused_backend, device, seed, blur):
    bins, w = random_hist(8, 256, device)
    ref = _sample(bins.double(), w.double(), 64, "torch", blur_halfwidth=blur)
    out = _sample(bins, w, 64, fused_backend, blur_halfwidth=blur)
    assert_same_samples(out, ref, bins, w, blur, name="S=256")
    _assert_sorted(out)


def test_sample_packed(fused_backend, device, seed):
    counts = [0, 1, 5, 70, 3, 2, 17]
    R = len(counts)
    per_ray = [random_hist(1, c, device, zero_ray=i == 2) for i, c in enumerate(counts)]
    offsets = torch.zeros(R + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(torch.tensor(counts, device=device), 0)
    bins = torch.cat([b[0] for b, _ in per_ray])
    w = torch.cat([x[0] for _, x in per_ray])
    for blur in (None, 0.05):
        for mode in ("stratified", "midpoint"):
            kw = dict(mode=mode, blur_halfwidth=blur, offsets=offsets, return_edges=mode == "midpoint")
            ref = _sample(bins, w, 9, "torch", **kw)
            out = _sample(bins, w, 9, fused_backend, **kw)
            assert_close(out, ref, atol=1e-4, name=f"packed {mode} blur={blur}")
            if mode == "midpoint":  # same as sampling each ray on its own (padded)
                for r, (b, x) in enumerate(per_ray):
                    one = _sample(b, x, 9, "torch", mode=mode, blur_halfwidth=blur, return_edges=True)
                    assert_close(ref[r], one[0], atol=1e-5, name=f"packed ray {r} (S={counts[r]})")


def test_sample_non_contiguous_and_dtypes(fused_backend, device, seed):
    bins, w = random_hist(8, 20, device)
    bins_t = bins.t().contiguous().t()  # same values, transposed storage
    w_t = w.t().contiguous().t()
    assert not bins_t.is_contiguous()
    ref = _sample(bins, w, 11, "torch")
    assert_close(_sample(bins_t, w_t, 11, fused_backend), ref, atol=3e-5, name="non-contiguous")
    out64 = _sample(bins.double(), w.double(), 11, fused_backend)
    assert out64.dtype == torch.float64
    assert_close(out64, ref, atol=3e-5, name="float64 input")


# -------------------------------------------------------------------------------- semantics / edge cases
@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_sample_edge_cases(backend, fused_backend, device):
    be = fused_backend if backend == "fused" else "torch"
    n = 8
    u_mid = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    # one bin: linear in u
    bins = torch.tensor([[1.0, 3.0]], device=device)
    out = _sample(bins, torch.tensor([[0.3]], device=device), n, be, mode="midpoint")
    assert_close(out[0], 1.0 + 2.0 * u_mid, atol=1e-6, name="one bin")
    # all-zero weights, no padding: uniform in t over uneven bins
    bins = torch.tensor([[0.0, 0.1, 0.5, 2.0]], device=device)
    out = _sample(bins, torch.zeros(1, 3, device=device), n, be, mode="midpoint", histogram_padding=0.0)
    assert_close(out[0], 2.0 * u_mid, atol=1e-6, name="zero weights -> uniform in t")
    # all-zero weights with padding: uniform mass per (positive-width) bin
    out = _sample(bins, torch.zeros(1, 3, device=device), 3, be, mode="midpoint")
    assert_close(out[0], torch.tensor([0.05, 0.3, 1.25], device=device), atol=1e-6, name="padding only")
    # all edges equal: every sample is that edge
    bins = torch.full((2, 5), 0.7, device=device)
    out = _sample(bins, torch.rand(2, 4, device=device), n, be)
    assert_close(out, torch.full((2, n), 0.7, device=device), atol=0, rtol=0, name="degenerate ray")
    # zero-width bins carry no mass: same samples as without them
    bins = torch.tensor([[0.0, 1.0, 1.0, 1.0, 3.0]], device=device)
    w = torch.tensor([[1.0, 9.0, 4.0, 1.0]], device=device)
    ref = _sample(torch.tensor([[0.0, 1.0, 3.0]], device=device), torch.tensor([[1.0, 1.0]], device=device), n, be)
    assert_close(_sample(bins, w, n, be), ref, atol=1e-6, name="duplicate edges")
    # n = 1 edges: the ray's domain
    out = _sample(bins, w, 1, be, return_edges=True)
    assert_close(out, torch.tensor([[0.0, 3.0]], device=device), atol=0, name="n=1 edges")
    # no rays
    empty = rfkernels.sample_pdf(torch.zeros(0, 4, device=device), torch.zeros(0, 3, device=device), 5, backend=be)
    assert empty.shape == (0, 5)


def test_sample_bounds_and_detached(device, seed):
    bins, w = random_hist(16, 30, device)
    bins.requires_grad_()
    w.requires_grad_()
    for mode in MODES:
        out = _sample(bins, w, 17, "torch", mode=mode)
        assert not out.requires_grad
        _assert_sorted(out)
        assert bool((out >= bins[:, :1]).all() and (out <= bins[:, -1:]).all())
        e = _sample(bins, w, 17, "torch", mode=mode, return_edges=True)
        assert bool((e >= bins[:, :1]).all() and (e <= bins[:, -1:]).all())
        _assert_sorted(e)
    out = _sample(bins, w, 17, "torch", blur_halfwidth=0.3, return_edges=True)  # blur truncated to the domain
    assert bool((out >= bins[:, :1]).all() and (out <= bins[:, -1:]).all())
    _assert_sorted(out)


@pytest.mark.slow  # ~8-30 s in the Triton interpreter
def test_sample_sorted_and_in_domain_stress(fused_backend, device, seed):
    """Many random rays (duplicate edges, zero weights, narrow/wide bins, blur): every backend's
    samples and edges are sorted and inside [t_0, t_S]."""
    R = 32 if fused_backend == "triton" else 1024  # the Triton interpreter is slow
    bins, w = random_hist(R, 16, device)
    bins = torch.sort(bins * torch.rand(R, 1, device=device) ** 4 * 1e3, -1).values  # scales 1e-9 .. 1e3
    blur = (bins[:, -1] - bins[:, 0]).clamp(min=1e-6) * torch.rand(R, device=device) * 0.3 + 1e-7
    for be in ("torch", fused_backend):
        for kw in (
            dict(mode="stratified"),
            dict(mode="single_jitter", return_edges=True),
            dict(mode="stratified", blur_halfwidth=blur),
            dict(mode="midpoint", blur_halfwidth=blur, return_edges=True),
        ):
            out = _sample(bins, w, 24, be, **kw)
            _assert_sorted(out, f"{be} {kw.keys()}")
            assert bool((out >= bins[:, :1]).all() and (out <= bins[:, -1:]).all()), f"{be}: outside the domain"


def test_sample_reproducible_with_generator(fused_backend, device):
    bins, w = random_hist(8, 12, device)
    for mode in ("stratified", "single_jitter"):
        a = _sample(bins, w, 10, fused_backend, seed=1, mode=mode)
        b = _sample(bins, w, 10, fused_backend, seed=1, mode=mode)
        c = _sample(bins, w, 10, fused_backend, seed=2, mode=mode)
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_single_jitter_is_one_offset_per_ray(device):
    """single_jitter: u_k - k/n is the same for all k of a ray (checked through the CDF)."""
    bins = torch.linspace(0, 1, 9, device=device, dtype=torch.float64).expand(4, 9).contiguous()
    w = torch.ones(4, 8, device=device, dtype=torch.float64)  # uniform: x = u
    out = _sample(bins, w, 6, "torch", mode="single_jitter")
    frac = out * 6 - torch.arange(6, device=device)
    assert_close(frac, frac[:, :1].expand_as(frac), atol=1e-9, name="single jitter")
    assert bool(((frac >= 0) & (frac < 1)).all())


# ------------------------------------------------------------------------------------ statistics
def _cdf_at(bins, w, padding, x):
    return reference.eval_step_cdf(bins, reference.step_cdf(bins, w, padding), x)


def _dkw_bound(n, alpha=1e-4):
    """Dvoretzky-Kiefer-Wolfowitz: P(sup|F_n - F| > eps) <= 2 exp(-2 n eps^2) = alpha."""
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def test_samples_follow_the_pdf_ks(device):
    """i.i.d. draws (one stratified sample per ray = one U(0,1) per ray) pass a KS test at
    alpha=1e-4 with the DKW bound; stratified samples of one ray are within 1/n of the CDF
    deterministically (one sample per stratum)."""
    g = torch.Generator(device=device).manual_seed(1234)
    bins = torch.sort(torch.rand(1, 17, device=device, generator=g, dtype=torch.float64), -1).values
    w = torch.rand(1, 16, device=device, generator=g, dtype=torch.float64) ** 2
    N = 8192
    B, W = bins.expand(N, 17).contiguous(), w.expand(N, 16).contiguous()
    x = rfkernels.sample_pdf(B, W, 1, generator=g, backend="torch", histogram_padding=0.0)
    F = torch.sort(_cdf_at(bins, w, 0.0, x.reshape(1, N))[0]).values
    i = torch.arange(1, N + 1, device=device, dtype=torch.float64)
    D = torch.maximum(i / N - F, F - (i - 1) / N).max().item()
    assert D < _dkw_bound(N), f"KS statistic {D:.4f} >= DKW bound {_dkw_bound(N):.4f}"
    for mode in MODES:  # stratified families: sup |F_n - F| <= 1/n (+ rounding)
        n = 50
        xs = rfkernels.sample_pdf(bins, w, n, mode=mode, generator=g, backend="torch", histogram_padding=0.0)
        F = _cdf_at(bins, w, 0.0, xs)[0]
        k = torch.arange(1, n + 1, device=device, dtype=torch.float64)
        D = torch.maximum(k / n - F, F - (k - 1) / n).max().item()
        assert D <= 1.0 / n + 1e-12, f"{mode}: D={D}"


def _blurred_cdf_quadrature(bins, w, padding, r, x, m=4001):
    """(1/2r) * integral_{x-r}^{x+r} F(y) dy by the trapezoid rule on a fine grid (float64)."""
    y = x[..., None] + torch.linspace(-r, r, m, dtype=torch.float64, device=x.device)
    F = _cdf_at(bins, w, padding, y.reshape(1, -1)).reshape(y.shape)
    return torch.trapezoid(F, y, dim=-1) / (2 * r)


def _truncated_blurred_cdf(bins, w, padding, r, x, m=4001):
    """The blurred CDF restricted to [t_0, t_S] and renormalized (what sample_pdf draws from)."""
    ends = torch.stack([bins[0, 0], bins[0, -1]])
    f0, f1 = _blurred_cdf_quadrature(bins, w, padding, r, ends, m)
    return (_blurred_cdf_quadrature(bins, w, padding, r, x, m) - f0) / (f1 - f0)


def test_blurred_samples_invert_the_blurred_cdf(device):
    """Midpoint samples x_k of the blurred PDF satisfy F_blur(x_k) = (k + 1/2) / n, with F_blur
    computed independently by quadrature of the box filter (truncated to the domain and
    renormalized); i.i.d. draws pass the DKW bound."""
    g = torch.Generator(device=device).manual_seed(99)
    bins = torch.sort(torch.rand(1, 13, device=device, generator=g, dtype=torch.float64), -1).values
    w = torch.rand(1, 12, device=device, generator=g, dtype=torch.float64)
    r, n = 0.04, 40
    x = rfkernels.sample_pdf(bins, w, n, mode="midpoint", blur_halfwidth=r, backend="torch")
    F = _truncated_blurred_cdf(bins, w, 0.01, r, x[0])
    assert_close(F, (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n, atol=2e-6, name="F_blur(x)")
    N = 4096
    xs = rfkernels.sample_pdf(
        bins.expand(N, 13).contiguous(), w.expand(N, 12).contiguous(), 1, blur_halfwidth=r, generator=g, backend="torch"
    )
    F = torch.sort(_truncated_blurred_cdf(bins, w, 0.01, r, xs[:, 0], m=401)).values
    i = torch.arange(1, N + 1, device=device, dtype=torch.float64)
    D = torch.maximum(i / N - F, F - (i - 1) / N).max().item()
    assert D < _dkw_bound(N) + 1e-5, f"KS statistic {D:.4f}"


# --------------------------------------------------------------------------------- interlevel losses
def random_levels(R, S, P, device, dtype=torch.float32):
    """Fine intervals inside a proposal that covers [0, 1]; both in s-space."""
    t = torch.sort(torch.rand(R, S + 1, device=device, dtype=dtype) * 0.9 + 0.05, -1).values
    w = torch.rand(R, S, device=device, dtype=dtype) ** 2 * (2.0 / S)
    tp = torch.sort(torch.rand(R, P + 1, device=device, dtype=dtype), -1).values
    tp[:, 0], tp[:, -1] = 0.0, 1.0
    if P >= 4:
        tp[::2, 2] = tp[::2, 1]  # a zero-width proposal bin
    wp = torch.rand(R, P, device=device, dtype=dtype) * (2.0 / P)
    return t, w, tp, wp


@pytest.mark.parametrize("blur", [None, 0.003, "per_ray"])
@pytest.mark.parametrize("sizes", [(33, 64), (70, 5), (256, 64)])
def test_interlevel_matches_reference(fused_backend, device, seed, blur, sizes):
    S, P = sizes
    R = 16 if S < 256 else 4
    t, w, tp, wp = random_levels(R, S, P, device)
    if blur == "per_ray":
        blur = torch.rand(R, device=device) * 0.05 + 0.002
    wp64 = wp.double().requires_grad_()
    ref = rfkernels.interlevel_loss(t.double(), w.double(), tp.double(), wp64, blur_halfwidth=blur, backend="torch")
    wpf = wp.clone().requires_grad_()
    out = rfkernels.interlevel_loss(t, w, tp, wpf, blur_halfwidth=blur, backend=fused_backend)
    seeds = torch.rand(R, device=device, dtype=torch.float64) + 0.5
    (g_ref,) = torch.autograd.grad((ref * seeds).sum(), wp64)
    (g_out,) = torch.autograd.grad((out * seeds.float()).sum(), wpf)
    # the kernels accumulate in float64: the float64 reference on the same (float32) inputs is
    # matched to float32 output rounding
    assert_close(out, ref, atol=1e-7, rtol=1e-6, name="loss")
    assert_close_scaled(g_out, g_ref, rel=1e-6, name="grad prop_weights")


def _pack_levels(levels):
    """[(bins [1, S+1], weights [1, S]), ...] per ray -> packed (bins [N + R], weights [N], offsets [R+1])."""
    counts = torch.tensor([w.shape[1] for _, w in levels])
    offsets = torch.zeros(len(levels) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    return (torch.cat([b[0] for b, _ in levels]), torch.cat([w[0] for _, w in levels]), offsets.to(levels[0][0].device))


@pytest.mark.parametrize("blur", [None, 0.01])
def test_interlevel_packed(fused_backend, device, seed, blur):
    """Packed levels (ragged, one level packed and the other padded, or both): the torch backend
    equals each ray evaluated on its own; the fused backend equals the torch one (values, grads)."""
    fine_counts, prop_counts = [1, 9, 40, 3, 17], [6, 2, 12, 30, 5]
    fine = [random_levels(1, s, 4, device)[:2] for s in fine_counts]
    prop = [random_levels(1, 4, p, device)[2:] for p in prop_counts]
    t, w, t_off = _pack_levels(fine)
    tp, wp, tp_off = _pack_levels(prop)
    f64 = lambda *ts: [x.double() for x in ts]  # noqa: E731  (float64 references: float32 ones are noisier)
    per_ray = torch.cat(
        [rfkernels.interlevel_loss(*f64(*f, *q), blur_halfwidth=blur, backend="torch") for f, q in zip(fine, prop)]
    )
    grads = {}
    for be, dt in (("torch", torch.float64), (fused_backend, torch.float32)):  # float64 reference, as above
        wpg = wp.to(dt).requires_grad_()
        loss = rfkernels.interlevel_loss(
            t.to(dt), w.to(dt), tp.to(dt), wpg, blur_halfwidth=blur, fine_offsets=t_off, prop_offsets=tp_off, backend=be
        )
        assert_close(loss, per_ray, atol=1e-6, rtol=1e-5, name=f"{be} packed loss")
        (grads[be],) = torch.autograd.grad((loss * torch.arange(1.0, 6.0, device=device, dtype=dt)).sum(), wpg)
    assert_close_scaled(grads[fused_backend], grads["torch"], rel=1e-6, name="grad prop_weights (packed)")
    # a padded fine level with a packed proposal level
    t_pad, w_pad, _, _ = random_levels(5, 8, 4, device)
    ref = torch.cat(
        [
            rfkernels.interlevel_loss(
                *f64(t_pad[i : i + 1], w_pad[i : i + 1], *prop[i]), blur_halfwidth=blur, backend="torch"
            )
            for i in range(5)
        ]
    )
    out = rfkernels.interlevel_loss(
        t_pad, w_pad, tp, wp, prop_offsets=tp_off, blur_halfwidth=blur, backend=fused_backend
    )
    assert_close(out, ref, atol=1e-6, rtol=1e-5, name="padded fine + packed proposal")


def test_interlevel_packed_bad_input(device):
    t, w, tp, wp = random_levels(3, 4, 5, device)
    off = torch.tensor([0, 4, 8, 12], device=device)
    with pytest.raises(ValueError, match="fine_bins"):  # packed bins need N + R edges
        rfkernels.interlevel_loss(t[:, 1:].reshape(-1), w.reshape(-1), tp, wp, fine_offsets=off)
    with pytest.raises(ValueError, match="prop_offsets"):
        rfkernels.interlevel_loss(t, w, tp.reshape(-1)[:-3], wp.reshape(-1)[:-3], prop_offsets=off[:-1] * 5 // 4)


def test_interlevel_reference_gradcheck(device):
    # fixed inputs: the blurred loss has curvature ~ 1 / W^2, so a finite difference needs
    # intervals whose proposal mass W is not tiny; this fixed draw is such a case
    torch.manual_seed(0)
    t, w, tp, wp = random_levels(3, 7, 5, device, dtype=torch.float64)
    wp.requires_grad_()
    for blur in (None, 0.05):
        fn = lambda x: rfkernels.interlevel_loss(t, w, tp, x, blur_halfwidth=blur, backend="torch")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (wp,), eps=1e-7, atol=1e-6)


def test_outer_loss_matches_brute_force(device, seed):
    """W_j = sum of proposal masses over bins k with tp_{k+1} > t_j and tp_k <= t_{j+1}."""
    t, w, tp, wp = random_levels(6, 9, 7, device, dtype=torch.float64)
    overlap = (tp[:, None, 1:] > t[:, :-1, None]) & (tp[:, None, :-1] <= t[:, 1:, None])  # [R, S, P]
    outer = (overlap * wp[:, None, :]).sum(-1)
    eps = rfkernels.sampling.EPS
    expected = (torch.relu(w - outer) ** 2 / (w + eps)).sum(-1)
    assert_close(rfkernels.interlevel_loss(t, w, tp, wp, backend="torch"), expected, atol=1e-12, name="outer")


def _blur_stepfun_sorted(tp, wp, r, tq):
    """Independent blurred resampling of histogram (tp, wp) onto tq (sort-based, as Zip-NeRF's
    linspline): the blurred PDF is piecewise linear on sort(tp - r, tp + r) with slope changes
    +-p_k / 2r; integrate exactly."""
    widths = tp[:, 1:] - tp[:, :-1]
    p = torch.where(widths > 0, wp / widths.clamp(min=1e-300), torch.zeros_like(wp))
    dp = torch.cat([p, torch.zeros_like(p[:, :1])], -1) - torch.cat([torch.zeros_like(p[:, :1]), p], -1)
    x, idx = torch.sort(torch.cat([tp - r, tp + r], -1), -1)
    slope_change = torch.gather(torch.cat([dp, -dp], -1) / (2 * r), -1, idx)
    slope = torch.cumsum(slope_change, -1)[:, :-1]
    dx = x[:, 1:] - x[:, :-1]
    dens = torch.cat([torch.zeros_like(x[:, :1]), torch.cumsum(slope * dx, -1)], -1)  # density at knots
    cdf = torch.cat([torch.zeros_like(x[:, :1]), torch.cumsum(0.5 * (dens[:, 1:] + dens[:, :-1]) * dx, -1)], -1)
    i = (torch.searchsorted(x, tq, right=True) - 1).clamp(0, x.shape[1] - 2)
    x0, d0 = torch.gather(x, -1, i), torch.gather(dens, -1, i)
    s = torch.gather(slope, -1, i)
    h = (tq - x0).clamp(min=0.0)
    val = torch.gather(cdf, -1, i) + d0 * h + 0.5 * s * h * h
    val = torch.where(tq >= x[:, -1:], cdf[:, -1:], val)
    return (val[:, 1:] - val[:, :-1]).clamp(min=0.0)


def test_blurred_resample_matches_sort_based(device, seed):
    t, w, tp, wp = random_levels(5, 20, 9, device, dtype=torch.float64)
    for r in (0.01, 0.1):
        rr = torch.full((5,), r, device=device, dtype=torch.float64)
        assert_close(
            reference.blurred_resample(tp, t, w, rr),
            _blur_stepfun_sorted(t, w, r, tp),
            atol=1e-10,
            name=f"blurred resample r={r}",
        )


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_interlevel_zero_when_upper_bounded(backend, fused_backend, device):
    be = fused_backend if backend == "fused" else "torch"
    t, w, _, _ = random_levels(8, 24, 4, device)
    # outer: proposal = the fine bins with at least the fine masses, and a coarser proposal whose
    # bins are unions of fine bins carrying their summed mass
    assert float(rfkernels.interlevel_loss(t, w, t, w * 1.5 + 1e-3, backend=be).abs().max()) == 0.0
    tp, wp = t[:, ::4].contiguous(), w.reshape(8, 6, 4).sum(-1)
    assert float(rfkernels.interlevel_loss(t, w, tp, wp, backend=be).abs().max()) == 0.0
    # blurred: fine density 0.5 * P on [2r, 1 - 2r] blurs to at most 0.5 * P, i.e. at most 0.5 of
    # mass per proposal bin of width 1 / P, below the proposal's 1 per bin
    P, r = 16, 0.02
    tp = torch.linspace(0, 1, P + 1, device=device).expand(8, P + 1).contiguous()
    t = torch.sort(torch.rand(8, 25, device=device) * (1 - 4 * r) + 2 * r, -1).values
    w = 0.5 * P * (t[:, 1:] - t[:, :-1])
    loss = rfkernels.interlevel_loss(t, w, tp, torch.ones(8, P, device=device), blur_halfwidth=r, backend=be)
    assert float(loss.abs().max()) == 0.0


def test_interlevel_edge_cases(fused_backend, device):
    t, w, _, _ = random_levels(4, 6, 3, device)
    eps = rfkernels.sampling.EPS
    for blur in (None, 0.05):
        # nothing bounds the fine weights: the outer loss (over fine intervals) is sum w^2 / (w + eps);
        # the blurred loss lives on the proposal intervals: none (P = 0) or none with fine mass -> 0
        expected = (w**2 / (w + eps)).sum(-1) if blur is None else torch.zeros(4, device=device)
        for be in ("torch", fused_backend):
            wp = torch.zeros(4, 0, device=device, requires_grad=True)
            tp0 = torch.zeros(4, 1, device=device)
            loss = rfkernels.interlevel_loss(t, w, tp0, wp, blur_halfwidth=blur, backend=be)
            assert_close(loss, expected, rtol=1e-5, name=f"P=0 {be}")
            # proposal entirely outside the fine domain (and beyond the blur)
            tp = torch.linspace(2.0, 3.0, 5, device=device).expand(4, 5).contiguous()
            wp = torch.rand(4, 4, device=device, requires_grad=True)
            loss = rfkernels.interlevel_loss(t, w, tp, wp, blur_halfwidth=blur, backend=be)
            (g,) = torch.autograd.grad(loss.sum(), wp)
            assert_close(loss, expected, rtol=1e-5, name=f"outside {be}")
            assert float(g.abs().max()) == 0.0
            if blur is not None:  # no fine mass (S = 0 or all-zero weights): nothing to bound
                for tf, wf in ((t[:, :1], w[:, :0]), (t, torch.zeros_like(w))):
                    loss = rfkernels.interlevel_loss(tf, wf, t, w, blur_halfwidth=blur, backend=be)
                    assert_close(loss, torch.zeros(4, device=device), atol=0, rtol=0, name=f"no fine mass {be}")
        out = rfkernels.interlevel_loss(t[:0], w[:0], t[:0], w[:0], blur_halfwidth=blur, backend=fused_backend)
        assert out.shape == (0,)


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_blurred_loss_known_values(backend, fused_backend, device):
    """Fine mass 1 uniform on [0.4, 0.6], blurred by r = 0.1: a triangle-topped density rising
    linearly from 0 at 0.3 to 5 at 0.5 and back to 0 at 0.7, so proposal bins [0.3, 0.4, 0.5, 0.7]
    receive 0.125, 0.375, 0.5; with wp = 0.1 each the loss is sum (Wb - 0.1)^2 / (0.1 + eps)."""
    be = fused_backend if backend == "fused" else "torch"
    t = torch.tensor([[0.0, 0.4, 0.6, 1.0]], device=device)
    w = torch.tensor([[0.0, 1.0, 0.0]], device=device)
    tp = torch.tensor([[0.3, 0.4, 0.5, 0.7]], device=device)
    wp = torch.full((1, 3), 0.1, device=device, requires_grad=True)
    loss = rfkernels.interlevel_loss(t, w, tp, wp, blur_halfwidth=0.1, backend=be)
    wb, den = torch.tensor([0.125, 0.375, 0.5], device=device), 0.1 + rfkernels.sampling.EPS
    assert_close(loss, ((wb - 0.1) ** 2).sum()[None] / den, atol=1e-6, rtol=1e-5, name="loss")
    (g,) = torch.autograd.grad(loss.sum(), wp)
    e = wb - 0.1
    assert_close(g[0], -2 * e / den - e * e / den**2, atol=1e-5, rtol=1e-5, name="grad")


def test_interlevel_no_grad_to_fine_or_bins(device):
    t, w, tp, wp = random_levels(4, 6, 5, device)
    for x in (t, w, tp, wp):
        x.requires_grad_()
    loss = rfkernels.interlevel_loss(t, w, tp, wp, blur_halfwidth=0.01, backend="torch")
    g = torch.autograd.grad(loss.sum(), (t, w, tp, wp), allow_unused=True)
    assert g[0] is None and g[1] is None and g[2] is None and g[3] is not None


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input(device):
    bins, w = random_hist(4, 6, device)
    sp, il = rfkernels.sample_pdf, rfkernels.interlevel_loss
    bad = bins.clone()
    bad[1, 3] = bad[1, 4] + 1.0
    cases = [
        (lambda: sp(bad, w, 4), "bins"),
        (lambda: sp(bins, -w - 1e-3, 4), "weights"),
        (lambda: sp(bins, w[:, :-1], 4), "weights"),
        (lambda: sp(bins[0], w, 4), "offsets"),
        (lambda: sp(bins, w, 0), "n_samples"),
        (lambda: sp(bins, w, 4, mode="uniform"), "mode"),
        (lambda: sp(bins, w, 4, histogram_padding=-1.0), "histogram_padding"),
        (lambda: sp(bins, w, 4, blur_halfwidth=0.0), "blur_halfwidth"),
        (lambda: sp(bins, w, 4, blur_halfwidth=torch.ones(3, device=device)), "blur_halfwidth"),
        (lambda: sp(bins, w, 4, blur_halfwidth=-torch.ones(4, device=device)), "blur_halfwidth"),
        (lambda: sp(bins.reshape(-1)[:10], w.reshape(-1)[:6], 4, offsets=torch.tensor([0, 6], device=device)), "bins"),
        (
            lambda: sp(bins.reshape(-1)[:8], w.reshape(-1)[:6], 4, offsets=torch.tensor([0, 4, 3, 6], device=device)),
            "offsets",
        ),
        (lambda: il(bad, w, bins, w), "fine_bins"),
        (lambda: il(bins, w, bad, w), "prop_bins"),
        (lambda: il(bins, w, bins, -w - 1), "prop_weights"),
        (lambda: il(bins, w, bins[:3], w[:3]), "prop_bins"),
        (lambda: il(bins, w, bins, w[:, :2]), "prop_weights"),
        (lambda: il(bins, w, bins, w, blur_halfwidth=-0.1), "blur_halfwidth"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()
    nan = bins.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="bins"):
        sp(nan, w, 4)


def test_packed_boundaries_may_decrease(device):
    """Edges of consecutive packed rays need not be ordered across the ray boundary."""
    bins = torch.tensor([2.0, 3.0, 0.0, 1.0, 1.5], device=device)
    w = torch.tensor([1.0, 1.0, 1.0], device=device)
    out = rfkernels.sample_pdf(
        bins, w, 2, mode="midpoint", offsets=torch.tensor([0, 1, 3], device=device), backend="torch"
    )
    assert_close(out, torch.tensor([[2.25, 2.75], [0.5, 1.25]], device=device), atol=1e-6, name="packed")


# ----------------------------------------------------------------------------------------- s-space
@pytest.mark.parametrize("kind", ["linear", "inverse", "power"])
def test_space_map_round_trip(device, kind):
    R = 6
    near = torch.rand(R, device=device, dtype=torch.float64) * 0.5 + 0.1
    far = near + torch.rand(R, device=device, dtype=torch.float64) * 100 + 1.0
    m = rfkernels.SpaceMap(kind, near, far)
    s = torch.linspace(0, 1, 33, device=device, dtype=torch.float64).expand(R, 33)
    t = m.s_to_t(s)
    assert_close(t[:, 0], near, rtol=1e-12, name="s=0 -> near")
    assert_close(t[:, -1], far, rtol=1e-10, name="s=1 -> far")
    assert bool((t[:, 1:] > t[:, :-1]).all()), "s_to_t must be increasing"
    assert_close(m.t_to_s(t), s, atol=1e-10, name="round trip s")
    tt = near[:, None] + torch.rand(R, 9, device=device, dtype=torch.float64) * (far - near)[:, None]
    assert_close(
        rfkernels.s_to_t(rfkernels.t_to_s(tt, near, far, kind), near, far, kind), tt, rtol=1e-10, name="round trip t"
    )


def test_space_map_known_values(device):
    t = torch.tensor([1.0, 2.0, 4.0], device=device, dtype=torch.float64)
    f64 = dict(dtype=torch.float64, device=device)
    assert_close(rfkernels.t_to_s(t, 1.0, 4.0, "linear"), torch.tensor([0, 1 / 3, 1.0], **f64), atol=1e-12)
    assert_close(rfkernels.t_to_s(t, 1.0, 4.0, "inverse"), torch.tensor([0, 2 / 3, 1.0], **f64), atol=1e-12)
    # Zip-NeRF power ladder f(x) = P(2x, -1.5): f(0) = 0, f'(0) = 2, f(inf) = |lam-1|/|lam| = 5/3
    m = rfkernels.SpaceMap("power", 0.0, 1e12)
    x = torch.tensor([0.0, 1e-6], device=device, dtype=torch.float64)
    fx = m._f(x)
    assert_close(fx, torch.tensor([0.0, 2e-6], dtype=torch.float64), atol=1e-15)
    assert abs(float(m._f(torch.tensor(1e12, dtype=torch.float64))) - 5.0 / 3.0) < 1e-6
    with pytest.raises(ValueError, match="kind"):
        rfkernels.SpaceMap("log")
    with pytest.raises(ValueError, match="near"):
        rfkernels.SpaceMap("inverse", 0.0, 1.0)
    with pytest.raises(ValueError, match="far"):
        rfkernels.SpaceMap("linear", 2.0, 1.0)


@pytest.mark.parametrize("kind, lam", [("linear", -1.5), ("power", 0.5), ("power", 2.0)])
def test_space_map_unbounded_far_rejected_where_f_is_unbounded(kind, lam):
    """Issue 25: f(inf) = inf (linear, power ladder with lam > 0) made every s_to_t inf or NaN and
    every t_to_s 0; far = inf (scalar or one ray of a per-ray tensor) is a ValueError naming `far`."""
    for far in (math.inf, torch.tensor([4.0, math.inf], dtype=torch.float64)):
        with pytest.raises(ValueError, match="`far` must be finite"):
            rfkernels.SpaceMap(kind, 0.0, far, lam=lam)
    with pytest.raises(ValueError, match="`near` must be finite"):
        rfkernels.SpaceMap("linear", -math.inf, 1.0)


@pytest.mark.parametrize("kind, near", [("inverse", 0.5), ("power", 0.0)])
def test_space_map_unbounded_far_where_f_is_bounded(device, kind, near):
    """1/t and the power ladder with lam < 0 are bounded at inf: far = inf maps s = 1 to t = inf and
    s < 1 to finite, increasing t, and the maps invert each other; a finite far in the same per-ray
    tensor is unaffected."""
    f64 = dict(dtype=torch.float64, device=device)
    far = torch.tensor([math.inf, 10.0], **f64)
    m = rfkernels.SpaceMap(kind, near, far)
    s = torch.linspace(0, 1, 17, **f64).expand(2, 17)
    t = m.s_to_t(s)
    assert_close(t[:, 0], torch.full((2,), near, **f64), atol=1e-12, name="s=0 -> near")
    assert t[0, -1].item() == math.inf and abs(t[1, -1].item() - 10.0) < 1e-9, t[:, -1]
    assert bool(torch.isfinite(t[:, :-1]).all()) and bool((t[:, 1:] > t[:, :-1]).all()), t
    assert_close(m.t_to_s(t), s, atol=1e-12, name="round trip s (t = inf included)")
    assert_close(m.t_to_s(m.s_to_t(s[:, :-1])), s[:, :-1], atol=1e-12, name="round trip finite t")
