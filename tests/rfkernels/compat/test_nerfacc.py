"""rfkernels.compat.nerfacc against the real nerfacc 0.5.3 on this device (its padded functions,
scans and accumulate_along_rays run on the CPU; its packed paths and importance sampling need CUDA,
so those are tested against the padded results and against torch references of nerfacc's
documented / kernel semantics). Values and gradients, fresh random inputs, every backend."""

import pytest
import torch

import rfkernels
from rfkernels.compat import nerfacc as ours
from tests.helpers.backends import DEVICE, backend_unavailable_reason
from tests.helpers.numerics import assert_close
from tests.helpers.peers import real_nerfacc as _real_nerfacc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nf():
    return _real_nerfacc()[0]


@pytest.fixture(params=["torch", "triton", "cuda"])
def backend(request):
    if request.param != "torch":
        reason = backend_unavailable_reason(request.param)
        if reason:
            pytest.skip(f"{request.param} unavailable: {reason}")
    old = rfkernels.get_backend()
    rfkernels.set_backend(request.param)
    yield request.param
    rfkernels.set_backend(old)


def _rays(R=5, S=7, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    edges = torch.cumsum(torch.rand(R, S + 1, generator=g) * 0.5 + 0.01, -1)
    sig = torch.rand(R, S, generator=g) * 3
    sig[:, 2] = 0.0  # exact zeros
    rgb = torch.rand(R, S, C, generator=g)
    alphas = torch.rand(R, S, generator=g) * 0.9
    alphas[0, 3] = 1.0  # an opaque sample
    counts = torch.randint(0, S + 1, (R,), generator=g)
    counts[0] = S
    mask = torch.arange(S)[None] < counts[:, None]
    to = lambda t: t.to(DEVICE)  # noqa: E731
    return to(edges[:, :-1].contiguous()), to(edges[:, 1:].contiguous()), to(sig), to(rgb), to(alphas), to(mask)


def _leaf(*ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


def _grads(out, inputs, seed=1):
    g = torch.Generator().manual_seed(seed)
    if not isinstance(out, (tuple, list)):
        out = (out,)
    loss = sum((o * torch.randn(o.shape, generator=g).to(o.device)).sum() for o in out)
    return torch.autograd.grad(loss, inputs, allow_unused=True)


# ----------------------------------------------------------------------------- padded vs nerfacc
def test_weight_from_density_padded(nf, backend, seed):
    t0, t1, sig, *_ = _rays(seed=seed)
    a = _leaf(t0, t1, sig)
    b = _leaf(t0, t1, sig)
    ours_out = ours.render_weight_from_density(*a)
    ref_out = nf.render_weight_from_density(*b)
    for o, r, n in zip(ours_out, ref_out, ("weights", "trans", "alphas")):
        assert_close(o, r, atol=1e-6, name=n)
    for go, gr, n in zip(_grads(ours_out, a), _grads(ref_out, b), ("d t_starts", "d t_ends", "d sigmas")):
        assert_close(go, gr, atol=1e-5, name=n)


def test_transmittance_and_visibility_from_density(nf, backend, seed):
    t0, t1, sig, *_ = _rays(seed=seed)
    prefix = torch.rand_like(sig)
    a, b = _leaf(sig), _leaf(sig)
    o = ours.render_transmittance_from_density(t0, t1, a[0], prefix_trans=prefix)
    # nerfacc applies prefix_trans in place on exp's output, which breaks its own backward:
    # multiply outside for the reference
    r = nf.render_transmittance_from_density(t0, t1, b[0])
    r = (r[0] * prefix, r[1])
    assert_close(o[0], r[0], atol=1e-6, name="trans")
    assert_close(o[1], r[1], atol=1e-6, name="alphas")
    assert_close(_grads(o, a)[0], _grads(r, b)[0], atol=1e-5, name="d sigmas")
    for eps, thre in ((1e-4, 0.0), (0.3, 0.2)):
        vo = ours.render_visibility_from_density(t0, t1, sig, early_stop_eps=eps, alpha_thre=thre)
        vr = nf.render_visibility_from_density(t0, t1, sig, early_stop_eps=eps, alpha_thre=thre)
        assert vo.dtype == torch.bool and torch.equal(vo, vr)


def test_weight_from_alpha_padded(nf, seed):
    *_, alphas, _ = _rays(seed=seed)
    prefix = torch.rand_like(alphas)
    for kw in ({}, {"prefix_trans": prefix}):
        a, b = _leaf(alphas), _leaf(alphas)
        o = ours.render_weight_from_alpha(a[0], **kw)
        r = nf.render_weight_from_alpha(b[0])  # nerfacc's prefix_trans is in place (no backward)
        if kw:
            r = (r[1] * prefix * b[0], r[1] * prefix)
        assert_close(o[0], r[0], atol=1e-6, name="weights")
        assert_close(o[1], r[1], atol=1e-6, name="trans")
        assert_close(_grads(o, a)[0], _grads(r, b)[0], atol=1e-5, name="d alphas")
    assert_close(ours.render_transmittance_from_alpha(alphas), nf.render_transmittance_from_alpha(alphas))
    for eps, thre in ((1e-4, 0.0), (0.3, 0.2)):
        assert torch.equal(
            ours.render_visibility_from_alpha(alphas, early_stop_eps=eps, alpha_thre=thre),
            nf.render_visibility_from_alpha(alphas, early_stop_eps=eps, alpha_thre=thre),
        )


@pytest.mark.parametrize("fn", ["inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"])
def test_scans_padded(nf, fn, seed):
    x = torch.randn(4, 6, 5, device=DEVICE)
    x[0, 0, 2] = 0.0  # a zero inside a product
    a, b = _leaf(x), _leaf(x)
    o, r = getattr(ours, fn)(a[0]), getattr(nf, fn)(b[0])
    assert_close(o, r, atol=1e-6, name=fn)
    assert_close(_grads(o, a)[0], _grads(r, b)[0], atol=1e-5, name=f"d {fn}")


def test_accumulate_along_rays(nf, seed):
    t0, t1, sig, rgb, _, mask = _rays(seed=seed)
    w = torch.rand_like(sig)
    for vals in (rgb, None):
        a, b = _leaf(w, rgb), _leaf(w, rgb)
        o = ours.accumulate_along_rays(a[0], a[1] if vals is not None else None)
        r = nf.accumulate_along_rays(b[0], b[1] if vals is not None else None)
        assert_close(o, r, atol=1e-6, name="padded")
        for go, gr in zip(_grads(o, a), _grads(r, b)):
            if gr is not None:
                assert_close(go, gr, atol=1e-5, name="d padded")
    # flattened with ray_indices (index_add) runs on the CPU in nerfacc too
    ray_ids = torch.nonzero(mask)[:, 0]
    o = ours.accumulate_along_rays(w[mask], rgb[mask], ray_ids, n_rays=w.shape[0])
    r = nf.accumulate_along_rays(w[mask], rgb[mask], ray_ids, n_rays=w.shape[0])
    assert_close(o, r, atol=1e-6, name="packed")


@pytest.mark.parametrize("mode", ["sigma", "alpha"])
def test_rendering_padded(nf, backend, mode, seed):
    t0, t1, sig, rgb, alphas, _ = _rays(seed=seed)
    field = sig if mode == "sigma" else alphas
    bkgd = torch.rand(3, device=DEVICE)

    def run(lib, f, c):
        fn = lambda s, e, ri: (c, f)  # noqa: E731
        kw = {"rgb_sigma_fn": fn} if mode == "sigma" else {"rgb_alpha_fn": fn}
        return lib.rendering(t0, t1, render_bkgd=bkgd, **kw)

    a, b = _leaf(field, rgb), _leaf(field, rgb)
    o, r = run(ours, *a), run(nf, *b)
    for x, y, n in zip(o[:3], r[:3], ("colors", "opacities", "depths")):
        assert x.shape == y.shape, n
        assert_close(x, y, atol=1e-5, name=n)
    assert set(o[3]) == set(r[3])
    for k in r[3]:
        assert_close(o[3][k], r[3][k], atol=1e-5, name=k)
    for go, gr, n in zip(_grads(o[:3], a), _grads(r[:3], b), ("d field", "d rgb")):
        assert_close(go, gr, atol=1e-4, name=n)


# ------------------------------------------------------------------------------ packed vs padded
def _packed(mask, *ts):
    ray_ids = torch.nonzero(mask)[:, 0]
    return ray_ids, [t[mask] for t in ts]


def test_packed_matches_padded(nf, backend, seed):
    """Scans along a ray are causal: the packed result equals the padded one on the kept samples."""
    t0, t1, sig, rgb, alphas, mask = _rays(seed=seed)
    R = sig.shape[0]
    ray_ids, (p0, p1, ps, pa) = _packed(mask, t0, t1, sig, alphas)
    info = ours.pack_info(ray_ids, R)
    counts = mask.sum(1)
    assert torch.equal(info[:, 1], counts) and torch.equal(info[:, 0], torch.cumsum(counts, 0) - counts)
    ref = nf.render_weight_from_density(t0, t1, sig)
    for kw in ({"packed_info": info}, {"ray_indices": ray_ids, "n_rays": R}):
        out = ours.render_weight_from_density(p0, p1, ps, **kw)
        for o, r, n in zip(out, ref, ("weights", "trans", "alphas")):
            assert_close(o, r[mask], atol=1e-6, name=f"packed {n}")
        wa, ta = ours.render_weight_from_alpha(pa, **kw)
        wr, tr = nf.render_weight_from_alpha(alphas)
        assert_close(wa, wr[mask], atol=1e-6, name="packed alpha weights")
        assert torch.equal(
            ours.render_visibility_from_density(p0, p1, ps, **kw), nf.render_visibility_from_density(t0, t1, sig)[mask]
        )
    for fn in ("inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"):
        x = torch.randn_like(sig)
        a = _leaf(x[mask])
        o = getattr(ours, fn)(a[0], info)
        assert_close(o, getattr(nf, fn)(x)[mask], atol=1e-5, name=f"packed {fn}")
        # gradient: the padded op's gradient restricted to the kept samples, with zero upstream
        # gradient on the padding (causality keeps kept outputs independent of padded inputs)
        xb = _leaf(x)
        gout = torch.randn_like(o)
        g_ref = torch.zeros_like(x)
        g_ref[mask] = gout
        (go,) = torch.autograd.grad(o, a, gout)
        (gr,) = torch.autograd.grad(getattr(nf, fn)(xb[0]), xb, g_ref)
        assert_close(go, gr[mask], atol=1e-5, name=f"d packed {fn}")


@pytest.mark.parametrize("mode", ["sigma", "alpha"])
def test_rendering_packed_matches_padded(nf, backend, mode, seed):
    t0, t1, sig, rgb, alphas, mask = _rays(seed=seed)
    R = sig.shape[0]
    sig = (sig if mode == "sigma" else alphas) * mask  # padded samples are empty: padded == packed render
    ray_ids, (p0, p1, ps, pc) = _packed(mask, t0, t1, sig, rgb)
    a, b = _leaf(ps, pc), _leaf(sig, rgb)
    key = "rgb_sigma_fn" if mode == "sigma" else "rgb_alpha_fn"
    o = ours.rendering(p0, p1, ray_ids, R, **{key: lambda s, e, ri: (a[1], a[0])})
    r = nf.rendering(t0, t1, **{key: lambda s, e, ri: (b[1], b[0])})
    for x, y, n in zip(o[:3], r[:3], ("colors", "opacities", "depths")):
        assert_close(x, y, atol=1e-5, name=n)
    assert_close(o[3]["trans"], r[3]["trans"][mask], atol=1e-6, name="trans")
    g = torch.randn(R, 3, device=DEVICE)
    go = torch.autograd.grad(o[0], a, g)
    gr = torch.autograd.grad(r[0], b, g)
    assert_close(go[0], gr[0][mask], atol=1e-4, name="d sigmas")
    assert_close(go[1], gr[1][mask], atol=1e-5, name="d rgb")


def test_rendering_empty_and_errors():
    e = torch.empty(0, device=DEVICE)
    colors, opac, depth, _ = ours.rendering(e, e, e.long(), 3, rgb_sigma_fn=lambda *a: None)
    assert colors.shape == (3, 3) and opac.shape == (3, 1) and float(colors.abs().sum()) == 0
    with pytest.raises(ValueError, match="rgb_sigma_fn"):
        ours.rendering(e, e)
    x = torch.rand(6)
    with pytest.raises(ValueError, match="packed_info"):
        ours.inclusive_sum(x, torch.tensor([[0, 2], [3, 3]]))  # not contiguous chunks


# ------------------------------------------------------------------------- importance sampling
def _nerfacc_sampling_reference(bins, cdfs, n, bias):
    """Vectorized torch transcription of nerfacc's importance_sampling kernel (pdf.cu) for batched
    inputs: u = cdf_0 + (k + bias) (cdf_last - cdf_0) / n, upper_bound over edges [0, E-1), linear
    interpolation; interval edges at midpoints, outer half-widths mirrored and clamped."""
    E = bins.shape[1]
    k = torch.arange(n, dtype=bins.dtype, device=bins.device)
    u = cdfs[:, :1] + (k[None] + bias[:, None]) * (cdfs[:, -1:] - cdfs[:, :1]) / n
    p = torch.searchsorted(cdfs[:, :-1].contiguous(), u.contiguous(), right=True)
    p0, p1 = (p - 1).clamp(0, E - 1), p.clamp(0, E - 1)
    u0, u1 = cdfs.gather(1, p0), cdfs.gather(1, p1)
    b0, b1 = bins.gather(1, p0), bins.gather(1, p1)
    flat = (u1 - u0) < 1e-10
    t = torch.where(flat, 0.5 * (b0 + b1), (u - u0) * (b1 - b0) / torch.where(flat, 1.0, u1 - u0) + b0)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    first = torch.maximum(t[:, :1] - (mids[:, :1] - t[:, :1]), bins[:, :1])
    last = torch.minimum(t[:, -1:] + (t[:, -1:] - mids[:, -1:]), bins[:, -1:])
    return torch.cat([first, mids, last], 1), t


def _random_cdf(R, E, seed):
    g = torch.Generator().manual_seed(seed)
    bins = torch.cumsum(torch.rand(R, E, generator=g) + 0.05, -1)
    w = torch.rand(R, E - 1, generator=g)
    w[w < 0.2] = 0.0  # empty bins (flat CDF stretches)
    cdfs = torch.cat([torch.zeros(R, 1), torch.cumsum(w, -1)], -1) + torch.rand(R, 1, generator=g)
    return bins.to(DEVICE), cdfs.to(DEVICE)


def test_importance_sampling_documented_example():
    """nerfacc's docstring example (flattened input, int n -> batched output)."""
    iv = ours.RayIntervals(vals=torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0]), packed_info=torch.tensor([[0, 2], [2, 3]]))
    cdfs = torch.tensor([0.0, 0.5, 0.0, 0.5, 1.0])
    out_iv, out_s = ours.importance_sampling(iv, cdfs, 2)
    assert_close(out_iv.vals, torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 2.0]]), atol=1e-6)
    assert_close(out_s.vals, torch.tensor([[0.25, 0.75], [0.5, 1.5]]), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 9])
