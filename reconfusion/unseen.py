"""Rays from unseen viewpoints for RegNeRF's depth-smoothness regularizer (Niemeyer et al., CVPR 2022).

Unseen cameras are drawn between training cameras: a training camera ``i``, its nearest training
neighbour ``j`` and ``a ~ U(0, 1)`` give the centre ``lerp(c_i, c_j, a)`` and the rotation nearest
to ``lerp(R_i, R_j, a)`` (polar decomposition), with camera ``i``'s intrinsics. Each camera
contributes one ``p x p`` patch of adjacent pixels at a random place in the image.
"""
from __future__ import annotations

import torch

from .data.scene import Scene
from .rays import RayBundle


def nearest_neighbours(centers: torch.Tensor) -> torch.Tensor:
    """``[V, 3]`` -> ``[V]`` index of each camera's nearest other camera (itself when V == 1)."""
    if centers.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long)
    d = torch.cdist(centers, centers)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)


def between_poses(c2w: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random c2w ``[n, 4, 4]`` between neighbouring cameras of ``c2w`` ``[V, 4, 4]``, and the
    index ``[n]`` of the camera each one starts from."""
    i = torch.randint(c2w.shape[0], (n,), generator=gen)
    j = nearest_neighbours(c2w[:, :3, 3])[i]
    a = torch.rand(n, 1, 1, generator=gen, dtype=c2w.dtype)
    mixed = (1 - a) * c2w[i] + a * c2w[j]
    u, _, vh = torch.linalg.svd(mixed[:, :3, :3])
    rot = u @ vh
    flip = torch.linalg.det(rot) < 0  # keep a rotation (det +1)
    rot[flip] = (u[flip] * torch.tensor([1.0, 1.0, -1.0], dtype=u.dtype)) @ vh[flip]
    out = mixed.clone()
    out[:, :3, :3] = rot
    return out, i


def unseen_patches(scene: Scene, c2w: torch.Tensor, intrinsics: torch.Tensor, n_patches: int, patch: int,
                   gen: torch.Generator) -> RayBundle:
    """Rays of ``n_patches`` ``patch x patch`` pixel patches from cameras between the training cameras
    ``c2w`` ``[V, 4, 4]`` (``intrinsics`` ``[V, 4]``): ``n_patches * patch**2`` rays, patch-major
    (row-major inside a patch); ``1 <= patch <= min(height, width)``."""
    if not 1 <= patch <= min(scene.height, scene.width):
        raise ValueError(f"`patch` must be in [1, {min(scene.height, scene.width)}] for "
                         f"{scene.width}x{scene.height} images, got {patch}")
    poses, src = between_poses(c2w, n_patches, gen)
    x0 = torch.randint(scene.width - patch + 1, (n_patches,), generator=gen)
    y0 = torch.randint(scene.height - patch + 1, (n_patches,), generator=gen)
    k = torch.arange(patch)
    x = (x0[:, None, None] + k[None, None, :]).expand(-1, patch, patch).float() + 0.5
    y = (y0[:, None, None] + k[None, :, None]).expand(-1, patch, patch).float() + 0.5
    per_ray = lambda t: t.repeat_interleave(patch * patch, 0)  # noqa: E731
    return scene.rays(per_ray(poses), per_ray(intrinsics[src]), x.reshape(-1), y.reshape(-1))


__all__ = ["between_poses", "nearest_neighbours", "unseen_patches"]
