"""Volume rendering: fused forward / forward+backward per backend vs the torch reference, padded
and packed; nerfacc 0.5.3 (``render_weight_from_density`` + ``accumulate_along_rays``) beside it on
the same inputs when installed (CUDA only), checked equal to ours before it is timed. Sizes: the
batches NeRF training uses, 4096 and 65536 rays x 64 / 128 / 256 samples (``all``)."""

from __future__ import annotations

import torch

import rfkernels

from . import roofline
from .common import Case, backends_for, check_peer, nerfacc_or_none, reference_gate

SIZES = {
    "tiny": [(1 << 8, 64)],
    "one": [(1 << 16, 64)],
    "all": [(R, S) for R in (1 << 12, 1 << 16) for S in (64, 128, 256)],
}
C = 3


def _inputs(R, S, device):
    edges = torch.sort(torch.rand(R, S + 1, device=device), dim=-1).values
    sigmas = (torch.rand(R, S, device=device) * 10).requires_grad_()
    colors = torch.rand(R, S, C, device=device).requires_grad_()
    return sigmas, colors, edges[:, :-1].contiguous(), edges[:, 1:].contiguous()


def _packed(sigmas, colors, t0, t1):
    """The same samples, ragged: ray r keeps its first S - r % 8 samples (offsets [R+1], ray_indices [N])."""
    R, S = sigmas.shape
    counts = S - torch.arange(R, device=sigmas.device) % 8
    keep = torch.arange(S, device=sigmas.device)[None] < counts[:, None]
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    ray_indices = torch.repeat_interleave(torch.arange(R, device=sigmas.device), counts)
    s = sigmas.detach()[keep].requires_grad_()
    c = colors.detach()[keep].requires_grad_()
    return s, c, t0[keep].contiguous(), t1[keep].contiguous(), offsets, ray_indices


def _ours(sigmas, colors, t0, t1, be, packed):
    kw = dict(offsets=packed[0], backend=be) if packed else dict(backend=be)
    o = rfkernels.volume_render(sigmas, colors, t0, t1, **kw)
    return o.rgb, o.depth, o.opacity


def _nerfacc(nerfacc, sigmas, colors, t0, t1, packed):
    """rgb, depth, opacity the nerfacc way: weights from densities, then three accumulations."""
    if packed:
        ray_indices, R = packed[1], packed[0].numel() - 1
        w, _, _ = nerfacc.render_weight_from_density(t0, t1, sigmas, ray_indices=ray_indices, n_rays=R)
        acc = lambda v: nerfacc.accumulate_along_rays(w, v, ray_indices=ray_indices, n_rays=R)  # noqa: E731
    else:
        w, _, _ = nerfacc.render_weight_from_density(t0, t1, sigmas)
        acc = lambda v: nerfacc.accumulate_along_rays(w, v)  # noqa: E731
    tm = (0.5 * (t0 + t1))[..., None]
    return acc(colors), acc(tm).squeeze(-1), acc(None).squeeze(-1)


def _cases_for(R, S, layout, sigmas, colors, t0, t1, packed, device, nerfacc) -> list[Case]:
    N = sigmas.numel()
    size = f"R={R} S={S} C={C} {layout}" + (f" N={N}" if packed else "")
    fwd_traffic = roofline.volume_render(R, N, C, packed is not None, backward=False)
    bwd_traffic = roofline.volume_render(R, N, C, packed is not None, backward=True)
    ours = lambda be: _ours(sigmas, colors, t0, t1, be, packed)  # noqa: E731
    runs = [(be, lambda be=be: ours(be)) for be in backends_for(device)]
    checks = {be: reference_gate(f"volume_render {size}", ours, be, wrt=(sigmas, colors)) for be, _ in runs}
    if nerfacc is not None:
        try:
            with torch.no_grad():
                err = check_peer(
                    f"nerfacc volume_render {size}",
                    _ours(sigmas, colors, t0, t1, "torch", packed),
                    _nerfacc(nerfacc, sigmas, colors, t0, t1, packed),
                )
            runs.append(("nerfacc", lambda: _nerfacc(nerfacc, sigmas, colors, t0, t1, packed)))
            print(f"[bench_volrend] nerfacc equal to ours on {size} (max abs err {err:.2g})")
        except Exception as exc:  # PeerMismatch, or the peer failed to run: report, time the rest
            print(f"[bench_volrend] nerfacc peer not timed: {exc}")
    out = []
    for be, render in runs:

        def fwd(render=render):
            with torch.no_grad():
                return render()

        def fwd_bwd(render=render):
            rgb, depth, _ = render()
            torch.autograd.grad(rgb.sum() + depth.sum(), (sigmas, colors))

        check = checks.get(be)  # values and gradients, so it gates both modes
        out += [
            Case("volume_render", size, be, "fwd", fwd, fwd_traffic, R, "rays", check=check),
            Case("volume_render", size, be, "fwd+bwd", fwd_bwd, bwd_traffic, R, "rays", check=check),
        ]
    return out


def cases(device: torch.device, scale: str) -> list[Case]:
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    nerfacc = nerfacc_or_none()
    out = []
    for R, S in SIZES[scale]:
        sigmas, colors, t0, t1 = _inputs(R, S, device)
        out += _cases_for(R, S, "padded", sigmas, colors, t0, t1, None, device, nerfacc)
        ps, pc, p0, p1, offsets, ray_indices = _packed(sigmas, colors, t0, t1)
        out += _cases_for(R, S, "packed", ps, pc, p0, p1, (offsets, ray_indices), device, nerfacc)
        w = torch.rand(R, S, device=device).requires_grad_()
        loss = lambda be, w=w, t0=t0, t1=t1: rfkernels.distortion_loss(w, t0, t1, backend=be)  # noqa: E731
        for be in backends_for(device):

            def dist(be=be, w=w, loss=loss):
                torch.autograd.grad(loss(be).sum(), w)

            check = reference_gate(f"distortion_loss R={R} S={S}", loss, be, wrt=(w,))
            traffic = roofline.distortion_loss(R, S)
            out.append(Case("distortion_loss", f"R={R} S={S}", be, "fwd+bwd", dist, traffic, R, "rays", check=check))
    return out
