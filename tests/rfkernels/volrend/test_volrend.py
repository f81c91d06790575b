"""Volume rendering: fused backends vs the torch reference (values + gradients), float64
reference, gradcheck, O(S) distortion vs the O(S^2) definition, edge cases, bad input."""

import pytest
import torch

import rfkernels
from rfkernels import _packing
from rfkernels.volrend import ops as volrend_ops
from rfkernels.volrend import reference
from tests.helpers.numerics import assert_close, assert_close_scaled

FAMILY = "volrend"  # fused_backend (conftest) also runs csrc/volrend/kernels.cu on the host


def random_rays(R, S, C, device, dtype=torch.float32):
    """Padded rays with sorted, non-overlapping (sometimes zero-length) intervals."""
    edges = torch.sort(torch.rand(R, S + 1, device=device, dtype=dtype) * 4.0 + 0.5, dim=-1).values
    edges[:, 1::5] = edges[:, 0::5][:, : edges[:, 1::5].shape[1]]  # some zero-length intervals
    edges = torch.sort(edges, dim=-1).values
    sigmas = torch.rand(R, S, device=device, dtype=dtype) * 5.0
    sigmas[:, ::7] *= 100.0  # a few very dense samples
    colors = torch.rand(R, S, C, device=device, dtype=dtype)
    return sigmas, colors, edges[:, :-1].contiguous(), edges[:, 1:].contiguous()


def random_packed(counts, C, device):
    counts = torch.tensor(counts, device=device)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    N = int(offsets[-1])
    t = torch.rand(N, device=device)
    # sorted per ray: cumulative positive steps restarted per ray
    steps = torch.rand(N, device=device) * 0.1
    ray = _packing.offsets_to_ray_indices(offsets)
    cs = torch.cumsum(steps, 0)
    base = torch.cat([torch.zeros(1, device=device), cs])[offsets[:-1]][ray] if N else cs
    t_starts = cs - steps - base + 0.2
    t_ends = t_starts + steps * t.clamp(min=0.0)
    sigmas = torch.rand(N, device=device) * 20.0
    colors = torch.rand(N, C, device=device)
    return sigmas, colors, t_starts, t_ends, offsets


def _grads(outputs, inputs, seed_tensors):
    loss = sum((o * g).sum() for o, g in zip(outputs, seed_tensors))
    return torch.autograd.grad(loss, inputs, allow_unused=True)


@pytest.mark.parametrize("C", [1, 3, 16])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_volume_render_padded_matches_reference(fused_backend, device, seed, C, eps):
    R, S = 13, 70  # S > BLOCK_S: crosses a block boundary
    sigmas, colors, t0, t1 = random_rays(R, S, C, device)
    bg = torch.rand(C, device=device)
    inputs = [x.requires_grad_() for x in (sigmas, colors, t0, t1)]
    outs = {}
    for be in ("torch", fused_backend):
        out = rfkernels.volume_render(*inputs, background=bg, early_stop_eps=eps, backend=be)
        seeds = [
            torch.ones_like(o).mul(0.5).add(torch.linspace(-1, 1, o.numel(), device=device).view_as(o)) for o in out
        ]
        outs[be] = (out, _grads(out, inputs, seeds))
    (ref, ref_g), (fus, fus_g) = outs["torch"], outs[fused_backend]
    for name, a, b in zip(ref._fields, fus, ref):
        assert_close(a, b, name=name, atol=1e-5)
    for name, a, b in zip(["sigmas", "colors", "t_starts", "t_ends"], fus_g, ref_g):
        assert_close_scaled(a, b, name="grad_" + name)


@pytest.mark.parametrize("C", [1, 3])
def test_volume_render_packed_matches_padded_reference(fused_backend, device, seed, C):
    counts = [0, 1, 5, 64, 65, 130, 0, 2]  # empty rays, one sample, block boundaries
    sigmas, colors, t0, t1, offsets = random_packed(counts, C, device)
    inputs = [x.requires_grad_() for x in (sigmas, colors, t0, t1)]
    res = {}
    for be in ("torch", fused_backend):
        out = rfkernels.volume_render(*inputs, offsets=offsets, backend=be)
        g = [torch.randn_like(o, generator=torch.Generator(device=device).manual_seed(i)) for i, o in enumerate(out)]
        res[be] = (out, _grads(out, inputs, g))
    for name, a, b in zip(["rgb", "depth", "opacity", "weights"], res[fused_backend][0], res["torch"][0]):
        assert_close(a, b, name=name, atol=1e-5)
    for name, a, b in zip(["sigmas", "colors", "t_starts", "t_ends"], res[fused_backend][1], res["torch"][1]):
        assert_close_scaled(a, b, name="grad_" + name)
    out = res[fused_backend][0]
    assert out.opacity[0] == 0 and out.opacity[6] == 0 and out.rgb[0].abs().sum() == 0


