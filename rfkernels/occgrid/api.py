"""The public occgrid functions and their argument checks: each validates once (shapes, dtypes,
devices always; values while validation is on, :mod:`rfkernels._checks`), converts to the kernels'
float32 contiguous layout, then calls the backend the registry picks."""

from __future__ import annotations

import math

import torch

from .. import _checks, _dispatch, _packing
from .contract import MAX_LEVELS, Traversal

INF = float("inf")


def _f32(x: float) -> float:
    """A Python float rounded to float32 (the kernels compute in float32)."""
    return torch.tensor(x, dtype=torch.float32).item()


def _rays(rays_o, rays_d):
    _checks.check_tensor("rays_o", rays_o, ndim=2)
    if rays_o.shape[1] != 3:
        raise ValueError(f"`rays_o` must have shape [n_rays, 3], got {list(rays_o.shape)}")
    _checks.check_tensor("rays_d", rays_d, shape=[rays_o.shape[0], 3], device=rays_o.device)
    validate = _checks.reads_values(rays_o, rays_d)
    _checks.check_finite("rays_o", rays_o, validate)
    _checks.check_finite("rays_d", rays_d, validate)
    return rays_o.float().contiguous(), rays_d.float().contiguous()


def _aabbs(aabbs, device, max_levels: int | None = None):
    _checks.check_tensor("aabbs", aabbs, ndim=2, device=device)
    if aabbs.shape[1] != 6:
        raise ValueError(
            f"`aabbs` must have shape [n_aabbs, 6] (xmin, ymin, zmin, xmax, ymax, zmax), got {list(aabbs.shape)}"
        )
    if max_levels is not None and not 1 <= aabbs.shape[0] <= max_levels:
        raise ValueError(f"`aabbs` must hold 1..{max_levels} grid levels, got {aabbs.shape[0]}")
    if _checks.reads_values(aabbs) and aabbs.numel():
        _checks.check_finite("aabbs", aabbs, True)
        if not bool((aabbs[:, 3:] > aabbs[:, :3]).all()):
            raise ValueError("`aabbs` must have max > min on every axis")
    return aabbs.float().contiguous()


def _plane(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a float, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"`{name}` must not be NaN")
    return v


