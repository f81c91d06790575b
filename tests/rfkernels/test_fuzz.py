"""Differential fuzzing (hypothesis): every backend runnable here (torch, triton in the interpreter
or on a GPU, cuda or its host emulation) agrees with the float64 reference on drawn inputs, or
raises the same ``ValueError``. Draws shapes (0 and 1 included), dtypes (mixed), layouts (padded,
packed by offsets or ray_indices), strides (non-contiguous views) and edge values (0, tiny, huge,
inf, NaN where the README's numerics policy defines them).

Budget: ``RFK_FUZZ_EXAMPLES`` examples per test (default 25, the CI setting), no deadline; run
``RFK_FUZZ_RANDOM=1 RFK_FUZZ_EXAMPLES=1000 python -m pytest -s tests/rfkernels/test_fuzz.py`` for a longer
campaign on fresh draws (by default the draws are derandomized: the same examples every run, so CI
cannot turn red on a draw nobody can reproduce). The number of
examples run per test (including those hypothesis discards with ``assume``) is printed at the end
(``-s``) and kept in ``EXAMPLES_RUN``.
"""

from __future__ import annotations

import collections
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rfkernels as rk
from rfkernels.hashgrid.module import HashGridEncoding
from rfkernels.sampling import reference as sampling_ref
from rfkernels.volrend import reference as volrend_ref
from tests.helpers.backends import DEVICE, all_backends
from tests.helpers.gather_scenes import random_scene

