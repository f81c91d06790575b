"""Small synthetic scenes for the reconfusion tests, rendered with the reference volume renderer.

``boxes_scene``: two coloured boxes (density 40 inside) at the origin, a ring of cameras around
them, black background, rendered by ``rfkernels.volume_render(backend="torch")`` with 192 uniform
samples per ray; returned as a ``Scene`` with ``space="box"``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import rfkernels
from reconfusion.cameras import look_at
from reconfusion.config import Config, FieldConfig, GridConfig, ProposalConfig, tiny
from reconfusion.data.scene import Scene

BOXES = [  # (min corner, max corner, rgb)
    ((-0.8, -0.8, -0.8), (0.1, 0.2, 0.3), (0.9, 0.2, 0.1)),
    ((-0.1, -0.5, 0.0), (0.7, 0.6, 0.8), (0.1, 0.4, 0.9)),
]
DENSITY = 40.0


def boxes_field(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[..., 3]`` -> (density ``[...]``, rgb ``[..., 3]``); later boxes win overlaps."""
    sigma = torch.zeros(x.shape[:-1])
    rgb = torch.zeros(*x.shape[:-1], 3)
    for lo, hi, col in BOXES:
        inside = ((x >= torch.tensor(lo)) & (x <= torch.tensor(hi))).all(-1)
        sigma = torch.where(inside, torch.full_like(sigma, DENSITY), sigma)
        rgb = torch.where(inside[..., None], torch.tensor(col).expand_as(rgb), rgb)
    return sigma, rgb


def ring_poses(n: int, radius: float = 4.0, elevation_deg: float = 25.0) -> torch.Tensor:
    poses = []
    el = math.radians(elevation_deg)
    for k in range(n):
        az = 2 * math.pi * k / n
        c = torch.tensor(
            [radius * math.cos(el) * math.cos(az), radius * math.cos(el) * math.sin(az), radius * math.sin(el)]
        )
        poses.append(look_at(-c, torch.tensor([0.0, 0.0, 1.0]), c))
    return torch.stack(poses)


def boxes_scene(n_views: int = 8, size: int = 32, focal: float = 40.0, n_samples: int = 192) -> Scene:
    c2w = ring_poses(n_views)
    intr = torch.tensor([[focal, focal, size / 2.0, size / 2.0]]).repeat(n_views, 1)
    scene = Scene(
        images=torch.zeros(n_views, size, size, 3),
        c2w=c2w,
        intrinsics=intr,
        near=2.0,
        far=6.0,
        space="box",
        background="black",
        bbox=torch.tensor([[-1.5] * 3, [1.5] * 3]),
        name="boxes",
    )
    images = []
    for i in range(n_views):
        rays = scene.view_rays(i)
        t = torch.linspace(2.0, 6.0, n_samples + 1).expand(len(rays), -1)
        t0, t1 = t[:, :-1].contiguous(), t[:, 1:].contiguous()
        x = rays.origins[:, None] + rays.directions[:, None] * (0.5 * (t0 + t1))[..., None]
        sigma, rgb = boxes_field(x)
        out = rfkernels.volume_render(sigma, rgb, t0, t1, background=0.0, backend="torch")
        images.append(out.rgb.view(size, size, 3).clamp(0, 1))
    return scene.replace(images=torch.stack(images))


def save_npz(scene: Scene, path: str) -> str:
    np.savez(
        path,
        images=scene.images.numpy(),
        poses=scene.c2w.numpy(),
        focal=np.float32(scene.intrinsics[0, 0]),
        near=np.float32(scene.near),
        far=np.float32(scene.far),
    )
    return path


ITERS = 200


def small_config(**kw) -> Config:
    """A few-second CPU config for the 32x32 boxes scene."""
    cfg = tiny().replace(
        field=FieldConfig(
            GridConfig(6, 2, 14, 8, 128), density_width=32, bottleneck=15, color_width=32, color_depth=1, dir_degree=2
        ),
        proposals=[ProposalConfig(GridConfig(4, 1, 12, 8, 64), width=16)],
        n_samples=(24, 16),
        iterations=ITERS,
        batch_rays=512,
        warmup_steps=10,
        lr_final=3e-3,
        freq_reg_fraction=0.0,
        occlusion_weight=0.0,
        entropy_weight=0.0,
        checkpoint_every=0,
        eval_chunk=2048,
    )
    return cfg.replace(**kw)
