"""Volume rendering: fused forward / forward+backward per backend vs the torch reference, padded
and packed; nerfacc 0.5.3 (``render_weight_from_density`` + ``accumulate_along_rays``) beside it on
the same inputs when installed (CUDA only), checked equal to ours before it is timed."""

from __future__ import annotations

import torch

import rfkernels

from .common import Case, backends_for, check_peer, nerfacc_or_none

SIZES = {"tiny": [(1 << 8, 48)], "one": [(1 << 16, 48)], "all": [(1 << 16, 48), (1 << 18, 48)]}
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
    # Physical minimum: read sigma, t0, t1, colors; write rgb/depth/opacity (+ weights); fwd+bwd
    # additionally reads them again + the output grads and writes the input grads.
    idx = 8 * (R + 1) if packed else 0
    fwd_bytes = 4 * (N * (3 + C) + R * (C + 2) + N) + idx
    bwd_bytes = 4 * (N * (3 + C) + 2 * R * (C + 2) + N * (3 + C)) + idx
    runs = [(be, lambda be=be: _ours(sigmas, colors, t0, t1, be, packed)) for be in backends_for(device)]
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

        out += [
            Case("volume_render", size, be, "fwd", fwd, fwd_bytes, R, "rays"),
            Case("volume_render", size, be, "fwd+bwd", fwd_bwd, fwd_bytes + bwd_bytes, R, "rays"),
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
        for be in backends_for(device):

            def dist(be=be, w=w, t0=t0, t1=t1):
                loss = rfkernels.distortion_loss(w, t0, t1, backend=be)
                torch.autograd.grad(loss.sum(), w)

            out.append(Case("distortion_loss", f"R={R} S={S}", be, "fwd+bwd", dist, 4 * R * S * 7, R, "rays"))
    return out
