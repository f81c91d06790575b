"""nerfacc.cameras: OpenCV lens distortion (pinhole ``k1, k2, p1, p2, k3, k4, k5, k6`` and fisheye
``k1..k4``) and its iterative inversion, in PyTorch (nerfacc inverts with CUDA kernels; the same
Newton iterations run here on any device). Not differentiable, as in nerfacc."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

N_PARAMS = (0, 1, 2, 4, 8)  # k1 | k1, k2 | k1, k2, p1, p2 | k1, k2, p1, p2, k3, k4, k5, k6


def _full_params(params: Tensor) -> Tensor:
    """Pinhole parameters padded with zeros to the 8 of the rational model."""
    if params.shape[-1] not in N_PARAMS:
        raise ValueError(f"`params` must have {N_PARAMS} entries in its last dim, got {params.shape[-1]}")
    return F.pad(params, (0, 8 - params.shape[-1]), "constant", 0.0)


def _check_uv(uv: Tensor) -> None:
    if uv.shape[-1] != 2:
        raise ValueError(f"`uv` must have shape [..., 2], got {list(uv.shape)}")


def _opencv_lens_distortion(uv: Tensor, params: Tensor) -> Tensor:
    """Distort normalized image points ``uv [..., 2]`` with the rational model ``params [..., 8]``:
    ``x * (1 + k1 r2 + k2 r4 + k3 r6) / (1 + k4 r2 + k5 r4 + k6 r6)`` plus the tangential terms."""
    k1, k2, p1, p2, k3, k4, k5, k6 = torch.unbind(params, dim=-1)
    u, v = torch.unbind(uv, dim=-1)
    r2 = u * u + v * v
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    du = 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    dv = 2 * p2 * u * v + p1 * (r2 + 2 * v * v)
    return torch.stack([u * radial + du, v * radial + dv], dim=-1)


def _opencv_lens_distortion_fisheye(uv: Tensor, params: Tensor, eps: float = 1e-10) -> Tensor:
    """Distort with the fisheye model ``params [..., 4] = k1..k4``: the angle ``theta = atan(r)``
    becomes ``theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``."""
    if params.shape[-1] != 4:
        raise ValueError(f"`params` must have 4 entries (k1..k4), got {params.shape[-1]}")
    k1, k2, k3, k4 = torch.unbind(params, dim=-1)
    r = uv.norm(dim=-1)
    theta = torch.atan(r)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    return uv * (theta_d / r.clamp(min=eps))[..., None]


def _compute_residual_and_jacobian(x: Tensor, y: Tensor, xd: Tensor, yd: Tensor, params: Tensor):
    """Residual ``distort(x, y) - (xd, yd)`` of the rational model and its Jacobian:
    ``(fx, fy, dfx/dx, dfx/dy, dfy/dx, dfy/dy)``."""
    k1, k2, p1, p2, k3, k4, k5, k6 = torch.unbind(params, dim=-1)
    r = x * x + y * y
    num = 1.0 + r * (k1 + r * (k2 + r * k3))
    den = 1.0 + r * (k4 + r * (k5 + r * k6))
    d = num / den
    fx = d * x + 2 * p1 * x * y + p2 * (r + 2 * x * x) - xd
    fy = d * y + 2 * p2 * x * y + p1 * (r + 2 * y * y) - yd
    d_r = ((k1 + r * (2.0 * k2 + r * (3.0 * k3))) * den - num * (k4 + r * (2.0 * k5 + r * (3.0 * k6)))) / (den * den)
    d_x, d_y = 2.0 * x * d_r, 2.0 * y * d_r
    fx_x = d + d_x * x + 2.0 * p1 * y + 6.0 * p2 * x
    fx_y = d_y * x + 2.0 * p1 * x + 2.0 * p2 * y
    fy_x = d_x * y + 2.0 * p2 * y + 2.0 * p1 * x
    fy_y = d + d_y * y + 2.0 * p2 * x + 6.0 * p1 * y
    return fx, fy, fx_x, fx_y, fy_x, fy_y


def _newton_undistort(uv: Tensor, params: Tensor, eps: float, iters: int, stop_early: bool) -> Tensor:
    """Newton's method on the rational model from ``uv``; an entry stops when its Jacobian is singular
    (``|det| < eps``) and, with ``stop_early``, once both updates are below ``eps``."""
    xd, yd = torch.unbind(uv, dim=-1)
    x, y = xd, yd
    active = torch.ones_like(x, dtype=torch.bool)
    for _ in range(iters):
        fx, fy, fx_x, fx_y, fy_x, fy_y = _compute_residual_and_jacobian(x, y, xd, yd, params)
        det = fy_x * fx_y - fx_x * fy_y
        active = active & (det.abs() >= eps) if stop_early else det.abs() > eps
        safe = torch.where(active, det, torch.ones_like(det))
        dx = torch.where(active, (fx * fy_y - fy * fx_y) / safe, torch.zeros_like(det))
        dy = torch.where(active, (fy * fx_x - fx * fy_x) / safe, torch.zeros_like(det))
        x, y = x + dx, y + dy
        if stop_early:
            active = active & ~((dx.abs() < eps) & (dy.abs() < eps))
    return torch.stack([x, y], dim=-1)


@torch.no_grad()
def opencv_lens_undistortion(uv: Tensor, params: Tensor, eps: float = 1e-6, iters: int = 10) -> Tensor:
    """Undistort ``uv [..., 2]`` for pinhole ``params [..., N] or [N]`` (N in 0, 1, 2, 4, 8: k1 | k1, k2
    | k1, k2, p1, p2 | k1, k2, p1, p2, k3, k4, k5, k6) by up to ``iters`` Newton steps per point."""
    _check_uv(uv)
    if params.shape[-1] == 0:
        return uv
    params = torch.broadcast_to(_full_params(params), uv.shape[:-1] + (8,))
    return _newton_undistort(uv, params, eps, iters, stop_early=True)


def _opencv_lens_undistortion(uv: Tensor, params: Tensor, eps: float = 1e-6, iters: int = 10) -> Tensor:
    """nerfacc's PyTorch twin of :func:`opencv_lens_undistortion`: all ``iters`` Newton steps (an entry
    whose Jacobian is singular, ``|det| <= eps``, is left where it is for that step)."""
    _check_uv(uv)
    if params.shape[-1] == 0:
        return uv
    return _newton_undistort(uv, _full_params(params), eps, iters, stop_early=False)


@torch.no_grad()
def opencv_lens_undistortion_fisheye(uv: Tensor, params: Tensor, eps: float = 1e-6, iters: int = 10) -> Tensor:
    """Undistort ``uv [..., 2]`` for fisheye ``params [..., 4] or [4]`` (k1..k4): Newton's method (in
    float64) on the distorted angle ``theta_d = |uv|`` (clipped to pi/2), then ``uv * tan(theta) /
    theta_d``. Points that do not converge, or whose angle changes sign, are returned unchanged
    (nerfacc leaves them unwritten), as are points with ``theta_d <= eps``."""
    _check_uv(uv)
    if params.shape[-1] != 4:
        raise ValueError(f"`params` must have 4 entries (k1..k4), got {params.shape[-1]}")
    k1, k2, k3, k4 = torch.unbind(torch.broadcast_to(params, uv.shape[:-1] + (4,)).double(), dim=-1)
    theta_d = uv.double().norm(dim=-1).clamp(max=math.pi / 2)
    theta = theta_d.clone()
    active = theta_d > eps
    converged = ~active
    for _ in range(iters):
        t2 = theta * theta
        a, b, c, d = k1 * t2, k2 * t2 * t2, k3 * t2 * t2 * t2, k4 * t2 * t2 * t2 * t2
        fix = (theta * (1 + a + b + c + d) - theta_d) / (1 + 3 * a + 5 * b + 7 * c + 9 * d)
        theta = torch.where(active, theta - fix, theta)
        done = active & (fix.abs() < eps)
        converged |= done
        active &= ~done
    flipped = theta < 0
    scale = torch.tan(theta) / theta_d.clamp(min=torch.finfo(torch.float64).tiny)
    ok = converged & ~flipped & (theta_d > eps)
    return torch.where(ok[..., None], uv * scale.to(uv.dtype)[..., None], uv)


__all__ = ["opencv_lens_undistortion", "opencv_lens_undistortion_fisheye"]