def test_importance_sampling_matches_kernel_semantics(backend, n, seed):
    bins, cdfs = _random_cdf(6, 8, seed)
    iv, s = ours.importance_sampling(ours.RayIntervals(vals=bins), cdfs, n)
    ref_iv, ref_s = _nerfacc_sampling_reference(bins, cdfs, n, torch.full((6,), 0.5, device=DEVICE))
    assert s.vals.shape == (6, n) and iv.vals.shape == (6, n + 1)
    assert_close(s.vals, ref_s, atol=1e-4, name="samples")
    if n > 1:  # nerfacc reads past the end for n == 1; we return the ray's whole range
        assert_close(iv.vals, ref_iv, atol=1e-4, name="intervals")
    else:
        assert_close(iv.vals, torch.stack([bins[:, 0], bins[:, -1]], 1), name="single interval")


def test_importance_sampling_stratified_single_jitter(seed):
    """Stratified: one jitter per ray, so the CDF values of a ray's samples are equally spaced."""
    bins, cdfs = _random_cdf(5, 6, seed)
    _, s = ours.importance_sampling(ours.RayIntervals(vals=bins), cdfs, 7, stratified=True)

    # the jitter of each ray, recovered from its first sample, reproduces all of its samples
    def cdf_at(t):  # piecewise-linear CDF at t
        p = torch.searchsorted(bins.contiguous(), t.contiguous(), right=True).clamp(1, bins.shape[1] - 1)
        b0, b1, c0, c1 = bins.gather(1, p - 1), bins.gather(1, p), cdfs.gather(1, p - 1), cdfs.gather(1, p)
        return c0 + (t - b0) / (b1 - b0) * (c1 - c0)

    u = (cdf_at(s.vals) - cdfs[:, :1]) / (cdfs[:, -1:] - cdfs[:, :1]) * 7
    bias = u[:, 0]
    assert bool(((bias >= 0) & (bias <= 1)).all())
    assert_close(u - torch.arange(7.0, device=DEVICE), bias[:, None].expand(-1, 7), atol=1e-3, name="single jitter")
    assert not torch.allclose(bias, bias[0].expand_as(bias)), "jitter should differ between rays"


