"""Sparse depth supervision from the training views' own triangulated points (DS-NeRF's idea,
Deng et al. 2022, with our matching and triangulation: :mod:`reconfusion.geometry`).

Each observation (a training pixel whose point was triangulated) becomes a ray with a target
normalized distance ``s*`` and its standard deviation ``sigma_s``, both in the renderer's ``s`` space
(:class:`rfkernels.SpaceMap` of the run's spacing over the ray's ``[near, far]``; in NDC, ``t`` is
the NDC ray parameter, so the target goes through the same NDC map as the rays). The loss is the
cross-entropy between the target's Gaussian, integrated over each rendered bin, and the rendered
weights: DS-NeRF's KL term up to the target's own entropy, defined for any bin layout (a sharp
target between two samples still pulls). ``"l2"``: the uncertainty-weighted squared error of the
expected ``s`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import rfkernels

LOSSES = ("kl", "l2")


def gaussian_bin_mass(s_edges: torch.Tensor, s_target: torch.Tensor, s_sigma: torch.Tensor) -> torch.Tensor:
    """Mass of ``N(s_target, s_sigma^2)`` in each bin of ``s_edges`` ``[R, S+1]`` -> ``[R, S]``."""
    z = (s_edges - s_target[:, None]) / (s_sigma[:, None] * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + torch.erf(z))
    return cdf[:, 1:] - cdf[:, :-1]


def depth_cross_entropy(
    s_edges: torch.Tensor, weights: torch.Tensor, s_target: torch.Tensor, s_sigma: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """``-sum_k mass_k log(w_k + eps)`` per ray ``[R]`` (weights ``[R, S]``, edges ``[R, S+1]``)."""
    mass = gaussian_bin_mass(s_edges.detach(), s_target, s_sigma)
    return -(mass * torch.log(weights + eps)).sum(-1)


def depth_l2(depth_s: torch.Tensor, s_target: torch.Tensor, s_sigma: torch.Tensor) -> torch.Tensor:
    """``((depth - s*) / sigma)^2`` per ray ``[R]``."""
    return ((depth_s - s_target) / s_sigma).square()


@dataclass
class DepthTargets:
    """Rays ``[M]`` through observed pixels (a :class:`~reconfusion.rays.RayBundle`), their target
    ``s`` and its standard deviation, and the training image's colour there ``[M, 3]`` (so the rays
    can stand in for part of a step's data batch)."""

    rays: object
    s: torch.Tensor
    sigma: torch.Tensor
    colors: torch.Tensor

    def __len__(self) -> int:
        return int(self.s.shape[0])


def _ray_parameter(scene, rays, world_rays, distance: torch.Tensor) -> torch.Tensor:
    """The renderer's ray parameter ``t`` ``[M]`` of the points ``distance`` along the unit world rays
    ``world_rays = (origins, unit directions)``: the distance itself in metric spaces; in NDC the
    parameter along the NDC ray ``rays`` that reaches the point's NDC depth ``1 + 2 near / z``
    (:func:`reconfusion.rays.world_to_ndc`)."""
    if scene.space != "ndc":
        return distance
    o, d = world_rays
    z_ndc = 1.0 + 2.0 * scene.near / (o[:, 2] + distance * d[:, 2])
    return (z_ndc - rays.origins[:, 2].double()) / rays.directions[:, 2].double()