def test_packed_ray_indices_equals_offsets(fused_backend, device, seed):
    sigmas, colors, t0, t1, offsets = random_packed([3, 0, 9], 3, device)
    ri = rfkernels.offsets_to_ray_indices(offsets)
    a = rfkernels.volume_render(sigmas, colors, t0, t1, offsets=offsets, backend=fused_backend)
    b = rfkernels.volume_render(sigmas, colors, t0, t1, ray_indices=ri, n_rays=3, backend=fused_backend)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_render_weights_and_transmittance(fused_backend, device, seed):
    sigmas, _, t0, t1 = random_rays(9, 40, 1, device)
    inputs = [x.requires_grad_() for x in (sigmas, t0, t1)]
    res = {}
    for be in ("torch", fused_backend):
        w, tr, al = rfkernels.render_weights(*inputs, backend=be)
        gen = torch.Generator(device=device).manual_seed(0)
        seeds = [torch.randn(w.shape, generator=gen, device=device) for _ in range(3)]
        res[be] = ((w, tr, al), _grads((w, tr, al), inputs, seeds))
    for name, a, b in zip(["weights", "trans", "alphas"], res[fused_backend][0], res["torch"][0]):
        assert_close(a, b, name=name)
    for name, a, b in zip(["sigmas", "t_starts", "t_ends"], res[fused_backend][1], res["torch"][1]):
        assert_close_scaled(a, b, name="grad_" + name)


def test_volume_render_skips_transmittance(fused_backend, device, seed, monkeypatch):
    """volume_render asks the operator for no per-sample transmittance: its trans output is empty (the
    Triton kernel gets the weights buffer as its unused trans pointer, so a stray store would show in the
    weights), and values and gradients still match the reference."""
    sigmas, colors, t0, t1 = random_rays(6, 70, 3, device)
    inputs = [x.requires_grad_() for x in (sigmas, colors, t0, t1)]
    real, seen = volrend_ops.composite, []
    monkeypatch.setattr(volrend_ops, "composite", lambda *args: seen.append((args[6], real(*args))) or seen[-1][1])
    fus = rfkernels.volume_render(*inputs, early_stop_eps=1e-3, backend=fused_backend)
    [(want_trans, op_out)] = seen
    assert want_trans is False and op_out[4].shape == (0,)
    ref = rfkernels.volume_render(*inputs, early_stop_eps=1e-3, backend="torch")
    gen = torch.Generator(device=device).manual_seed(0)
    seeds = [torch.randn(o.shape, generator=gen, device=device) for o in ref]
    for name, a, b in zip(ref._fields, fus, ref):
        assert_close(a, b, name=name, atol=1e-5)
    for name, a, b in zip(
        ["sigmas", "colors", "t_starts", "t_ends"], _grads(fus, inputs, seeds), _grads(ref, inputs, seeds)
    ):
        assert_close_scaled(a, b, name="grad_" + name)


def test_fused_matches_float64_reference(fused_backend, device, seed):
    sigmas, colors, t0, t1 = random_rays(16, 100, 3, device, dtype=torch.float64)
    ref = reference.composite_padded(sigmas, t1 - t0, 0.5 * (t0 + t1), colors)
    out = rfkernels.volume_render(sigmas.float(), colors.float(), t0.float(), t1.float(), backend=fused_backend)
    assert_close(out.rgb, ref[0], atol=1e-5, name="rgb vs float64")
    assert_close(out.opacity, ref[2], atol=1e-5, name="opacity vs float64")


