"""Pure-PyTorch PixelNeRF feature gather: readable, vectorized, differentiable by autograd.

This is the ``torch`` backend and the ground truth of the tests. Per batch b, point n and view v::

    x_cam  = R_v p_n + t_v                                    (world-to-camera extrinsics [R|t])
    x_cv   = x_cam                 (opencv: +x right, +y down, camera looks along +z)
           = x_cam * (1, -1, -1)   (opengl: +x right, +y up, camera looks along -z)
    z      = x_cv.z                (depth; the point is "in front" iff z > near_eps)
    (u, v) = ((K x_cv).x / z, (K x_cv).y / z)     pixel coords in the image of size (H_img, W_img)
    grid   = (2 u / W_img - 1, 2 v / H_img - 1)  normalized coords for F.grid_sample
    valid  = in front & |grid.x| <= 1 & |grid.y| <= 1
    f      = F.grid_sample(features_v, grid, bilinear, padding_mode="zeros", align_corners=False) if valid else 0

Pixel convention: ``u = 0`` is the left *edge* of the image and ``u = W_img`` its right edge, so the
centre of pixel column ``i`` is at ``u = i + 0.5`` (a centred principal point is ``cx = W_img / 2``).
Intrinsics calibrated with pixel centres at integers (OpenCV) need ``cx + 0.5, cy + 0.5``. Because
edges map to edges, the same ``grid`` addresses a feature map of any size (H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .contract import OPENGL_FLIP


def camera_coords(points: torch.Tensor, extrinsics: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3], extrinsics [B, V, 3|4, 4] -> camera-space coordinates [B, N, V, 3]."""
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    return torch.einsum("bvij,bnj->bnvi", R, points) + t[:, None]


def project(cam: torch.Tensor, intrinsics: torch.Tensor, image_size, convention: str, near_eps: float):
    """cam [B, N, V, 3] (in ``convention``) -> (grid [B, N, V, 2] normalized, valid [B, N, V] bool).

    Invalid points get grid = (-2, -2) (fully outside: samples 0, gradients 0, no inf/NaN)."""
    if convention == "opengl":
        cam = cam * cam.new_tensor(OPENGL_FLIP)
    z = cam[..., 2]
    in_front = z > near_eps
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    pix = torch.einsum("bvij,bnvj->bnvi", intrinsics[..., :2, :], cam)  # [B, N, V, 2] = (K x).xy
    H_img, W_img = image_size
    scale = pix.new_tensor([2.0 / W_img, 2.0 / H_img])
    grid = pix / z_safe[..., None] * scale - 1.0
    valid = in_front & (grid.abs() <= 1.0).all(dim=-1)
    grid = torch.where(valid[..., None], grid, torch.full_like(grid, -2.0))
    return grid, valid


def sample(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """features [B, V, C, H, W], grid [B, N, V, 2] (from :func:`project`) -> [B, N, V, C]."""
    B, V, C, H, W = features.shape
    N = grid.shape[1]
    g = grid.permute(0, 2, 1, 3).reshape(B * V, N, 1, 2)
    out = F.grid_sample(
        features.reshape(B * V, C, H, W), g, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # [B*V, C, N, 1]
    # invalid views were sent to grid = -2, whose four corners are all outside: exactly 0 already
    return out.reshape(B, V, C, N).permute(0, 3, 1, 2)


def reduce_views(per_view: torch.Tensor, valid: torch.Tensor, reduce: str) -> torch.Tensor:
    """[B, N, V, C] per-view features (0 where invalid) -> reduced over valid views.

    mean: sum / count; mean_var: cat(mean, population variance) [B, N, 2C]; max: max over valid
    views. Points seen by no view get 0 (mean, variance and max alike)."""
    if reduce == "none":
        return per_view
    m = valid[..., None].to(per_view.dtype)
    count = m.sum(dim=2).clamp(min=1.0)  # [B, N, 1]
    if reduce in ("mean", "mean_var"):
        mean = (per_view * m).sum(dim=2) / count
        if reduce == "mean":
            return mean
        var = (((per_view - mean[:, :, None]) * m) ** 2).sum(dim=2) / count
        return torch.cat([mean, var], dim=-1)
    masked = per_view.masked_fill(~valid[..., None], float("-inf"))
    best = masked.max(dim=2).values
    return torch.where(valid.any(dim=2, keepdim=True), best, torch.zeros_like(best))


def gather(points, features, intrinsics, extrinsics, image_size, convention, reduce, near_eps, return_camera_coords):
    """-> (features, mask [B, N, V], camera_coords [B, N, V, 3] | None); see the module docstring."""
    cam = camera_coords(points, extrinsics)
    grid, valid = project(cam, intrinsics, image_size, convention, near_eps)
    out = reduce_views(sample(features, grid), valid, reduce)
    return out, valid, (cam if return_camera_coords else None)
