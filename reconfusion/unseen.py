"""Rays from unseen viewpoints for RegNeRF's depth-smoothness regularizer (Niemeyer et al., CVPR 2022).

Unseen cameras are drawn between training cameras: a training camera ``i``, its nearest training
neighbour ``j`` and ``a ~ U(0, 1)`` give the rotation nearest to ``lerp(R_i, R_j, a)`` (polar
decomposition) and the centre: ``lerp(c_i, c_j, a)`` for a forward-facing (NDC) rig; for cameras
around an object (other spaces, when the training cameras' focus point is in front of all of them)
the centre orbits that point, its direction slerped and its distance interpolated, so it never
cuts through the object as the straight segment between two far-apart cameras does. Each camera
has camera ``i``'s intrinsics and contributes one ``p x p`` patch of adjacent pixels at a random
place in the image.
"""

from __future__ import annotations

import torch

from .cameras import focus_point
from .data.scene import Scene
from .rays import RayBundle


def nearest_neighbours(centers: torch.Tensor) -> torch.Tensor:
    """``[V, 3]`` -> ``[V]`` index of each camera's nearest other camera (itself when V == 1)."""
    if centers.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long)
    d = torch.cdist(centers, centers)
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)


def orbit_center(c2w: torch.Tensor) -> torch.Tensor | None:
    """The point unseen cameras orbit for training cameras ``c2w`` ``[V, 4, 4]``: their
    :func:`~reconfusion.cameras.focus_point` if it lies in front of every one of them (a rig looking
    inwards), else ``None`` (parallel or diverging view directions: interpolate linearly)."""
    if c2w.shape[0] < 2:
        return None
    p = focus_point(c2w).to(c2w.dtype)
    depth = ((p - c2w[:, :3, 3]) * -c2w[:, :3, 2]).sum(-1)
    return p if bool((depth > 0).all()) else None


def _slerp(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``[n, 3]`` -> the unit vector a fraction ``a`` ``[n, 1]`` of the way along the great
    circle from ``u`` to ``v`` (linear interpolation, renormalized, where they (anti)align)."""
    cos = (u * v).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    ok = sin > 1e-6
    safe = torch.where(ok, sin, torch.ones_like(sin))
    out = torch.where(ok, (torch.sin((1 - a) * omega) * u + torch.sin(a * omega) * v) / safe, (1 - a) * u + a * v)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def between_poses(
    c2w: torch.Tensor, n: int, gen: torch.Generator, center: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random c2w ``[n, 4, 4]`` between neighbouring cameras of ``c2w`` ``[V, 4, 4]``, and the
    index ``[n]`` of the camera each one starts from. With ``center`` ``[3]`` the camera centres
    orbit it (see the module docstring), else they lie on the segment between the two cameras."""
    i = torch.randint(c2w.shape[0], (n,), generator=gen)
    j = nearest_neighbours(c2w[:, :3, 3])[i]
    a = torch.rand(n, 1, 1, generator=gen, dtype=c2w.dtype)
    mixed = (1 - a) * c2w[i] + a * c2w[j]
    if center is not None:
        ri, rj = c2w[i, :3, 3] - center, c2w[j, :3, 3] - center
        di, dj = ri.norm(dim=-1, keepdim=True), rj.norm(dim=-1, keepdim=True)
        w = a[:, 0]
        direction = _slerp(ri / di.clamp_min(1e-12), rj / dj.clamp_min(1e-12), w)
        mixed[:, :3, 3] = center + direction * ((1 - w) * di + w * dj)
    u, _, vh = torch.linalg.svd(mixed[:, :3, :3])
    rot = u @ vh
    flip = torch.linalg.det(rot) < 0  # keep a rotation (det +1)
    rot[flip] = (u[flip] * torch.tensor([1.0, 1.0, -1.0], dtype=u.dtype)) @ vh[flip]
    out = mixed.clone()
    out[:, :3, :3] = rot
    return out, i


def unseen_patches(
    scene: Scene, c2w: torch.Tensor, intrinsics: torch.Tensor, n_patches: int, patch: int, gen: torch.Generator
) -> RayBundle:
    """Rays of ``n_patches`` ``patch x patch`` pixel patches from cameras between the training cameras
    ``c2w`` ``[V, 4, 4]`` (``intrinsics`` ``[V, 4]``): ``n_patches * patch**2`` rays, patch-major
    (row-major inside a patch); ``1 <= patch <= min(height, width)``."""
    if not 1 <= patch <= min(scene.height, scene.width):
        raise ValueError(
            f"`patch` must be in [1, {min(scene.height, scene.width)}] for "
            f"{scene.width}x{scene.height} images, got {patch}"
        )
    center = None if scene.space == "ndc" else orbit_center(c2w)
    poses, src = between_poses(c2w, n_patches, gen, center)
    x0 = torch.randint(scene.width - patch + 1, (n_patches,), generator=gen)
    y0 = torch.randint(scene.height - patch + 1, (n_patches,), generator=gen)
    k = torch.arange(patch)
    x = (x0[:, None, None] + k[None, None, :]).expand(-1, patch, patch).float() + 0.5
    y = (y0[:, None, None] + k[None, :, None]).expand(-1, patch, patch).float() + 0.5
    per_ray = lambda t: t.repeat_interleave(patch * patch, 0)  # noqa: E731
    return scene.rays(per_ray(poses), per_ray(intrinsics[src]), x.reshape(-1), y.reshape(-1))


__all__ = ["between_poses", "nearest_neighbours", "orbit_center", "unseen_patches"]