def test_reference_gradcheck():
    torch.manual_seed(0)
    sigmas, colors, t0, t1 = random_rays(3, 6, 2, "cpu", dtype=torch.float64)
    sigmas = sigmas.clamp(max=10.0)

    def f(s, c, a, b):
        out = rfkernels.volume_render(s, c, a, b + 1e-3, backend="torch")
        loss = rfkernels.distortion_loss(out.weights, a, b + 1e-3, backend="torch")
        return out.rgb, out.depth, out.opacity, loss

    assert torch.autograd.gradcheck(f, [x.requires_grad_() for x in (sigmas, colors, t0, t1)])


def test_distortion_matches_bruteforce_and_fused(fused_backend, device, seed):
    _, _, t0, t1 = random_rays(7, 70, 1, device, dtype=torch.float64)
    w = torch.rand(7, 70, device=device, dtype=torch.float64) / 70
    brute = reference.distortion_bruteforce(w, 0.5 * (t0 + t1), t1 - t0)
    assert_close(rfkernels.distortion_loss(w, t0, t1, backend="torch"), brute, atol=1e-10, name="O(S) vs O(S^2)")
    wf, t0f, t1f = (x.float().requires_grad_() for x in (w, t0, t1))
    res = {}
    for be in ("torch", fused_backend):
        loss = rfkernels.distortion_loss(wf, t0f, t1f, backend=be)
        g = torch.linspace(0.5, 2, loss.numel(), device=device)
        res[be] = (loss, torch.autograd.grad((loss * g).sum(), (wf, t0f, t1f)))
    assert_close(res[fused_backend][0], res["torch"][0], atol=1e-5, name="loss")
    for name, a, b in zip(["weights", "t_starts", "t_ends"], res[fused_backend][1], res["torch"][1]):
        assert_close_scaled(a, b, name="grad_" + name)


def test_distortion_packed(fused_backend, device, seed):
    _, _, t0, t1, offsets = random_packed([0, 1, 66, 4], 1, device)
    w = torch.rand(t0.shape, device=device).requires_grad_()
    a = rfkernels.distortion_loss(w, t0, t1, offsets=offsets, backend="torch")
    b = rfkernels.distortion_loss(w, t0, t1, offsets=offsets, backend=fused_backend)
    assert_close(b, a, atol=1e-5, name="packed loss")
    (ga,) = torch.autograd.grad(a.sum(), w)
    (gb,) = torch.autograd.grad(b.sum(), w)
    assert_close_scaled(gb, ga, name="packed grad")


def test_large_density_and_zero_intervals_no_nan(fused_backend, device):
    sigmas = torch.tensor([[1e30, 1e38, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0]], device=device).requires_grad_()
    t0 = torch.tensor([[0.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]], device=device)
    t1 = torch.tensor([[1.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]], device=device)
    colors = torch.ones(2, 4, 3, device=device)
    for be in ("torch", fused_backend):
        out = rfkernels.volume_render(sigmas, colors, t0, t1, backend=be)
        (g,) = torch.autograd.grad(out.rgb.sum() + out.depth.sum(), sigmas)
        assert torch.isfinite(out.rgb).all() and torch.isfinite(g).all(), be
        assert out.opacity[0].item() == pytest.approx(1.0) and out.opacity[1].item() == 0.0


def test_noncontiguous_and_half_inputs(fused_backend, device, seed):
    sigmas, colors, t0, t1 = random_rays(8, 20, 3, device)
    s_nc = sigmas.t().contiguous().t()  # non-contiguous view with the same values
    col_nc = colors.transpose(0, 1).contiguous().transpose(0, 1)
    assert not s_nc.is_contiguous()
    ref = rfkernels.volume_render(sigmas, colors, t0, t1, backend="torch")
    out = rfkernels.volume_render(s_nc, col_nc, t0, t1, backend=fused_backend)
    assert_close(out.rgb, ref.rgb, name="rgb non-contiguous")
    half_in = [x.half() for x in (sigmas, colors, t0, t1)]
    half = rfkernels.volume_render(*half_in, backend=fused_backend)
    assert half.rgb.dtype == torch.float16
    # the fused kernels compute in float32: compare with the reference on the same half-rounded inputs
    # (rounding t0/t1 to half changes the intervals themselves, by up to ~0.035 in rgb), to half output rounding
    ref_half = rfkernels.volume_render(*[x.float() for x in half_in], backend="torch")
    assert_close(half.rgb.float(), ref_half.rgb, atol=2e-3, rtol=2e-3, name="rgb half")