settings.register_profile(
    "rfk",
    max_examples=int(os.environ.get("RFK_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("RFK_FUZZ_RANDOM", "0") != "1",  # CI is deterministic; campaigns draw fresh
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("rfk")
EXAMPLES_RUN: collections.Counter = collections.Counter()

pytestmark = pytest.mark.usefixtures("one_thread")

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 2e-5, torch.float64: 2e-5}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfuzz examples run:", dict(EXAMPLES_RUN), "total", sum(EXAMPLES_RUN.values()))


def _count(name):
    EXAMPLES_RUN[name] += 1


def _close(actual, expected, rtol, scale=None, what="", atol=None):
    """|a - e| <= rtol * (|e| + scale) + (the smallest normal of a's dtype: underflow) + ``atol``
    (a tensor broadcast against ``e``: a known conditioning bound) elementwise, in float64; equal
    non-finite entries match."""
    underflow = max(torch.finfo(actual.dtype).smallest_normal, torch.finfo(torch.float32).smallest_normal)
    atol = underflow + (0.0 if atol is None else atol.detach().double().cpu())
    a = actual.detach().double().cpu()
    e = expected.detach().to(actual.dtype).double().cpu()  # overflow of the output dtype is inf on both sides
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    if not e.numel():
        return
    same = (a == e) | (a.isnan() & e.isnan())
    scale = e[e.isfinite()].abs().max().item() if scale is None and bool(e.isfinite().any()) else (scale or 0.0)
    ok = same | ((a - e).abs() <= rtol * (e.abs() + scale) + atol)
    assert bool(ok.all()), (
        f"{what}: worst |a-e| {((a - e).abs()[~ok]).max().item():.3g} at rtol {rtol:g} (scale {scale:.3g})"
    )


def _view(t: torch.Tensor, strided: bool) -> torch.Tensor:
    """The same values as a non-contiguous view (every other element of a 2x larger buffer)."""
    if not strided or t.numel() == 0:
        return t
    buf = torch.zeros(t.shape + (2,), dtype=t.dtype, device=t.device)
    buf[..., 0] = t
    return buf[..., 0]


def _raise_message(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    return None


# ------------------------------------------------------------------------------------------ volrend
SIGMA_VALUES = st.one_of(st.floats(0.0, 50.0, width=32), st.sampled_from([0.0, 1e-30, 1e-6, 1e4, 1e7, math.inf]))


@st.composite
def rays(draw, allow_inf_end=True):
    """Padded [R, S] rays: sorted edges (zero-length intervals included), densities with edge values."""
    R = draw(st.sampled_from([0, 1, 2, 3]))
    S = draw(st.sampled_from([0, 1, 2, 5, 66]))  # 66 > BLOCK_S: crosses a Triton block
    steps = torch.tensor(
        draw(st.lists(st.sampled_from([0.0, 1e-3, 0.07, 0.5, 2.0]), min_size=R * (S + 1), max_size=R * (S + 1))),
        dtype=torch.float64,
    ).view(R, S + 1)
    edges = steps.cumsum(-1)
    if allow_inf_end and R and S and draw(st.booleans()):
        edges[:, -1] = math.inf  # the last interval reaches infinity (a background sample)
    sig = torch.tensor(draw(st.lists(SIGMA_VALUES, min_size=R * S, max_size=R * S)), dtype=torch.float64).view(R, S)
    return sig, edges[:, :-1], edges[:, 1:]


def _layout_kwargs(layout, R, S):
    if layout == "padded":
        return {}
    if layout == "offsets":
        return {"offsets": torch.arange(R + 1, dtype=torch.int64) * S}
    return {"ray_indices": torch.arange(R, dtype=torch.int32).repeat_interleave(S), "n_rays": R}


def _pack(t, layout):
    return t if layout == "padded" or t is None else t.reshape((t.shape[0] * t.shape[1],) + tuple(t.shape[2:]))


@FUZZ
@given(
    data=rays(),
    C=st.sampled_from([0, 1, 3, 5]),
    dtypes=st.tuples(*[st.sampled_from(FLOATS)] * 4),
    layout=st.sampled_from(["padded", "offsets", "ray_indices"]),
    strided=st.booleans(),
    eps=st.sampled_from([0.0, 0.0, 1e-3, 0.3]),
    bg=st.sampled_from([None, 0.5, "rgb"]),
    seed=st.integers(0, 2**16),
)
def test_volume_render_agrees(data, C, dtypes, layout, strided, eps, bg, seed):
    """Values of every backend vs the float64 reference on the same (dtype-rounded) inputs; gradients
    too when every input is float32 and every output finite."""
    _count("volume_render")
    sig64, ts64, te64 = data
    R, S = sig64.shape
    g = torch.Generator().manual_seed(seed)
    col64 = torch.rand(R, S, C, generator=g, dtype=torch.float64)
    ds, dc, dt0, dt1 = dtypes
    inputs = [sig64.to(ds), col64.to(dc), ts64.to(dt0), te64.to(dt1)]
    assume(all(bool((x.double() == x.double()).all()) for x in inputs))  # no overflow to NaN
    assume(bool((inputs[3].double() >= inputs[2].double()).all()))  # rounding kept intervals sorted
    # the inputs as every backend computes with them: float32 unless all are float64 (the policy)
    rounded = [x.double() if all(d == torch.float64 for d in dtypes) else x.float().double() for x in inputs]
    background = torch.rand(C, generator=g, dtype=torch.float64) if bg == "rgb" else bg
    ref = volrend_ref.composite_padded(
        rounded[0], rounded[3] - rounded[2], 0.5 * (rounded[2] + rounded[3]), rounded[1], None, eps
    )
    trans = ref[4]
    assume(eps == 0 or not bool(((trans - eps).abs() < 1e-3 * eps + 1e-6).any()))  # early stop is a step
    want = {
        "rgb": ref[0] + (0.0 if background is None else (1 - ref[2])[:, None] * background),
        "depth": ref[1],
        "opacity": ref[2],
        "weights": _pack(ref[3], layout),
    }
    grads_too = all(d == torch.float32 for d in dtypes) and all(bool(v.isfinite().all()) for v in want.values())
    kw = _layout_kwargs(layout, R, S)
    bg_arg = background.float() if isinstance(background, torch.Tensor) else background
    results = {}
    with all_backends("volrend") as names:
        for be in names:
            x = [_view(_pack(t, layout), strided).detach().requires_grad_(grads_too) for t in inputs]
            out = rk.volume_render(x[0], x[1], x[2], x[3], background=bg_arg, early_stop_eps=eps, backend=be, **kw)
            rtol = RTOL[ds]
            for k, v in want.items():
                got = getattr(out, k)
                assert got.dtype == ds, f"{be} {k} dtype {got.dtype} != sigmas dtype {ds}"
                _close(
                    got,
                    v,
                    max(
                        rtol,
                        RTOL[dc] if k == "rgb" else 0,
                        RTOL[dt0] if k == "depth" else 0,
                        RTOL[dt1] if k == "depth" else 0,
                    ),
                    what=f"{be} {k}",
                )
            if grads_too and any(t.numel() for t in x):
                loss = sum(
                    (getattr(out, k).double() * w).sum()
                    for k, w in (("rgb", 0.7), ("depth", -0.3), ("opacity", 1.1), ("weights", 0.2))
                )
                results[be] = torch.autograd.grad(loss, x, allow_unused=True)
    if results:
        x64 = [_pack(t, layout).detach().requires_grad_() for t in rounded]
        out = rk.volume_render(
            x64[0], x64[1], x64[2], x64[3], background=background, early_stop_eps=eps, backend="torch", **kw
        )
        loss = sum(
            (getattr(out, k) * w).sum() for k, w in (("rgb", 0.7), ("depth", -0.3), ("opacity", 1.1), ("weights", 0.2))
        )
        ref_g = torch.autograd.grad(loss, x64, allow_unused=True)
        for be, gs in results.items():
            for name, a, e in zip(("sigmas", "colors", "t_starts", "t_ends"), gs, ref_g):
                a = torch.zeros_like(e) if a is None else a
                _close(a, e, 2e-3, what=f"{be} d{name}")  # relative to the largest gradient entry


@FUZZ
@given(
    data=rays(allow_inf_end=False),
    layout=st.sampled_from(["padded", "offsets", "ray_indices"]),
    dtype=st.sampled_from(FLOATS),
    strided=st.booleans(),
    seed=st.integers(0, 2**16),
    wscale=st.sampled_from([0.0, 1e-20, 1.0, 1e3]),
)
def test_distortion_loss_agrees(data, layout, dtype, strided, seed, wscale):
    """Every backend vs the O(S^2) definition in float64, values and gradients (float32)."""
    _count("distortion_loss")
    _, ts64, te64 = data
    R, S = ts64.shape
    w64 = torch.rand(R, S, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * wscale
    inputs = [w64.to(dtype), ts64.to(dtype), te64.to(dtype)]
    r = [x.double() for x in inputs]
    assume(bool((r[2] >= r[1]).all()) and bool(((r[1] + r[2])[:, 1:] >= (r[1] + r[2])[:, :-1]).all()))
    want = volrend_ref.distortion_bruteforce(r[0], 0.5 * (r[1] + r[2]), r[2] - r[1])
    kw = _layout_kwargs(layout, R, S)
    x64 = [_pack(t, layout).detach().requires_grad_() for t in r]
    ref_g = torch.autograd.grad(rk.distortion_loss(*x64, backend="torch", **kw).sum(), x64)
    with all_backends("volrend") as names:
        for be in names:
            x = [_view(_pack(t, layout), strided).detach().requires_grad_(dtype == torch.float32) for t in inputs]
            loss = rk.distortion_loss(*x, backend=be, **kw)
            assert loss.dtype == dtype
            _close(loss, want, max(RTOL[dtype], 1e-4), what=f"{be} loss")
            if dtype == torch.float32 and loss.numel():
                # float32 rounding scales with the terms summed (sum_j w_j |m_i - m_j|), not with the
                # result, which can be exactly 0 (one zero-length interval): d/dw ~ W |t|, d/dt ~ w W
                absmax = lambda t: t.abs().max().item() if t.numel() else 0.0  # noqa: E731
                w_tot, t_max = absmax(r[0].sum(-1)), max(absmax(r[1]), absmax(r[2]))
                scales = (w_tot * t_max, w_tot * absmax(r[0]), w_tot * absmax(r[0]))
                for n, a, e, sc in zip(
                    ("weights", "t_starts", "t_ends"), torch.autograd.grad(loss.sum(), x), ref_g, scales
                ):
                    _close(a, e, 1e-3, scale=max(sc, absmax(e)), what=f"{be} d{n}")


BAD_VOLREND = [
    "nan_sigma",
    "neg_sigma",
    "nan_t",
    "inf_minus_inf",
    "reversed",
    "nan_color",
    "inf_color",
    "colors_shape",
    "t_shape",
    "bg_shape",
    "eps_nan",
    "eps_neg",
    "ray_index_oob",
    "ray_index_neg",
    "n_rays_neg",
    "offsets_bad_end",
    "unsorted_distortion",
    "nan_weights",
    "meta",
]


@FUZZ
@given(bad=st.sampled_from(BAD_VOLREND), R=st.integers(1, 3), S=st.integers(1, 4), pos=st.integers(0, 11))
def test_volrend_bad_input_same_error(bad, R, S, pos):
    """One corrupted argument: every backend raises the same ValueError (never a wrong answer)."""
    _count("volrend_bad_input")
    i = pos % (R * S)
    sig, col = torch.rand(R, S), torch.rand(R, S, 3)
    ts = torch.arange(R * S, dtype=torch.float32).view(R, S) % S
    te = ts + 1
    kw, op = {}, "render"
    if bad == "nan_sigma":
        sig.view(-1)[i] = math.nan
    elif bad == "neg_sigma":
        sig.view(-1)[i] = -1e-3
    elif bad == "nan_t":
        ts.view(-1)[i] = math.nan
    elif bad == "inf_minus_inf":
        ts.view(-1)[i], te.view(-1)[i] = math.inf, math.inf
    elif bad == "reversed":
        ts.view(-1)[i] = te.view(-1)[i] + 1
    elif bad in ("nan_color", "inf_color"):
        col.view(-1)[pos % col.numel()] = math.nan if bad == "nan_color" else -math.inf
    elif bad == "colors_shape":
        col = torch.rand(R, S + 1, 3)
    elif bad == "t_shape":
        te = torch.rand(R + 1, S)
    elif bad == "bg_shape":
        kw["background"] = torch.rand(R + 2, 3)
    elif bad in ("eps_nan", "eps_neg"):
        kw["early_stop_eps"] = math.nan if bad == "eps_nan" else -1e-3
    elif bad.startswith("ray_index") or bad == "n_rays_neg":
        sig, col, ts, te = sig.view(-1), col.view(-1, 3), ts.view(-1), te.view(-1)
        ri = torch.arange(R).repeat_interleave(S)
        if bad == "ray_index_oob":
            ri[-1] = R
        elif bad == "ray_index_neg":
            ri[0] = -1
        kw.update(ray_indices=ri, n_rays=-1 if bad == "n_rays_neg" else R)
    elif bad == "offsets_bad_end":
        sig, col, ts, te = sig.view(-1), col.view(-1, 3), ts.view(-1), te.view(-1)
        kw["offsets"] = torch.arange(R + 1) * S + (torch.arange(R + 1) == R)
    elif bad == "unsorted_distortion":
        assume(S > 1)
        ts, te, op = ts.flip(-1), te.flip(-1), "distortion"
    elif bad == "nan_weights":
        sig.view(-1)[i], op = math.nan, "distortion"
    elif bad == "meta":
        sig = sig.to("meta")
    messages = set()
    with all_backends("volrend") as names:
        for be in names:
            if op == "render":
                fn = lambda: rk.volume_render(sig, col, ts, te, backend=be, **kw)  # noqa: E731
            else:
                fn = lambda: rk.distortion_loss(sig, ts, te, backend=be, **kw)  # noqa: E731
            messages.add(_raise_message(fn))
    assert None not in messages and len(messages) == 1, f"{bad}: {messages}"
    assert "`" in messages.pop()  # the message names the argument


# ------------------------------------------------------------------------------------------ hashgrid
COORDS = st.one_of(
    st.floats(0.0, 1.0, width=32), st.sampled_from([0.0, 1.0, 0.5, 1e-30, 1 - 2**-24, -0.5, 1.5, -math.inf, math.inf])
)


@FUZZ
@given(
    N=st.sampled_from([0, 1, 7]),
    D=st.integers(1, 3),
    L=st.integers(1, 3),
    F=st.sampled_from([1, 2, 4]),
    log2T=st.sampled_from([4, 8]),
    base=st.sampled_from([2, 5, 16]),
    interp=st.sampled_from(["linear", "smoothstep"]),
    table16=st.booleans(),
    points_dtype=st.sampled_from(FLOATS),
    strided=st.booleans(),
    with_scales=st.booleans(),
    coords=st.lists(COORDS, min_size=21, max_size=21),
    seed=st.integers(0, 2**16),
)
def test_hash_grid_agrees(N, D, L, F, log2T, base, interp, table16, points_dtype, strided, with_scales, coords, seed):
    """Features and table gradients of every backend vs the float64 torch reference (out_of_bounds
    clamp: +-inf and points outside the cube are clamped)."""
    _count("hash_grid_encode")
    enc = HashGridEncoding(
        D,
        n_levels=L,
        n_features_per_level=F,
        log2_hashmap_size=log2T,
        base_resolution=base,
        interpolation=interp,
        dtype=torch.float16 if table16 else torch.float32,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        enc.params.uniform_(-1, 1, generator=g)
    pts = torch.tensor(coords[: N * D], dtype=torch.float64).view(N, D).to(points_dtype)
    scales = (torch.rand(N, generator=g, dtype=torch.float64) * 0.2).float() if with_scales else None
    cfg = dict(
        n_levels=L,
        n_features_per_level=F,
        log2_hashmap_size=log2T,
        base_resolution=base,
        interpolation=interp,
        scales=scales,
    )
    seed_grad = torch.randn(N, L * F, generator=g, dtype=torch.float64)
    p64 = enc.params.detach().double().requires_grad_()
    ref = rk.hash_grid_encode(pts.double(), p64, backend="torch", **cfg)
    (ref_gp,) = torch.autograd.grad((ref * seed_grad).sum(), p64, allow_unused=True)
    with all_backends("hashgrid") as names:
        for be in names:
            params = enc.params.detach().clone().requires_grad_()
            out = rk.hash_grid_encode(_view(pts, strided), params, backend=be, **cfg)
            assert out.shape == (N, L * F) and out.dtype == torch.float32, be
            _close(out, ref, 1e-5, scale=1.0, what=f"{be} features")
            (gp,) = torch.autograd.grad((out * seed_grad.float()).sum(), params, allow_unused=True)
            gp = torch.zeros_like(params) if gp is None else gp
            _close(
                gp,
                torch.zeros_like(p64) if ref_gp is None else ref_gp,
                1e-3 if table16 else 1e-5,
                scale=1.0,
                what=f"{be} d params",
            )


# ------------------------------------------------------------------------------------------ sampling
WEIGHTS = st.one_of(st.floats(0.0, 10.0, width=32), st.sampled_from([0.0, 1e-30, 1e-6, 1e6]))


@FUZZ
@given(
    R=st.sampled_from([0, 1, 3]),
    S=st.sampled_from([1, 2, 5]),
    n=st.sampled_from([1, 2, 7]),
    widths=st.lists(st.sampled_from([0.0, 1e-4, 0.1, 1.0]), min_size=15, max_size=15),
    weights=st.lists(WEIGHTS, min_size=15, max_size=15),
    padding=st.sampled_from([0.0, 0.01]),
    bins_dtype=st.sampled_from(FLOATS),
    weights_dtype=st.sampled_from(FLOATS),
    packed=st.booleans(),
    strided=st.booleans(),
)
def test_sample_pdf_inverts_the_cdf(R, S, n, widths, weights, padding, bins_dtype, weights_dtype, packed, strided):
    """Midpoint sampling: every backend's samples are sorted, inside the ray's bins, and the float64
    CDF at each sample equals its target u_k = (k + 0.5) / n (the inverse CDF is continuous, so
    this holds up to the rounding of t: u in [CDF(t - d), CDF(t + d)], which also admits any t on
    a flat part of the CDF)."""
    _count("sample_pdf")
    steps = torch.tensor(widths[: R * S], dtype=torch.float64).view(R, S)
    bins64 = torch.cat([torch.zeros(R, 1, dtype=torch.float64), steps.cumsum(-1)], -1) + 1.0
    bins = bins64.to(bins_dtype)
    w = torch.tensor(weights[: R * S], dtype=torch.float64).view(R, S).to(weights_dtype)
    assume(bool((bins.double()[:, 1:] >= bins.double()[:, :-1]).all()) and bool(w.isfinite().all()))
    cdf = sampling_ref.step_cdf(bins.double(), w.double(), padding)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    kw = {}
    if packed:
        kw["offsets"] = torch.arange(R + 1) * S
        bins_in, w_in = bins.reshape(-1), w.reshape(-1)
        bins_in = torch.cat([torch.cat([bins[r, :-1], bins[r, -1:]]) for r in range(R)]) if R else bins.reshape(-1)
    else:
        bins_in, w_in = bins, w
    with all_backends("sampling") as names:
        for be in names:
            out = rk.sample_pdf(
                _view(bins_in, strided),
                _view(w_in, strided),
                n,
                mode="midpoint",
                histogram_padding=padding,
                backend=be,
                **kw,
            )
            assert out.shape == (R, n) and out.dtype == bins_dtype, be
            t = out.double()
            assert bool((t[:, 1:] >= t[:, :-1]).all()), f"{be}: unsorted samples"
            assert bool(((t >= bins.double()[:, :1]) & (t <= bins.double()[:, -1:])).all()), f"{be}: outside bins"
            # a rounding of t by delta (float32 compute, output dtype) moves CDF(t) within [CDF(t-d), CDF(t+d)]
            delta = 4 * max(RTOL[bins_dtype], 6e-8) * bins.double().abs().amax(-1, keepdim=True).clamp(min=1.0)
            lo = sampling_ref.eval_step_cdf(bins.double(), cdf, t - delta)
            hi = sampling_ref.eval_step_cdf(bins.double(), cdf, t + delta)
            ok = (lo - 1e-6 <= u) & (u <= hi + 1e-6)
            assert bool(ok.all()), f"{be}: u={u.tolist()} outside [CDF(t-d), CDF(t+d)] for t={t.tolist()}"


@FUZZ
@given(
    bad=st.sampled_from(
        [
            "inf_weight",
            "nan_weight",
            "neg_weight",
            "nan_bins",
            "inf_bins",
            "unsorted_bins",
            "weights_shape",
            "n_zero",
            "meta",
        ]
    ),
    R=st.integers(1, 3),
    S=st.integers(1, 4),
    pos=st.integers(0, 11),
)
def test_sample_pdf_bad_input_same_error(bad, R, S, pos):
    _count("sample_pdf_bad_input")
    bins = torch.linspace(0, 1, S + 1).expand(R, S + 1).clone()
    w = torch.rand(R, S)
    n = 4
    if bad in ("inf_weight", "nan_weight", "neg_weight"):
        w.view(-1)[pos % w.numel()] = {"inf_weight": math.inf, "nan_weight": math.nan, "neg_weight": -1.0}[bad]
    elif bad in ("nan_bins", "inf_bins"):
        bins.view(-1)[pos % bins.numel()] = math.nan if bad == "nan_bins" else math.inf
    elif bad == "unsorted_bins":
        bins = bins.flip(-1)
    elif bad == "weights_shape":
        w = torch.rand(R, S + 1)
    elif bad == "n_zero":
        n = 0
    elif bad == "meta":
        w = w.to("meta")
    with all_backends("sampling") as names:
        messages = {_raise_message(lambda: rk.sample_pdf(bins, w, n, backend=be)) for be in names}  # noqa: B023
    assert None not in messages and len(messages) == 1, f"{bad}: {messages}"


def test_fuzz_profile_is_bounded():
    """The CI budget: a bounded example count and no per-example deadline."""
    assert FUZZ.max_examples == int(os.environ.get("RFK_FUZZ_EXAMPLES", "25")) and FUZZ.deadline is None
    assert DEVICE.type in ("cpu", "cuda")


def _blurred_loss_conditioning(fb, w, pb, wp, blur, eps=float(torch.finfo(torch.float32).eps)):
    """Absolute errors a float32 evaluation of the blurred loss can have on exact inputs: loss ``[R]``,
    d loss / d wp ``[R, P]``.

    The blurred masses ``Wb_k`` are differences of integrated CDFs ``G(y + r) - G(y - r)`` over ``2r``,
    whose values reach ``sum|w| * max|t|``: float32 rounding gives ``|dWb| <= d = c * eps32 * sum|w|
    * (1 + max|t| / 2r)``. The loss ``W^2 / (wp + eps)`` (``W = relu(Wb - wp)``) amplifies that by
    ``(2 W + d) / (wp + eps)``, its gradient ``-(W^2 + 2 W (wp + eps)) / (wp + eps)^2`` by
    ``(2 W + d + 2 (wp + eps)) / (wp + eps)^2`` (a proposal bin with wp ~ 0 under fine mass ~ 1e6
    has no float32-meaningful loss)."""
    t_max = torch.maximum(fb.abs().amax(-1), pb.abs().amax(-1))
    d = (16 * eps * w.abs().sum(-1) * (1 + t_max / (2 * blur)))[:, None]
    excess = torch.relu(sampling_ref.blurred_resample(pb, fb, w, torch.full_like(t_max, blur)) - wp)
    den = wp + eps
    return ((2 * excess + d) * d / den).sum(-1), (2 * excess + d + 2 * den) * d / den.square()


@FUZZ
@given(
    R=st.sampled_from([0, 1, 3]),
    S=st.sampled_from([1, 4]),
    P=st.sampled_from([1, 3]),
    fw=st.lists(WEIGHTS, min_size=12, max_size=12),
    pw=st.lists(WEIGHTS, min_size=9, max_size=9),
    blur=st.sampled_from([None, 0.03]),
    dtype=st.sampled_from(FLOATS),
    seed=st.integers(0, 2**16),
)
def test_interlevel_loss_agrees(R, S, P, fw, pw, blur, dtype, seed):
    """Every backend vs the float64 torch reference, loss and d/d prop_weights (float32)."""
    _count("interlevel_loss")
    g = torch.Generator().manual_seed(seed)
    edges = lambda k: torch.sort(torch.rand(R, k + 1, generator=g, dtype=torch.float64), -1).values  # noqa: E731
    fb, pb = edges(S), edges(P)
    w = torch.tensor(fw[: R * S], dtype=torch.float64).view(R, S).to(dtype)
    wp = torch.tensor(pw[: R * P], dtype=torch.float64).view(R, P).to(dtype)
    assume(bool(w.isfinite().all()) and bool(wp.isfinite().all()))
    inputs = [fb.to(dtype), w, pb.to(dtype)]
    assume(all(bool((x[:, 1:] >= x[:, :-1]).all()) for x in (inputs[0], inputs[2])))
    wp64 = wp.detach().double().clone().requires_grad_()  # .double() of a float64 tensor is itself
    ref = rk.interlevel_loss(
        *[x.double() for x in inputs[:2]], inputs[2].double(), wp64, blur_halfwidth=blur, backend="torch"
    )
    (ref_g,) = torch.autograd.grad(ref.sum(), wp64) if R else (torch.zeros_like(wp64),)
    loss_atol, grad_atol = (
        _blurred_loss_conditioning(fb, w.double(), pb, wp.double(), blur) if R and blur else (None, None)
    )
    with all_backends("sampling") as names:
        for be in names:
            x = wp.detach().requires_grad_(dtype == torch.float32)
            loss = rk.interlevel_loss(inputs[0], inputs[1], inputs[2], x, blur_halfwidth=blur, backend=be)
            assert loss.dtype == dtype, be
            # the overlap masses W are differences of float32 CDF values: absolute error ~ eps * sum(wp)
            _close(
                loss,
                ref,
                max(RTOL[dtype], 1e-4),
                scale=2.5e-3 * float(wp.double().sum(-1).max()) if R else 0.0,
                what=f"{be} loss",
                atol=loss_atol,
            )
            if dtype == torch.float32 and R:
                (gw,) = torch.autograd.grad(loss.sum(), x)
                _close(
                    gw,
                    ref_g,
                    1e-3,
                    scale=max(float(ref_g.abs().max()), 1e-6),
                    what=f"{be} d prop_weights",
                    atol=grad_atol,
                )


# ------------------------------------------------------------------------------------------- gather
@FUZZ
@given(
    B=st.sampled_from([1, 2]),
    N=st.sampled_from([0, 1, 9]),
    V=st.sampled_from([1, 3]),
    C=st.sampled_from([1, 4]),
    HW=st.sampled_from([(1, 1), (3, 5), (8, 8)]),
    reduce=st.sampled_from(["none", "mean", "mean_var", "max"]),
    fdtype=st.sampled_from(FLOATS),
    pdtype=st.sampled_from(FLOATS),
    strided=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gather_features_agrees(B, N, V, C, HW, reduce, fdtype, pdtype, strided, seed):
    """Every backend vs the float64 torch reference on the same rounded inputs (points in front of,
    beside and behind the cameras); dtypes of the outputs as documented."""
    _count("gather_features")
    torch.manual_seed(seed)
    p, f, K, E = random_scene(B, N, V, C, HW[0], HW[1], (16, 16), torch.device("cpu"), dtype=torch.float64, box=3.0)
    p, f = p.to(pdtype), f.to(fdtype)
    ref = rk.gather_features(p.double(), f.double(), K, E, image_size=(16, 16), reduce=reduce, backend="torch")
    with all_backends("gather") as names:
        for be in names:
            out = rk.gather_features(
                _view(p, strided), f, K.float(), E.float(), image_size=(16, 16), reduce=reduce, backend=be
            )
            assert out.features.dtype == fdtype, be
            assert torch.equal(out.mask, ref.mask), f"{be}: visibility mask differs"
            _close(out.features, ref.features, max(RTOL[fdtype], 2e-4), scale=1.0, what=f"{be} features")
