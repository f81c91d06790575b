"""Ray generation (pixel centres), ray bundles and NDC for forward-facing scenes.

A pixel at row ``i``, column ``j`` is the ray through its centre ``(x, y) = (j + 0.5, i + 0.5)``.
Camera-space directions lie on the plane at unit depth: OpenGL ``((x-cx)/fx, -(y-cy)/fy, -1)``,
OpenCV ``((x-cx)/fx, (y-cy)/fy, 1)``; they are rotated to world space by ``c2w[:3, :3]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

# Std of a uniform pixel footprint of width 1 is 1/sqrt(12); mip-NeRF uses 2/sqrt(12) for the
# cone radius at unit depth (a disc whose variance matches the pixel square).
PIXEL_RADIUS = 2.0 / math.sqrt(12.0)


@dataclass
class RayBundle:
    """A batch of rays; every field is ``[R, ...]``.

    ``origins``/``directions`` define points ``o + t d`` over ``t in [near, far]`` (``directions`` is
    unit length for metric scenes; in NDC it is the NDC direction and t in [0, 1]). ``viewdirs``
    are unit world-space viewing directions (for the colour MLP). ``radii`` is the cone radius per
    unit ``t`` (pixel footprint, used for anti-aliasing).
    """

    origins: torch.Tensor  # [R, 3]
    directions: torch.Tensor  # [R, 3]
    viewdirs: torch.Tensor  # [R, 3]
    radii: torch.Tensor  # [R]
    near: torch.Tensor  # [R]
    far: torch.Tensor  # [R]

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, idx) -> RayBundle:
        return RayBundle(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to(self, device) -> RayBundle:
        return RayBundle(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def cat(bundles: list[RayBundle]) -> RayBundle:
        """The rays of ``bundles`` one after the other."""
        return RayBundle(**{f.name: torch.cat([getattr(b, f.name) for b in bundles]) for f in fields(RayBundle)})


def pixel_centers(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` ``[H, W]`` pixel-centre coordinates."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32) + 0.5, torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij"
    )
    return x, y


def camera_directions(x: torch.Tensor, y: torch.Tensor, intr: torch.Tensor, convention: str = "opengl") -> torch.Tensor:
    """Camera-space directions at unit depth ``[..., 3]``; ``intr`` ``[..., 4]`` = (fx, fy, cx, cy)."""
    fx, fy, cx, cy = intr.unbind(-1)
    u, v = (x - cx) / fx, (y - cy) / fy
    one = torch.ones_like(u)
    if convention == "opengl":
        return torch.stack([u, -v, -one], dim=-1)
    if convention == "opencv":
        return torch.stack([u, v, one], dim=-1)
    raise ValueError(f"unknown camera convention {convention!r}; use 'opengl' or 'opencv'")


def generate_rays(
    c2w: torch.Tensor, intr: torch.Tensor, x: torch.Tensor, y: torch.Tensor, convention: str = "opengl"
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through pixel coordinates ``(x, y)``.

    Args:
        c2w: ``[..., 3|4, 4]`` camera-to-world (broadcast against x).
        intr: ``[..., 4]`` (fx, fy, cx, cy).
        x, y: ``[...]`` pixel coordinates (use :func:`pixel_centers` for whole images).
    Returns:
        ``(origins [..., 3], directions [..., 3])``; directions are *not* normalized (unit depth).
    """
    d_cam = camera_directions(x, y, intr, convention)
    rot = c2w[..., :3, :3]
    dirs = (rot * d_cam[..., None, :]).sum(-1)
    origins = torch.broadcast_to(c2w[..., :3, 3], dirs.shape)
    return origins, dirs


def image_rays(
    c2w: torch.Tensor, intr: torch.Tensor, height: int, width: int, convention: str = "opengl"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All rays of one camera: ``(origins, directions)`` ``[H, W, 3]``."""
    x, y = pixel_centers(height, width)
    x, y = x.to(c2w.device), y.to(c2w.device)
    return generate_rays(c2w[None, None], intr[None, None], x, y, convention)


# ------------------------------------------------------------------------------------------ NDC
def ndc_rays(
    origins: torch.Tensor, directions: torch.Tensor, intr: torch.Tensor, width: int, height: int, near: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """NeRF's NDC for forward-facing scenes (OpenGL convention, scene at z < -near).

    Rays are first moved to the plane ``z = -near``; then ``t in [0, 1]`` along the returned NDC
    direction spans depths ``near .. infinity``. ``intr`` = (fx, fy, cx, cy) of the reference
    camera (principal point assumed central).
    """
    fx, fy = intr[..., 0], intr[..., 1]
    t = -(near + origins[..., 2]) / directions[..., 2]
    o = origins + t[..., None] * directions
    ax, ay = -2.0 * fx / width, -2.0 * fy / height
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = directions.unbind(-1)
    o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1)
    return o_ndc, d_ndc


def world_to_ndc(points: torch.Tensor, intr: torch.Tensor, width: int, height: int, near: float = 1.0) -> torch.Tensor:
    """World points ``[..., 3]`` (z < 0) -> NDC points."""
    ax, ay = -2.0 * intr[..., 0] / width, -2.0 * intr[..., 1] / height
    x, y, z = points.unbind(-1)
    return torch.stack([ax * x / z, ay * y / z, 1.0 + 2.0 * near / z], dim=-1)


def ndc_to_world(points: torch.Tensor, intr: torch.Tensor, width: int, height: int, near: float = 1.0) -> torch.Tensor:
    """Inverse of :func:`world_to_ndc` (NDC z < 1)."""
    ax, ay = -2.0 * intr[..., 0] / width, -2.0 * intr[..., 1] / height
    px, py, pz = points.unbind(-1)
    z = 2.0 * near / (pz - 1.0)
    return torch.stack([px * z / ax, py * z / ay, z], dim=-1)


__all__ = [
    "PIXEL_RADIUS",
    "RayBundle",
    "camera_directions",
    "generate_rays",
    "image_rays",
    "ndc_rays",
    "ndc_to_world",
    "pixel_centers",
    "world_to_ndc",
]
