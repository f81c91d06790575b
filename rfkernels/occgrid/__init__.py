"""Occupancy-grid ray marching (op family 5): ray/box intersection and traversal of multi-level
binary occupancy grids (Instant-NGP style empty-space skipping), nerfacc 0.5.3's semantics.

Output: packed intervals in the library's layout (``offsets [R+1]``, :mod:`rfkernels._packing`).
No gradients (outputs are intervals and indices). The ``torch`` backend is :mod:`.reference`
(vectorized over rays); ``triton`` and ``cuda`` march each ray in a kernel, counting intervals in a
first pass and writing them at their packed offsets in a second.

Where each piece lives: :mod:`.contract` (the marching rule, ``OccgridKernels``, ``Traversal``,
constants), :mod:`.api` (public functions + checks), :mod:`.ops` (registered operators),
:mod:`.adapters` (``Reference``/``Fused``), :mod:`.segments` (per-ray bookkeeping shared by the
reference and the Triton launcher), :mod:`.reference` / :mod:`.triton` / :mod:`.cuda` (the backends).
"""

from __future__ import annotations

from .. import _dispatch
from .adapters import Fused, Reference
from .api import ray_aabb_intersect, traverse_grids
from .contract import OccgridKernels, Traversal

__all__ = ["Traversal", "ray_aabb_intersect", "traverse_grids"]

_dispatch.register_family(
    "occgrid",
    OccgridKernels,
    torch=Reference(),
    fused=Fused,
    triton="rfkernels.occgrid.triton",
    cuda="rfkernels.occgrid.cuda",
)
