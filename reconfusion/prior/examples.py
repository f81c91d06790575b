"""Views as the prior sees them: centre-cropped squares at its resolution, and batch cameras."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import Cameras


def square_resize(images: torch.Tensor, intrinsics: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-crop ``[N, H, W, 3]`` to a square and resize to ``size``: -> (``[N, 3, size, size]``,
    K ``[N, 3, 3]`` adjusted)."""
    N, H, W, _ = images.shape
    s = min(H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    x = images[:, y0 : y0 + s, x0 : x0 + s].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    r = size / s
    fx, fy, cx, cy = intrinsics.float().unbind(-1)
    K = torch.zeros(N, 3, 3)
    K[:, 0, 0], K[:, 1, 1] = fx * r, fy * r
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (cx - x0) * r, (cy - y0) * r, 1.0
    return x, K


def batch_cameras(batch: dict) -> Cameras:
    """The :class:`Cameras` of a training batch (:mod:`reconfusion.prior.dataset`)."""
    return Cameras(
        batch["input_c2w"],
        batch["input_K"],
        batch["target_c2w"],
        batch["target_K"],
        batch["near"],
        batch["far"],
        batch.get("mid"),
    )


__all__ = ["batch_cameras", "square_resize"]
