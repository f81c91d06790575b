"""Volume rendering: fused forward / forward+backward per backend vs the torch reference."""
from __future__ import annotations

import torch

import rfkernels
from rfkernels import _dispatch

from .common import Case


def _inputs(R, S, C, device):
    edges = torch.sort(torch.rand(R, S + 1, device=device), dim=-1).values
    sigmas = (torch.rand(R, S, device=device) * 10).requires_grad_()
    colors = torch.rand(R, S, C, device=device).requires_grad_()
    return sigmas, colors, edges[:, :-1].contiguous(), edges[:, 1:].contiguous()


def cases(device: torch.device, quick: bool) -> list[Case]:
    R, S, C = (1 << 12, 48, 3) if quick else (1 << 16, 48, 3)
    sigmas, colors, t0, t1 = _inputs(R, S, C, device)
    size = f"R={R} S={S} C={C}"
    # Physical minimum: read sigma, t0, t1, colors; write rgb/depth/opacity/weights (fwd);
    # fwd+bwd additionally reads them again + output grads and writes input grads.
    fwd_bytes = 4 * (R * S * (3 + C) + R * (C + 2) + R * S)
    bwd_bytes = 4 * (R * S * (3 + C) + 2 * R * (C + 2) + R * S * (3 + C))
    out = []
    backends = [b for b in ("torch", "triton", "cuda") if b in _dispatch.available_backends(device)]
    if device.type == "cpu":
        backends = ["torch"]  # the Triton interpreter is a correctness tool, not a benchmark
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    for be in backends:
        def fwd(be=be):
            with torch.no_grad():
                return rfkernels.volume_render(sigmas, colors, t0, t1, backend=be)

        def fwd_bwd(be=be):
            o = rfkernels.volume_render(sigmas, colors, t0, t1, backend=be)
            torch.autograd.grad(o.rgb.sum() + o.depth.sum(), (sigmas, colors))

        w = torch.rand(R, S, device=device).requires_grad_()

        def dist(be=be):
            loss = rfkernels.distortion_loss(w, t0, t1, backend=be)
            torch.autograd.grad(loss.sum(), w)

        out += [
            Case("volume_render", size, be, "fwd", fwd, fwd_bytes, R, "rays"),
            Case("volume_render", size, be, "fwd+bwd", fwd_bwd, fwd_bytes + bwd_bytes, R, "rays"),
            Case("distortion_loss", f"R={R} S={S}", be, "fwd+bwd", dist, 4 * R * S * 7, R, "rays"),
        ]
    return out