def test_one_sample_and_zero_rays(fused_backend, device):
    out = rfkernels.volume_render(
        torch.full((4, 1), 2.0, device=device),
        torch.ones(4, 1, 3, device=device),
        torch.zeros(4, 1, device=device),
        torch.ones(4, 1, device=device),
        backend=fused_backend,
    )
    expected = 1 - torch.exp(torch.tensor(-2.0))
    assert torch.allclose(out.opacity.cpu(), expected.expand(4), atol=1e-6)
    empty = rfkernels.volume_render(
        torch.zeros(0, 5, device=device),
        torch.zeros(0, 5, 3, device=device),
        torch.zeros(0, 5, device=device),
        torch.zeros(0, 5, device=device),
        backend=fused_backend,
    )
    assert empty.rgb.shape == (0, 3)
    # rays but no samples at all (N = 0: empty colors reach the CUDA kernel as a null pointer): rgb is 0
    none = rfkernels.volume_render(
        *(torch.zeros(0, *s, device=device) for s in ((), (3,), (), ())),
        offsets=torch.zeros(65, dtype=torch.int64, device=device),
        backend=fused_backend,
    )
    assert none.rgb.shape == (64, 3) and bool((none.rgb == 0).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(colors=torch.rand(4, 6, 3)), "colors"),
        (dict(t_ends=torch.zeros(4, 5)), "t_ends"),
        (dict(sigmas=torch.zeros(4, 5, dtype=torch.int32)), "sigmas"),
        (dict(sigmas=torch.zeros(2, 3, 4, 5)), "sigmas"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(
        sigmas=torch.rand(4, 5),
        colors=torch.rand(4, 5, 3),
        t_starts=torch.rand(4, 5) + 0.0,
        t_ends=torch.rand(4, 5) + 1.0,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rfkernels.volume_render(args.pop("sigmas"), args.pop("colors"), args.pop("t_starts"), args.pop("t_ends"))


def test_bad_packed_offsets():
    s = torch.rand(6)
    t0, t1 = torch.zeros(6), torch.ones(6)
    c = torch.rand(6, 3)
    with pytest.raises(ValueError, match="offsets"):
        rfkernels.volume_render(s, c, t0, t1, offsets=torch.tensor([0, 4, 2, 6]))
    with pytest.raises(ValueError, match="offsets"):
        rfkernels.volume_render(s, c, t0, t1, offsets=torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match="offsets"):
        rfkernels.volume_render(s, c, t0, t1)
    with pytest.raises(ValueError, match="ray_indices"):
        rfkernels.volume_render(s, c, t0, t1, ray_indices=torch.tensor([0, 1, 0, 1, 2, 2]), n_rays=3)


def test_unavailable_backend_says_why():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    x = torch.rand(2, 3)
    with pytest.raises(rfkernels.BackendUnavailableError, match="CUDA"):
        rfkernels.render_weights(x, deltas=x, backend="cuda")
    with pytest.raises(ValueError, match="backend"):
        rfkernels.render_weights(x, deltas=x, backend="fast")


def test_set_backend_default(monkeypatch):
    x = torch.rand(2, 3)
    rfkernels.set_backend("torch")
    try:
        assert rfkernels.get_backend() == "torch"
        w, _, _ = rfkernels.render_weights(x, deltas=x)
        assert w.shape == x.shape
    finally:
        rfkernels.set_backend("auto")


def test_negative_intervals_and_device_mismatch_are_rejected():
    s, c = torch.rand(4, 5), torch.rand(4, 5, 3)
    t0 = torch.rand(4, 5) + 1.0
    with pytest.raises(ValueError, match="t_ends"):
        rfkernels.volume_render(s, c, t0, t0 - 0.5)
    with pytest.raises(ValueError, match="deltas"):
        rfkernels.render_weights(s, deltas=-torch.ones(4, 5))
    with pytest.raises(ValueError, match="colors"):
        rfkernels.volume_render(s, c.to("meta"), t0, t0 + 1)
    with pytest.raises(ValueError, match="background"):
        rfkernels.volume_render(s, c, t0, t0 + 1, background=torch.ones(4))
