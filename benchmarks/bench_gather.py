"""Feature gather: PixelNeRF conditioning of one 64x64 latent (B=1, V=3, C=64, 64x64 feature maps,
N = 64*64 rays x 64 samples), per-view and mean/var outputs, fwd and fwd+bwd (w.r.t. the feature
maps), every backend vs the torch backend, which is the peer the issue names: ``F.grid_sample`` over
all views in one call + torch reductions (rfkernels/gather/reference.py), so its speedup column is the
ratio against that peer."""

from __future__ import annotations

import torch

import rfkernels

from . import roofline
from .common import Case, backends_for, reference_gate


def _scene(N, V, C, H, W, image, device):
    """Cameras on a circle looking at the origin; points in a ball they all see (mostly valid)."""
    from tests.helpers.gather_scenes import look_at_w2c  # the test helper; no torch-free dependency

    angle = torch.arange(V, device=device) * (2 * torch.pi / max(V, 1)) * 0.25
    eye = torch.stack([3 * torch.cos(angle), 3 * torch.sin(angle), torch.full_like(angle, 0.5)], dim=-1)
    E = look_at_w2c(eye, torch.zeros_like(eye))[None]
    f = 1.2 * image[1]
    K = torch.tensor([[f, 0.0, image[1] / 2], [0.0, f, image[0] / 2], [0.0, 0.0, 1.0]], device=device)
    K = K.expand(1, V, 3, 3).contiguous()
    points = (torch.rand(1, N, 3, device=device) * 2 - 1) * 0.8
    features = torch.randn(1, V, C, H, W, device=device, requires_grad=True)
    return points, features, K, E


SIZES = {"tiny": 8 * 8 * 8, "one": 64 * 64 * 64, "all": 64 * 64 * 64}


def cases(device: torch.device, scale: str) -> list[Case]:
    V, C, H, W = 3, 64, 64, 64
    N = SIZES[scale]
    image = (512, 512)
    points, features, K, E = _scene(N, V, C, H, W, image, device)
    size = f"N={N} V={V} C={C} {H}x{W}"
    backends = backends_for(device)
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    out = []
    for reduce, width in (("none", V * C), ("mean_var", 2 * C)):

        def call(be, reduce=reduce):
            o = rfkernels.gather_features(points, features, K, E, image_size=image, reduce=reduce, backend=be)
            return o.features

        fwd_traffic = roofline.gather_features(N, V, C, H, W, width, backward=False)
        bwd_traffic = roofline.gather_features(N, V, C, H, W, width, backward=True)
        for be in backends:

            def fwd(be=be, call=call):
                with torch.no_grad():
                    return call(be)

            def fwd_bwd(be=be, call=call):
                torch.autograd.grad(call(be).sum(), features)

            op = f"gather[{reduce}]"
            check = reference_gate(f"{op} {size}", call, be, wrt=(features,))
            out += [
                Case(op, size, be, "fwd", fwd, fwd_traffic, N, "pts", check=check),
                Case(op, size, be, "fwd+bwd", fwd_bwd, bwd_traffic, N, "pts", check=check),
            ]
    return out
