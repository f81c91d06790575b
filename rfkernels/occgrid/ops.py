"""The fused occgrid backends as registered torch operators (pattern: :mod:`rfkernels._operators`).
Traversal outputs are intervals and indices: no gradients, so no backward operators.

- ``rfkernels::occgrid_intersect`` (rays_o, rays_d, aabbs, near, far, miss, backend)
  -> (t_mins [R, L], t_maxs [R, L], hits [R, L] bool).
- ``rfkernels::occgrid_traverse`` (rays_o, rays_d, binaries, aabbs, near [R], far [R], rays_mask [R],
  step_size, cone_angle, max_steps, backend) -> (offsets [R+1] int64, t_starts [N], t_ends [N],
  terminate_planes [R]); N depends on the data (a dynamic size when traced).
"""

from __future__ import annotations

import torch

from .. import _operators as reg

Tensor = torch.Tensor


@reg.define("occgrid_intersect")
def intersect(
    rays_o: Tensor, rays_d: Tensor, aabbs: Tensor, near: float, far: float, miss: float, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(reg.kernels("occgrid", backend).intersect(rays_o, rays_d, aabbs, near, far, miss))


@intersect.register_fake
def _(rays_o, rays_d, aabbs, near, far, miss, backend):
    R, L = rays_o.shape[0], aabbs.shape[0]
    return rays_o.new_empty(R, L), rays_o.new_empty(R, L), rays_o.new_empty(R, L, dtype=torch.bool)


@reg.define("occgrid_traverse")
def traverse(
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
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    kernels = reg.kernels("occgrid", backend)
    out = kernels.traverse(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps)
    return reg.unaliased(out, rays_o, rays_d, binaries, aabbs, near, far, rays_mask)


@traverse.register_fake
def _(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps, backend):
    R = rays_o.shape[0]
    n = torch.library.get_ctx().new_dynamic_size()
    offsets = rays_o.new_empty(R + 1, dtype=torch.int64)
    return offsets, rays_o.new_empty(n), rays_o.new_empty(n), rays_o.new_empty(R)
