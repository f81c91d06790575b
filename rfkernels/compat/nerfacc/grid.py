"""nerfacc.grid: ray/box intersection and multi-level occupancy-grid traversal on the rfkernels
``occgrid`` family (fused kernels on GPU, the vectorized torch reference on CPU), plus the private
helpers nerfacc's own code and tests import (``_ray_aabb_intersect``, ``_enlarge_aabb``, ``_query``).

``traverse_grids`` returns nerfacc's containers: ``RayIntervals`` with shared edges between touching
intervals (``is_left``/``is_right``), ``RaySamples`` at the interval midpoints, and the terminate
planes. ``over_allocate=True`` gives the same (compact) result: the kernels count before they write,
so there is nothing to over-allocate; ``is_valid`` is all True. Precomputed ``t_sorted``/``t_indices``/
``hits`` are accepted and recomputed (they are a function of the rays and boxes).
"""

from __future__ import annotations

import torch
from torch import Tensor

import rfkernels

from .data_specs import RayIntervals, RaySamples

INF = float("inf")


@torch.no_grad()
def ray_aabb_intersect(
    rays_o: Tensor,
    rays_d: Tensor,
    aabbs: Tensor,
    near_plane: float = -INF,
    far_plane: float = INF,
    miss_value: float = INF,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(t_mins, t_maxs, hits)`` ``[n_rays, m]`` of every ray against every box (nerfacc's kernel)."""
    return rfkernels.ray_aabb_intersect(rays_o, rays_d, aabbs, near_plane, far_plane, miss_value)


def _ray_aabb_intersect(
    rays_o: Tensor,
    rays_d: Tensor,
    aabbs: Tensor,
    near_plane: float = -INF,
    far_plane: float = INF,
    miss_value: float = INF,
) -> tuple[Tensor, Tensor, Tensor]:
    """nerfacc's plain-PyTorch intersection: slab test with ``hit = t_max > t_min and t_max > 0``,
    both ends clamped to ``[near_plane, far_plane]``."""
    lo = (aabbs[None, :, :3] - rays_o[:, None]) / rays_d[:, None]
    hi = (aabbs[None, :, 3:] - rays_o[:, None]) / rays_d[:, None]
    t_mins = torch.minimum(lo, hi).amax(dim=-1)
    t_maxs = torch.maximum(lo, hi).amin(dim=-1)
    hits = (t_maxs > t_mins) & (t_maxs > 0)
    t_mins = t_mins.clamp(min=near_plane, max=far_plane)
    t_maxs = t_maxs.clamp(min=near_plane, max=far_plane)
    missed = torch.full_like(t_mins, miss_value)
    return torch.where(hits, t_mins, missed), torch.where(hits, t_maxs, missed), hits


def _shared_edges(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int) -> RayIntervals:
    """Packed intervals -> nerfacc's edge list: touching intervals of a ray share their common edge."""
    N = t_starts.shape[0]
    new_run = torch.ones(N, dtype=torch.bool, device=t_starts.device)
    if N > 1:
        new_run[1:] = (ray_indices[1:] != ray_indices[:-1]) | (t_starts[1:] != t_ends[:-1])
    right = torch.arange(N, device=t_starts.device) + torch.cumsum(new_run, 0)  # each interval's right edge
    n_edges = N + int(new_run.sum())
    vals = t_starts.new_empty(n_edges)
    vals[right] = t_ends
    vals[right[new_run] - 1] = t_starts[new_run]
    is_left = torch.zeros(n_edges, dtype=torch.bool, device=t_starts.device)
    is_right = torch.zeros_like(is_left)
    is_left[right - 1] = True
    is_right[right] = True
    edge_rays = torch.empty(n_edges, dtype=torch.long, device=t_starts.device)
    edge_rays[right] = ray_indices
    edge_rays[right - 1] = ray_indices
    counts = torch.bincount(edge_rays, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    return RayIntervals(vals, torch.stack([starts, counts], -1), edge_rays, is_left, is_right)


@torch.no_grad()
def traverse_grids(
    rays_o: Tensor,
    rays_d: Tensor,
    binaries: Tensor,
    aabbs: Tensor,
    near_planes: Tensor | None = None,
    far_planes: Tensor | None = None,
    step_size: float | None = 1e-3,
    cone_angle: float | None = 0.0,
    traverse_steps_limit: int | None = None,
    over_allocate: bool | None = False,
    rays_mask: Tensor | None = None,
    t_sorted: Tensor | None = None,
    t_indices: Tensor | None = None,
    hits: Tensor | None = None,
) -> tuple[RayIntervals, RaySamples, Tensor]:
    """Ray marching through multi-level binary grids (:func:`rfkernels.traverse_grids`).

    Returns ``(intervals, samples, terminate_planes)`` as nerfacc 0.5.3 does."""
    if over_allocate and not (traverse_steps_limit and traverse_steps_limit > 0):
        raise ValueError("traverse_steps_limit must be set if over_allocate is True.")
    limit = traverse_steps_limit if traverse_steps_limit is not None and traverse_steps_limit > 0 else None
    out = rfkernels.traverse_grids(
        rays_o,
        rays_d,
        binaries,
        aabbs,
        near_planes=near_planes,
        far_planes=far_planes,
        step_size=1e-3 if step_size is None else step_size,
        cone_angle=0.0 if cone_angle is None else cone_angle,
        traverse_steps_limit=limit,
        rays_mask=rays_mask,
    )
    n_rays = rays_o.shape[0]
    counts = out.offsets[1:] - out.offsets[:-1]
    samples = RaySamples(
        vals=(out.t_starts + out.t_ends) * 0.5,
        packed_info=torch.stack([out.offsets[:-1], counts], -1),
        ray_indices=out.ray_indices,
        is_valid=torch.ones_like(out.ray_indices, dtype=torch.bool),
    )
    intervals = _shared_edges(out.t_starts, out.t_ends, out.ray_indices, n_rays)
    return intervals, samples, out.terminate_planes


def _enlarge_aabb(aabb: Tensor, factor: float) -> Tensor:
    """A ``[6]`` box scaled by ``factor`` about its centre."""
    centre, half = (aabb[:3] + aabb[3:]) / 2, (aabb[3:] - aabb[:3]) / 2
    return torch.cat([centre - half * factor, centre + half * factor])


def _query(x: Tensor, data: Tensor, base_aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Values of multi-level grids ``data [m, X, Y, Z]`` (level i spans ``base_aabb`` scaled by 2**i)
    at points ``x [N, 3]``: ``(values [N] (0 outside every level), inside [N] bool)``."""
    lo, hi = base_aabb[:3], base_aabb[3:]
    u = (x - lo) / (hi - lo)  # the base level is the unit cube
    # level = 1 + the binary exponent of the distance from the centre (>= 0; at least 0.1 so that the
    # exponent of a point at the centre is that of 0.1, not 0)
    extent = ((u - 0.5).abs().amax(dim=-1)).clamp(min=0.1)
    level = (torch.frexp(extent).exponent.long() + 1).clamp(min=0)
    inside = level < data.shape[0]
    u = (u - 0.5) / (2.0**level)[:, None] + 0.5
    res = torch.tensor(data.shape[1:], device=x.device)
    idx = (u * res).long().minimum(res - 1)
    level = level.clamp(max=data.shape[0] - 1)
    return data[level, idx[:, 0], idx[:, 1], idx[:, 2]] * inside, inside


__all__ = ["ray_aabb_intersect", "traverse_grids"]