def pixel_colors(images: torch.Tensor, view: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear colours ``[M, 3]`` of ``images`` ``[N, H, W, 3]`` at sub-pixel ``pixels`` ``[M, 2]``
    (x, y; a pixel's centre at ``+0.5``, as rays are generated) of images ``view`` ``[M]``."""
    H, W = images.shape[1:3]
    grid = pixels.float() / pixels.new_tensor([W, H]).float() * 2.0 - 1.0  # [M, 2]
    out = torch.empty(len(view), 3)
    for v in view.unique().tolist():
        sel = view == v
        img = images[v].permute(2, 0, 1)[None]  # [1, 3, H, W]
        g = grid[sel][None, :, None, :]  # [1, m, 1, 2]
        sampled = torch.nn.functional.grid_sample(img, g, mode="bilinear", padding_mode="border", align_corners=False)
        out[sel] = sampled[0, :, :, 0].T
    return out


def near_backdrop(images: torch.Tensor, background: str, view: torch.Tensor, pixels: torch.Tensor, margin: int):
    """``[M]`` bool: a backdrop-coloured pixel (white or black ``background``; none for another) lies
    within ``margin`` pixels of each observation: keypoints on a silhouette against the backdrop are
    occluding contours, different surface points in different views, so their triangulated depth is wrong."""
    from ..data.space import backdrop_pixels

    none = torch.zeros(len(view), dtype=torch.bool)
    if margin <= 0:
        return none
    views, slot = view.long().unique(return_inverse=True)  # only the observed images, not every test view
    mask = backdrop_pixels(images[views], background)
    if mask is None:
        return none
    grown = torch.nn.functional.max_pool2d(mask.float()[:, None], 2 * margin + 1, stride=1, padding=margin)[:, 0] > 0
    H, W = images.shape[1:3]
    col = pixels[:, 0].long().clamp(0, W - 1)
    row = pixels[:, 1].long().clamp(0, H - 1)
    return grown[slot, row, col]


def depth_targets(scene, points, spacing: str, min_sigma: float, backdrop_margin: int = 0) -> DepthTargets:
    """Targets in ``s`` space for ``points`` (:class:`~reconfusion.geometry.SparsePoints`) of ``scene``
    under the run's resolved ``spacing``; ``sigma_s`` is the central difference of ``s`` at
    ``distance -+ sigma``, at least ``min_sigma``; targets outside ``(0, 1)`` (before the near or
    beyond the far plane) are dropped, and with ``backdrop_margin`` those near the backdrop
    (:func:`near_backdrop`)."""
    from ..rays import generate_rays

    c2w, intr = scene.c2w[points.view], scene.intrinsics[points.view]
    x, y = points.pixels[:, 0], points.pixels[:, 1]
    rays = scene.rays(c2w, intr, x, y)
    o, d = generate_rays(c2w.double(), intr.double(), x.double(), y.double())
    world = (o, d / d.norm(dim=-1, keepdim=True))
    smap = rfkernels.SpaceMap(spacing, rays.near.double(), rays.far.double())
    dist, sig = points.distance.double(), points.sigma.double()
    near_d = (dist - sig).clamp_min(1e-6)
    s, s_lo, s_hi = (smap.t_to_s(_ray_parameter(scene, rays, world, v)) for v in (dist, near_d, dist + sig))
    sigma = (0.5 * (s_hi - s_lo).abs()).nan_to_num(1.0).clamp_min(min_sigma)
    keep = torch.isfinite(s) & (s > 0) & (s < 1)
    keep &= ~near_backdrop(scene.images, scene.background, points.view, points.pixels, backdrop_margin)
    colors = pixel_colors(scene.images, points.view, points.pixels)
    return DepthTargets(rays[keep], s[keep].float(), sigma[keep].float(), colors[keep])


def fade_factor(n_points: int, full_points: int) -> float:
    """The term's weight factor ``min(1, n_points / full_points)`` (1 for ``full_points`` 0): a scene
    with few triangulated points (little texture) leans less on them, and none leaves the term off."""
    return 1.0 if full_points <= 0 else min(1.0, n_points / full_points)


def sparse_depth_value(out, s_target, s_sigma, kind: str = "kl", proposals: bool = True) -> torch.Tensor:
    """The scalar loss of one render ``out`` (:class:`~reconfusion.field.zipnerf.RenderOutput`) of
    the target rays: mean over rays; with ``proposals``, the proposal histograms' cross-entropies
    are added (``"kl"`` only)."""
    if kind == "l2":
        return depth_l2(out.depth, s_target, s_sigma).mean()
    loss = depth_cross_entropy(out.s_edges, out.weights, s_target, s_sigma).mean()
    if proposals:
        for edges, w in out.proposals:
            loss = loss + depth_cross_entropy(edges, w, s_target, s_sigma).mean()
    return loss


__all__ = [
    "LOSSES",
    "DepthTargets",
    "depth_cross_entropy",
    "depth_l2",
    "depth_targets",
    "fade_factor",
    "gaussian_bin_mass",
    "near_backdrop",
    "pixel_colors",
    "sparse_depth_value",
]