def test_importance_sampling_per_ray_counts(seed):
    """A tensor n_intervals_per_ray -> flattened outputs with packed_info, ray_indices and edge masks;
    each ray's samples equal the int-n sampling of that ray."""
    bins, cdfs = _random_cdf(5, 6, seed)
    n = torch.tensor([3, 0, 1, 5, 3], device=DEVICE)
    iv, s = ours.importance_sampling(ours.RayIntervals(vals=bins), cdfs, n)
    assert torch.equal(s.packed_info[:, 1], n) and torch.equal(iv.packed_info[:, 1], (n + 1) * (n > 0))
    assert torch.equal(s.ray_indices, torch.repeat_interleave(torch.arange(5, device=DEVICE), n))
    for r in range(5):
        k = int(n[r])
        if k == 0:
            continue
        one_iv, one_s = ours.importance_sampling(ours.RayIntervals(vals=bins[r : r + 1]), cdfs[r : r + 1], k)
        st, cnt = s.packed_info[r].tolist()
        assert_close(s.vals[st : st + cnt], one_s.vals[0], name=f"ray {r} samples")
        st, cnt = iv.packed_info[r].tolist()
        assert_close(iv.vals[st : st + cnt], one_iv.vals[0], name=f"ray {r} edges")
        assert iv.is_left[st : st + cnt].tolist() == [True] * k + [False]
        assert iv.is_right[st : st + cnt].tolist() == [False] + [True] * k
    # flattened input intervals give the same samples as batched ones
    flat = ours.RayIntervals(
        vals=bins.reshape(-1), packed_info=torch.stack([torch.arange(5) * 6, torch.full((5,), 6)], 1).to(DEVICE)
    )
    _, s2 = ours.importance_sampling(flat, cdfs.reshape(-1), n)
    assert_close(s2.vals, s.vals, name="flattened input")


