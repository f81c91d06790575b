"""The occgrid contract: what a fused backend implements, the public output type, and the constants
every backend (reference, Triton, CUDA) shares.

The marching rule (identical on every backend, nerfacc 0.5.3's for nested grids):

1. Per ray and level, the slab intersection ``[t_min, t_max]`` with the level's aabb (nerfacc's
   arithmetic: ``inv = 1 / d``, per-axis entry/exit ordered by the sign of ``inv``, a hit needs
   ``t_max > 0``). The ``2L`` values are sorted (stable: entries before exits on ties); each
   consecutive pair is a *segment* owned by the innermost level the ray is inside, clipped to
   ``[near, far]``; empty segments are skipped.
2. Each segment is walked cell by cell with a DDA (3D Bresenham in t, started ``DDA_EPS`` inside the
   segment): every visited cell has an exit ``min(tdist)`` clipped to the segment end and an
   occupancy bit from ``binaries[level]``. Exits are made non-decreasing by a running maximum.
3. The ray marches ``t_0 = near``, ``t_{k+1} = t_k + dt(t_k)``, ``dt(t) = clamp(t * cone_angle,
   step_size, DT_MAX)``, with midpoint ``m_k = t_k + dt / 2``. Step ``k`` belongs to the first visited
   cell whose (running-max) exit is ``> m_k``; it becomes the interval ``[t_k, t_{k+1}]`` when that
   cell is occupied and ``m_k >= `` the start of the cell's segment. The march ends after the last
   cell (or at ``traverse_steps_limit`` intervals, or if ``t`` stops increasing in float32).

Differences from nerfacc 0.5.3 (both only where nerfacc's rule depends on float edge cases or on
the grid): with ``cone_angle > 0`` nerfacc freezes ``dt`` while it skips an empty span, here every
step is ``dt(t_k)`` so the step positions never depend on the grid; and a step whose midpoint falls
in a gap between segments (disjoint aabbs, or a DDA that ends before its segment) is always skipped.
``step_size <= 0`` (nerfacc's per-cell intervals) is not provided.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

Tensor = torch.Tensor

DDA_EPS = 1.0e-6  # the DDA locates its first/last cell this far inside the segment (nerfacc's eps)
DT_MAX = 1.0e10  # upper clamp of the cone-angle step length
MAX_LEVELS = 8  # grid levels a fused kernel handles (per-ray arrays of 2 * MAX_LEVELS intersections)


class Traversal(NamedTuple):
    """Packed intervals of a grid traversal (the library's packed layout, :mod:`rfkernels._packing`)."""

    t_starts: torch.Tensor  # [N] interval starts, sorted per ray
    t_ends: torch.Tensor  # [N] interval ends (t_starts + dt)
    ray_indices: torch.Tensor  # [N] int64 ray of each interval
    offsets: torch.Tensor  # [R+1] int64: ray r owns [offsets[r], offsets[r+1])
    terminate_planes: torch.Tensor  # [R] where each ray's march stopped (near plane for masked rays)


class OccgridKernels(Protocol):
    """What a fused occgrid backend (``triton.py``, ``cuda.py``) provides. Inputs are contiguous:
    ``rays_o``/``rays_d`` ``[R, 3]``, ``aabbs`` ``[L, 6]``, ``near``/``far`` ``[R]`` float32;
    ``binaries`` ``[L, X, Y, Z]`` bool; ``rays_mask`` ``[R]`` bool. No gradients (outputs are
    intervals and indices)."""

    def intersect(
        self, rays_o: Tensor, rays_d: Tensor, aabbs: Tensor, near: float, far: float, miss: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> t_mins [R, L], t_maxs [R, L] float32 (``miss`` where missed), hits [R, L] bool."""

    def traverse(
        self,
        rays_o: Tensor,
        rays_d: Tensor,
        binaries: Tensor,
        aabbs: Tensor,
        near: Tensor,
        far: Tensor,
        rays_mask: Tensor,
        step_size: float,
        cone_angle: float,
        max_steps: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> offsets [R+1] int64, t_starts [N], t_ends [N], terminate_planes [R] (float32).
        ``max_steps <= 0``: no limit."""
