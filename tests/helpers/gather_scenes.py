"""Random PixelNeRF-style scenes for the gather tests: look-at cameras around the origin and points
in a box large enough that some land behind cameras and some outside the images."""

from __future__ import annotations

import torch


def look_at_w2c(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """eye, target [..., 3] -> world-to-camera [..., 3, 4] in the opencv convention (+z forward)."""
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(z)
    x = torch.nn.functional.normalize(torch.cross(z, up, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-2)
    t = -(R @ eye[..., None])
    return torch.cat([R, t], dim=-1)


def random_scene(B, N, V, C, H, W, image_size, device, dtype=torch.float32, radius=2.0, box=1.8):
    """-> points [B,N,3], features [B,V,C,H,W], intrinsics [B,V,3,3], extrinsics [B,V,3,4] (opencv)."""
    g = dict(device=device, dtype=dtype)
    eye = torch.nn.functional.normalize(torch.randn(B, V, 3, **g), dim=-1) * radius
    target = torch.randn(B, V, 3, **g) * 0.2
    extrinsics = look_at_w2c(eye, target)
    H_img, W_img = image_size
    f = (torch.rand(B, V, **g) * 0.7 + 0.8) * W_img
    K = torch.zeros(B, V, 3, 3, **g)
    K[..., 0, 0] = f
    K[..., 1, 1] = f * (torch.rand(B, V, **g) * 0.2 + 0.9)
    K[..., 0, 1] = torch.randn(B, V, **g) * 2.0  # a little skew
    K[..., 0, 2] = W_img / 2 + torch.randn(B, V, **g)
    K[..., 1, 2] = H_img / 2 + torch.randn(B, V, **g)
    K[..., 2, 2] = 1.0
    points = (torch.rand(B, N, 3, **g) * 2 - 1) * box
    features = torch.randn(B, V, C, H, W, **g)
    return points, features, K, extrinsics