def test_searchsorted(seed):
    """nerfacc's docstring example (flattened, global ids) and batched vs torch's searchsorted."""
    seq = ours.RayIntervals(vals=torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0]), packed_info=torch.tensor([[0, 2], [2, 3]]))
    vals = ours.RayIntervals(vals=torch.tensor([0.5, 1.5, 2.5]), packed_info=torch.tensor([[0, 1], [1, 2]]))
    left, right = ours.searchsorted(seq, vals)
    assert left.tolist() == [0, 3, 3] and right.tolist() == [1, 4, 4]
    key = torch.sort(torch.rand(4, 6, device=DEVICE), -1).values
    q = torch.rand(4, 9, device=DEVICE) * 1.4 - 0.2
    left, right = ours.searchsorted(ours.RayIntervals(vals=key), ours.RaySamples(vals=q))
    inside = (q >= key[:, :1]) & (q < key[:, -1:])
    assert bool((key.gather(1, left)[inside] <= q[inside]).all()) and bool(
        (q[inside] < key.gather(1, right)[inside]).all()
    )
    assert bool((right - left <= 1).all()) and int(left.min()) >= 0 and int(right.max()) <= 5


# ------------------------------------------------------------------------------ proposal network
def _pdf_loss_reference(t, cdf_q, tk, cdf_k, eps=1e-7):
    """nerfacc's ``_pdf_loss`` for batched intervals, in torch (its searchsorted is a CUDA kernel)."""
    E = tk.shape[1]
    p = torch.searchsorted(tk[:, :-1].contiguous(), t.contiguous(), right=True)
    left, right = (p - 1).clamp(0, E - 1)[:, :-1], p.clamp(0, E - 1)[:, 1:]
    w = cdf_q[:, 1:] - cdf_q[:, :-1]
    w_outer = cdf_k.gather(1, right) - cdf_k.gather(1, left)
    return torch.clip(w - w_outer, min=0) ** 2 / (w + eps)