def ray_aabb_intersect(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    aabbs: torch.Tensor,
    near_plane: float = -INF,
    far_plane: float = INF,
    miss_value: float = INF,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab intersection of every ray with every axis-aligned box.

    Args:
        rays_o, rays_d: ``[R, 3]`` origins and directions (finite; a zero component is allowed).
        aabbs: ``[M, 6]`` boxes ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        near_plane, far_plane: ``t_min`` is raised to ``near_plane``, ``t_max`` lowered to ``far_plane``.
        miss_value: written to ``t_mins``/``t_maxs`` where a ray misses a box.
    Returns:
        ``(t_mins [R, M], t_maxs [R, M], hits [R, M] bool)``; a hit needs ``t_max > 0``. Float32.
    """
    rays_o, rays_d = _rays(rays_o, rays_d)
    aabbs = _aabbs(aabbs, rays_o.device)
    near, far = _f32(_plane("near_plane", near_plane)), _f32(_plane("far_plane", far_plane))
    try:
        miss = _f32(float(miss_value))
    except (TypeError, ValueError):
        raise ValueError(f"`miss_value` must be a float, got {miss_value!r}") from None
    impl = _dispatch.implementation("occgrid", backend, rays_o)
    return tuple(impl.intersect(rays_o, rays_d, aabbs, near, far, miss))


def _per_ray(name, t, n_rays, device, dtypes=_checks.FLOAT_DTYPES):
    if t is None:
        return None
    return _checks.check_tensor(name, t, shape=[n_rays], dtypes=dtypes, device=device)


def traverse_grids(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    binaries: torch.Tensor,
    aabbs: torch.Tensor,
    near_planes: torch.Tensor | None = None,
    far_planes: torch.Tensor | None = None,
    step_size: float = 1e-3,
    cone_angle: float = 0.0,
    traverse_steps_limit: int | None = None,
    rays_mask: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> Traversal:
    """March rays through multi-level occupancy grids (the rule: :mod:`rfkernels.occgrid.contract`).

    Args:
        rays_o, rays_d: ``[R, 3]`` origins and (normalized) directions.
        binaries: ``[L, X, Y, Z]`` bool occupancy of each level (1 <= L <= 8).
        aabbs: ``[L, 6]`` box of each level; where levels overlap the earlier (inner) one decides.
        near_planes, far_planes: ``[R]`` where marching starts / ends (default 0 / inf).
        step_size: > 0, the step length (``cone_angle = 0``) or its lower bound.
        cone_angle: >= 0; steps grow as ``t * cone_angle``, clamped to ``[step_size, 1e10]``.
        traverse_steps_limit: at most this many intervals per ray (``None``: no limit); a ray that
            reaches it stops there (``terminate_planes``), so a second call can resume it.
        rays_mask: ``[R]`` bool; rays with False get no intervals.
    Returns:
        :class:`~rfkernels.occgrid.contract.Traversal` (packed ``t_starts``/``t_ends``/``ray_indices``
        with ``offsets [R+1]``, and ``terminate_planes [R]``), in ``rays_o``'s dtype.
    """
    out_dtype = rays_o.dtype if isinstance(rays_o, torch.Tensor) else torch.float32
    rays_o, rays_d = _rays(rays_o, rays_d)
    R, device = rays_o.shape[0], rays_o.device
    aabbs = _aabbs(aabbs, device, MAX_LEVELS)
    _checks.check_tensor("binaries", binaries, ndim=4, dtypes=(torch.bool,), device=device)
    if binaries.shape[0] != aabbs.shape[0] or min(binaries.shape[1:]) < 1:
        raise ValueError(
            f"`binaries` must have shape [n_levels={aabbs.shape[0]}, resx, resy, resz] (each >= 1), "
            f"got {list(binaries.shape)}"
        )
    near = _per_ray("near_planes", near_planes, R, device)
    far = _per_ray("far_planes", far_planes, R, device)
    mask = _per_ray("rays_mask", rays_mask, R, device, dtypes=(torch.bool,))
    validate = _checks.reads_values(near, far)
    if near is not None:
        _checks.check_finite("near_planes", near, validate)  # the march starts there
    if far is not None:
        _checks.check_no_nan("far_planes", far, validate)
    step = _checks.check_scalar("step_size", step_size, 0.0, INF)
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"`step_size` must be a finite float > 0, got {step_size!r}")
    cone = _checks.check_scalar("cone_angle", cone_angle, 0.0, INF)
    if not math.isfinite(cone):
        raise ValueError(f"`cone_angle` must be a finite float >= 0, got {cone_angle!r}")
    if traverse_steps_limit is None:
        limit = 0
    elif (
        isinstance(traverse_steps_limit, bool) or not isinstance(traverse_steps_limit, int) or traverse_steps_limit < 1
    ):
        raise ValueError(f"`traverse_steps_limit` must be None or an int >= 1, got {traverse_steps_limit!r}")
    else:
        limit = traverse_steps_limit
    near = torch.zeros(R, device=device) if near is None else near.float().contiguous()
    far = torch.full((R,), INF, device=device) if far is None else far.float().contiguous()
    mask = torch.ones(R, dtype=torch.bool, device=device) if mask is None else mask.contiguous()
    impl = _dispatch.implementation("occgrid", backend, rays_o)
    offsets, t_starts, t_ends, terminate = impl.traverse(
        rays_o, rays_d, binaries.contiguous(), aabbs, near, far, mask, _f32(step), _f32(cone), limit
    )
    return Traversal(
        t_starts.to(out_dtype),
        t_ends.to(out_dtype),
        _packing.offsets_to_ray_indices(offsets),
        offsets,
        terminate.to(out_dtype),
    )
