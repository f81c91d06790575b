"""What the registry stores for occgrid: :class:`Reference` (the ``torch`` backend) and :class:`Fused`
(a triton/cuda :class:`~.contract.OccgridKernels` object behind the :mod:`.ops` operators). Both take
checked float32 contiguous tensors (:mod:`.api` converts) and return the contract's tuples."""

from __future__ import annotations

from . import ops, reference
from .contract import OccgridKernels


class Reference:
    """The ``torch`` backend: :mod:`.reference` (vectorized over rays, float32)."""

    def intersect(self, rays_o, rays_d, aabbs, near, far, miss):
        return reference.intersect(rays_o, rays_d, aabbs, near, far, miss)

    def traverse(self, rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
        return reference.traverse(
            rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps
        )


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`OccgridKernels` behind the :mod:`.ops` operators."""

    def __init__(self, kernels: OccgridKernels, name: str):
        self.kernels, self.name = kernels, name

    def intersect(self, rays_o, rays_d, aabbs, near, far, miss):
        return ops.intersect(rays_o, rays_d, aabbs, near, far, miss, self.name)

    def traverse(self, rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
        return ops.traverse(
            rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps, self.name
        )