class _Prop(torch.nn.Module):
    """A tiny density field along t (differentiable, deterministic)."""

    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c = torch.nn.Parameter(torch.rand(4, generator=g) * 4)
        self.f = torch.nn.Parameter(torch.rand(4, generator=g) * 3)

    def forward(self, t0, t1):
        m = 0.5 * (t0 + t1)
        return torch.nn.functional.softplus((self.c[:, None, None] * torch.sin(self.f[:, None, None] * m)).sum(0))


def test_prop_net_estimator_sampling_and_loss(nf, backend, seed):
    torch.manual_seed(seed)
    props = [_Prop(seed), _Prop(seed + 1)]
    R = 6
    est = ours.PropNetEstimator(torch.optim.SGD([p for m in props for p in m.parameters()], lr=0.1))
    t0, t1 = est.sampling(
        props, [16, 12], 10, n_rays=R, near_plane=0.5, far_plane=4.0, sampling_type="lindisp", requires_grad=True
    )
    assert t0.shape == t1.shape == (R, 10) and torch.equal(t0[:, 1:], t1[:, :-1])
    assert bool((t0[:, 0] >= 0.5 - 1e-5).all()) and bool((t1[:, -1] <= 4.0 + 1e-5).all())
    assert len(est.prop_cache) == 3
    # replay nerfacc's algorithm with the kernel-semantics reference sampler
    cdfs = torch.tensor([[0.0, 1.0]], device=DEVICE).expand(R, 2)
    s_vals = torch.tensor([[0.0, 1.0]], device=DEVICE).expand(R, 2)
    half = torch.full((R,), 0.5, device=DEVICE)
    nf_prop = nf.estimators.prop_net
    ref_cache = []
    for fn, n in zip(props, [16, 12]):
        s_vals, _ = _nerfacc_sampling_reference(s_vals, cdfs.detach(), n, half)  # sampling: no grad
        tv = nf_prop._transform_stot("lindisp", s_vals, 0.5, 4.0)
        trans, _ = nf.render_transmittance_from_density(tv[:, :-1], tv[:, 1:], fn(tv[:, :-1], tv[:, 1:]))
        cdfs = 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], -1)
        ref_cache.append((s_vals, cdfs))
    s_vals, _ = _nerfacc_sampling_reference(s_vals, cdfs.detach(), 10, half)
    tv = nf_prop._transform_stot("lindisp", s_vals, 0.5, 4.0)
    assert_close(t0, tv[:, :-1], atol=1e-4, name="t_starts")
    assert_close(t1, tv[:, 1:], atol=1e-4, name="t_ends")
    # the loss and its gradient w.r.t. the proposal parameters
    trans = torch.rand(R, 10, device=DEVICE).sort(-1, descending=True).values
    loss = est.compute_loss(trans, loss_scaler=2.0)
    cdf_q = 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], -1)
    ref = sum(_pdf_loss_reference(s_vals, cdf_q, sv, c).mean() for sv, c in ref_cache) * 2.0
    assert_close(loss, ref, atol=1e-6, rtol=1e-4, name="loss")
    params = [p for m in props for p in m.parameters()]
    assert_close(
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]),
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(ref, params)]),
        atol=1e-6,
        rtol=1e-3,
        name="d loss",
    )
    assert est.prop_cache == []
    # nerfacc's own torch implementation of the outer loss agrees too (eps differs by 2e-8)
    sv, c = ref_cache[0]
    w = cdf_q[:, 1:] - cdf_q[:, :-1]
    wk = c[:, 1:] - c[:, :-1]
    assert_close(
        _pdf_loss_reference(s_vals, cdf_q, sv, c), nf_prop._lossfun_outer(s_vals, w, sv, wk), atol=1e-5, rtol=1e-3
    )


