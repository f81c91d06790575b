"""A textured plane seen by a forward-facing row of cameras: images with known geometry for the
sparse-depth tests (matching, triangulation, targets).

The plane ``z = PLANE_Z`` (world units, OpenGL cameras at ``z = 0`` looking along -z) carries a
smooth random texture; each image is rendered by intersecting the pixel-centre rays with the plane
and sampling the texture bilinearly.
"""

from __future__ import annotations

import torch

from reconfusion.data.scene import Scene
from reconfusion.rays import image_rays

PLANE_Z = -5.0
TEXTURE_EXTENT = 6.0  # the texture covers [-extent, extent]^2 of the plane


def texture(seed: int = 0, size: int = 256) -> torch.Tensor:
    """``[3, size, size]`` blobs of several scales (SIFT finds corners and blobs in it)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(3, size, size)
    for cells in (8, 24, 64):
        noise = torch.rand(1, 3, cells, cells, generator=g)
        out += torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[0]
    return (out / 3.0).clamp(0, 1)


def plane_scene(n_views: int = 3, size: int = 128, baseline: float = 0.6, space: str = "ndc") -> Scene:
    """Cameras at ``x = (k - (n-1)/2) * baseline``, focal ``size``; near 1, far 20."""
    tex = texture()
    c2w = torch.eye(4).repeat(n_views, 1, 1)
    c2w[:, 0, 3] = (torch.arange(n_views) - (n_views - 1) / 2) * baseline
    intr = torch.tensor([[float(size), float(size), size / 2, size / 2]]).repeat(n_views, 1)
    images = []
    for k in range(n_views):
        o, d = image_rays(c2w[k], intr[k], size, size)
        hit = o + ((PLANE_Z - o[..., 2]) / d[..., 2])[..., None] * d
        grid = (hit[..., :2] / TEXTURE_EXTENT)[None]  # [1, H, W, 2] in [-1, 1]
        images.append(torch.nn.functional.grid_sample(tex[None], grid, align_corners=False)[0].permute(1, 2, 0))
    return Scene(
        images=torch.stack(images),
        c2w=c2w,
        intrinsics=intr,
        near=1.0,
        far=20.0,
        space=space,
        train_ids=list(range(n_views)),
        test_ids=[],
        bbox=torch.tensor([[-8.0, -8.0, -8.0], [8.0, 8.0, 8.0]]) if space == "box" else None,
    )
