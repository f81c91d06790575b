"""CUDA backend for occupancy-grid marching: thin wrappers over the extension built from csrc/occgrid/.

Implements :class:`rfkernels.occgrid.contract.OccgridKernels` (shapes and dtypes are documented
there), as :mod:`.triton` does."""

from __future__ import annotations

from .._cuda_ext import module


def intersect(rays_o, rays_d, aabbs, near, far, miss):
    """:meth:`OccgridKernels.intersect` via the extension's ``occgrid`` binding."""
    return tuple(module().occgrid_intersect(rays_o, rays_d, aabbs, float(near), float(far), float(miss)))


def traverse(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
    """:meth:`OccgridKernels.traverse` via the extension's ``occgrid`` binding (count, offsets, fill)."""
    return tuple(
        module().occgrid_traverse(
            rays_o, rays_d, binaries, aabbs, near, far, rays_mask, float(step_size), float(cone_angle), int(max_steps)
        )
    )
