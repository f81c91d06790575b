"""Covisibility: density only where at least two training cameras look.

With few views far apart (three views of an object 120 degrees apart), each view's content can be
explained by a surface just in front of its own camera, where no other training camera looks: the
training views are fitted, and every other viewpoint sees a copy of the object in the wrong place.
A point that lies inside fewer than ``min_views`` training frusta is unconstrained by multi-view
consistency; this term is the rendered weight the batch's rays put on such points (mean over rays
of ``sum_k w_k [covisible_k < min_views]``), so the model explains each pixel with a surface where
the views overlap, or with the background. It counts frusta (in front of the camera and inside its
image), not visibility: a surface seen by one view and hidden by occlusion from the others is kept.
"""

from __future__ import annotations

import torch

import rfkernels
from rfkernels.gather.reference import camera_coords, project

from ..rays import ndc_to_world


def frustum_counts(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """How many cameras have each point in front and inside their image: points ``[P, 3]`` (world),
    world-to-camera ``w2c`` ``[V, 4, 4]`` (OpenGL axes), ``K`` ``[V, 3, 3]`` -> ``[P]`` int64."""
    cam = camera_coords(points[None], w2c[None])  # [1, P, V, 3]
    _, valid = project(cam, K[None], (height, width), "opengl", 1e-6)
    return valid[0].sum(-1)


def sample_world_points(scene, rays, s_mid: torch.Tensor, spacing: str) -> torch.Tensor:
    """World points ``[R, S, 3]`` at the normalized distances ``s_mid`` ``[R, S]`` (in ``(0, 1)``) of
    ``rays`` of ``scene`` under ``spacing``; NDC points are mapped back to the world."""
    t = rfkernels.SpaceMap(spacing, rays.near, rays.far).s_to_t(s_mid).to(s_mid.dtype)
    x = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]
    if scene.space == "ndc":
        ref = scene.intrinsics[0].to(x.device)
        x = ndc_to_world(x.clamp(max=1.0 - 1e-6), ref, scene.width, scene.height, near=scene.near)
    return x


class TrainingFrusta:
    """The training cameras of ``scene`` on ``device``: :meth:`counts` of world points ``[..., 3]``."""

    def __init__(self, scene, device):
        ids = torch.tensor(scene.train_ids, dtype=torch.long)
        c2w, intr = scene.c2w[ids].double(), scene.intrinsics[ids].double()
        K = torch.zeros(len(ids), 3, 3, dtype=torch.float64)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = *intr.unbind(-1), 1.0
        self.w2c = torch.linalg.inv(c2w).float().to(device)
        self.K = K.float().to(device)
        self.height, self.width = scene.height, scene.width

    def counts(self, points: torch.Tensor) -> torch.Tensor:
        flat = points.reshape(-1, 3)
        return frustum_counts(flat, self.w2c, self.K, self.height, self.width).view(points.shape[:-1])


def covisibility_value(out, rays, scene, frusta: TrainingFrusta, spacing: str, min_views: int = 2) -> torch.Tensor:
    """Mean over the rays of the rendered weight on samples inside fewer than ``min_views`` training
    frusta; ``out`` is the rays' :class:`~reconfusion.field.zipnerf.RenderOutput`."""
    s_edges = out.s_edges.detach()
    s_mid = 0.5 * (s_edges[:, :-1] + s_edges[:, 1:])
    with torch.no_grad():
        lonely = frusta.counts(sample_world_points(scene, rays, s_mid, spacing)) < min_views
    return (out.weights * lonely).sum(-1).mean()


__all__ = ["TrainingFrusta", "covisibility_value", "frustum_counts", "sample_world_points"]
