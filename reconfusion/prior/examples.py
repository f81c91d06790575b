"""Training examples for the prior: square crops at the prior's resolution, (target, inputs) draws.

One example = a target view + 1..``max_views`` input views of one scene, centre-cropped to a square
and resized to the prior's image size, intrinsics adjusted to match.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from .depths import depth_bounds
from .model import Cameras


def square_resize(images: torch.Tensor, intrinsics: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-crop ``[N, H, W, 3]`` to a square and resize to ``size``: -> (``[N, 3, size, size]``,
    K ``[N, 3, 3]`` adjusted)."""
    N, H, W, _ = images.shape
    s = min(H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    x = images[:, y0: y0 + s, x0: x0 + s].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    r = size / s
    fx, fy, cx, cy = intrinsics.float().unbind(-1)
    K = torch.zeros(N, 3, 3)
    K[:, 0, 0], K[:, 1, 1] = fx * r, fy * r
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (cx - x0) * r, (cy - y0) * r, 1.0
    return x, K


class ExampleSampler:
    """Random (target, inputs) examples from a list of :class:`~reconfusion.data.scene.Scene`.

    Each scene is resized once. ``sample(batch_size, n_views)`` -> dict with ``target [B,3,S,S]``,
    ``inputs [B,V,3,S,S]`` and :class:`Cameras` fields.
    """

    def __init__(self, scenes, image_size: int, seed: int = 0):
        if not scenes:
            raise ValueError("`scenes` is empty")
        self.data = []
        for sc in scenes:
            if sc.n_images < 2:
                raise ValueError(f"scene {sc.name!r} has {sc.n_images} image(s); need >= 2 for (inputs, target)")
            imgs, K = square_resize(sc.images, sc.intrinsics, image_size)
            self.data.append((imgs, K, sc.c2w.float(), depth_bounds(sc.c2w, sc.near, sc.far, sc.space, sc.focus_depth)))
        self.rng = random.Random(seed)

    def sample(self, batch_size: int, n_views: int) -> dict:
        out = {k: [] for k in ("target", "inputs", "input_c2w", "input_K", "target_c2w", "target_K", "near", "far",
                               "mid")}
        for _ in range(batch_size):
            imgs, K, c2w, (near, mid, far) = self.data[self.rng.randrange(len(self.data))]
            ids = self.rng.sample(range(imgs.shape[0]), min(n_views + 1, imgs.shape[0]))
            while len(ids) < n_views + 1:  # tiny scenes: repeat input views
                ids.append(ids[1 + len(ids) % max(1, len(ids) - 1)])
            tgt, inp = ids[0], ids[1:]
            for k, v in (("target", imgs[tgt]), ("inputs", imgs[inp]), ("input_c2w", c2w[inp]), ("input_K", K[inp]),
                         ("target_c2w", c2w[tgt]), ("target_K", K[tgt]), ("near", torch.tensor(near)),
                         ("far", torch.tensor(far)), ("mid", torch.tensor(mid))):
                out[k].append(v)
        return {k: torch.stack(v) for k, v in out.items()}


def batch_cameras(batch: dict) -> Cameras:
    return Cameras(batch["input_c2w"], batch["input_K"], batch["target_c2w"], batch["target_K"], batch["near"],
                   batch["far"], batch.get("mid"))


__all__ = ["ExampleSampler", "batch_cameras", "square_resize"]
