"""Where PixelNeRF puts its samples: a depth range that covers the scene in every space.

PixelNeRF (:mod:`reconfusion.prior.pixelnerf`) spaces its samples uniformly in mip-NeRF 360's
contracted distance ``s = g(t)``, ``g(t) = t / mid`` for ``t <= mid`` and ``2 - mid / t`` beyond:
linear in depth over ``[near, mid]`` (the scene's content), linear in disparity over ``[mid, far]``
(the unbounded background). ``mid = far`` is plain linear spacing over ``[near, far]``.

:func:`depth_bounds` picks ``(near, mid, far)`` for a scene from its cameras: bounded (``box``) and
forward-facing (``ndc``) scenes keep their bounds, linear; unbounded (``contract``) scenes get
``mid`` = twice the largest camera distance from their focus point (every point of a 360 capture's
inner sphere is then in the linear part), so a loader's ``far = 1000`` no longer puts the whole
scene inside the first of 32 linear bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focus_point(c2w: torch.Tensor, fallback_depth: float | None = None) -> torch.Tensor:
    """The point nearest (least squares) to every camera's optical axis (OpenGL ``c2w`` ``[N, 4, 4]``).

    Nearly parallel axes (forward-facing captures) make that ill-posed: then the point
    ``fallback_depth`` (default: 3x the camera spread, at least 1) ahead of the mean camera.
    """
    centers, fwd = c2w[:, :3, 3].double(), -F.normalize(c2w[:, :3, 2].double(), dim=-1)
    proj = torch.eye(3, dtype=torch.float64) - fwd[:, :, None] * fwd[:, None, :]  # [N, 3, 3]
    A, b = proj.sum(0), (proj @ centers[:, :, None]).sum(0)[:, 0]
    eig = torch.linalg.eigvalsh(A)
    mean_c, mean_f = centers.mean(0), F.normalize(fwd.mean(0), dim=0)
    if c2w.shape[0] > 1 and eig[0] > 0.05 * eig[-1]:
        p = torch.linalg.solve(A, b)
        if float((p - mean_c) @ mean_f) > 0:  # in front of the cameras
            return p.float()
    spread = float((centers - mean_c).norm(dim=-1).max())
    depth = fallback_depth if fallback_depth is not None else max(3.0 * spread, 1.0)
    return (mean_c + depth * mean_f).float()


def depth_bounds(
    c2w: torch.Tensor, near: float, far: float, space: str, focus_depth: float | None = None
) -> tuple[float, float, float]:
    """``(near, mid, far)`` of PixelNeRF's samples for a scene with OpenGL cameras ``c2w`` ``[N, 4, 4]``
    (all of the scene's views, or the ones at hand) and loader bounds ``near < far``."""
    if not 0 <= near < far:
        raise ValueError(f"need 0 <= near < far, got near={near}, far={far}")
    if space != "contract":
        return float(near), float(far), float(far)
    focus = focus_point(c2w.float(), focus_depth)
    reach = float((c2w[:, :3, 3].float() - focus).norm(dim=-1).max())
    mid = min(max(2.0 * reach, 2.0 * near), far)
    return float(near), float(mid), float(far)


__all__ = ["depth_bounds", "focus_point"]
