"""Synthetic posed scenes and camera batches for the prior tests and benchmark (test scaffolding, not installed)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reconfusion.cameras import look_at
from reconfusion.prior.model import Cameras


def ring_cameras(n: int, radius: float = 3.0, height: float = 0.5, arc: float = 2 * math.pi) -> torch.Tensor:
    """``[n, 4, 4]`` OpenGL cameras on a circle around the origin, all looking at it (y is up)."""
    out = []
    for a in torch.linspace(0, arc, n + 1)[:-1] if arc >= 2 * math.pi else torch.linspace(0, arc, n):
        c = torch.tensor([radius * math.sin(a), height, radius * math.cos(a)])
        out.append(look_at(-c, torch.tensor([0.0, 1.0, 0.0]), c))
    return torch.stack(out)


def forward_cameras(n: int, spread: float = 0.3) -> torch.Tensor:
    """``[n, 4, 4]`` OpenGL cameras on a small grid in the z = 0 plane looking down -z."""
    g = torch.linspace(-spread, spread, max(2, math.ceil(math.sqrt(n))))
    xy = torch.cartesian_prod(g, g)[:n]
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3], c2w[:, 1, 3] = xy[:, 0], xy[:, 1]
    return c2w


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[n, size, size, 3]`` in [0, 1]: upsampled noise (learnable, not white noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1).permute(0, 2, 3, 1)


def synthetic_scene(n: int = 8, size: int = 64, kind: str = "360", seed: int = 0):
    """A :class:`~reconfusion.data.scene.Scene` with ``n`` views: ``kind`` ``"360"`` (ring, contract) or
    ``"forward"`` (forward-facing, ndc)."""
    from reconfusion.data.scene import Scene

    c2w = ring_cameras(n) if kind == "360" else forward_cameras(n)
    f = size * 1.0
    intr = torch.tensor([f, f, size / 2, size / 2]).repeat(n, 1)
    space, near, far = ("contract", 1.0, 5.0) if kind == "360" else ("ndc", 1.0, 6.0)
    return Scene(
        images=smooth_images(n, size, seed),
        c2w=c2w,
        intrinsics=intr,
        near=near,
        far=far,
        space=space,
        focus_depth=None if kind == "360" else 3.0,
        name=f"synthetic-{kind}",
    )


def camera_batch(B: int, V: int, size: int, device="cpu") -> Cameras:
    """Target = camera 0 of a ring, inputs = the next ``V`` cameras; K for ``size`` x ``size`` images."""
    c2w = ring_cameras(V + 1, arc=math.pi / 2)
    K = torch.tensor([[size * 1.0, 0.0, size / 2], [0.0, size * 1.0, size / 2], [0.0, 0.0, 1.0]])
    cams = Cameras(
        c2w[1:].expand(B, V, 4, 4),
        K.expand(B, V, 3, 3),
        c2w[0].expand(B, 4, 4),
        K.expand(B, 3, 3),
        torch.full((B,), 1.0),
        torch.full((B,), 5.0),
    )
    return Cameras(*(x.contiguous().to(device) for x in cams[:6]))


__all__ = ["camera_batch", "forward_cameras", "ring_cameras", "smooth_images", "synthetic_scene"]