def test_prop_net_update_every_n_steps(seed):
    prop = _Prop(seed)
    opt = torch.optim.SGD(prop.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    est = ours.PropNetEstimator(opt, sched)
    before = prop.c.detach().clone()
    est.sampling(
        [prop],
        [8],
        6,
        n_rays=4,
        near_plane=0.1,
        far_plane=2.0,
        sampling_type="uniform",
        stratified=True,
        requires_grad=True,
    )
    trans = torch.tensor([1.0, 1.0, 1.0, 0.01, 0.01, 0.01], device=DEVICE).expand(4, 6).contiguous()  # a wall
    value = est.update_every_n_steps(trans, requires_grad=True)
    assert isinstance(value, float) and value > 0 and not torch.equal(prop.c, before)
    assert sched.get_last_lr()[0] == pytest.approx(0.25)
    assert est.update_every_n_steps(trans, requires_grad=False) == 0.0
    fn = ours.estimators.get_proposal_requires_grad_fn(target=2.0, num_steps=4)
    assert [fn(s) for s in range(8)] == [nf_schedule(s) for s in range(8)]


def nf_schedule(step, _state={}):
    """nerfacc's documented schedule, replayed independently (target 2, 4 steps)."""
    since = _state.setdefault("since", 0)
    req = since > min(step / 4, 1.0) * 2.0
    _state["since"] = (0 if req else since) + 1
    return req


# ------------------------------------------------------------------------------------ distortion
def test_distortion_packed_and_padded(backend, seed):
    t0, t1, sig, _, _, mask = _rays(seed=seed)
    w = torch.rand_like(sig) * mask
    m, d = 0.5 * (t0 + t1), t1 - t0
    brute = (w[:, :, None] * w[:, None, :] * (m[:, :, None] - m[:, None, :]).abs()).sum((1, 2)) + (w * w * d).sum(1) / 3
    assert_close(ours.distortion(w, t0, t1), brute, atol=1e-5, name="padded")
    ray_ids, (pw, p0, p1) = _packed(mask, w, t0, t1)
    assert_close(ours.distortion(pw, p0, p1, ray_indices=ray_ids, n_rays=w.shape[0]), brute, atol=1e-5, name="packed")
    info = ours.pack_info(ray_ids, w.shape[0])
    assert_close(ours.distortion(pw, p0, p1, packed_info=info), brute, atol=1e-5, name="packed_info")
