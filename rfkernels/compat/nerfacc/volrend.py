"""nerfacc.volrend on rfkernels: same signatures, defaults, return types and semantics as nerfacc 0.5.3.

Density paths (``*_from_density``, ``rendering`` with ``rgb_sigma_fn``) run rfkernels' fused
kernels (:func:`rfkernels.render_weights`, :func:`rfkernels.volume_render`, any backend, CPU
included, padded or packed). Alpha paths and ``accumulate_along_rays`` are composed from torch
(an exclusive product / a segment sum): rfkernels' kernels take densities, and ``-log(1 - alpha)``
would be infinite for opaque samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import rfkernels

from . import checks
from .pack import pack_info, to_offsets
from .scan import exclusive_prod


def _packed_kwargs(n: int, packed_info, ray_indices, n_rays) -> dict:
    offsets = to_offsets(n, packed_info, ray_indices, n_rays)
    return {} if offsets is None else {"offsets": offsets}


def render_transmittance_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``T_i = exp(-sum_{j<i} sigma_j dt_j)`` and ``alpha_i``; both shaped like ``sigmas``
    (``[R, S]`` or flat ``[N]`` with ``packed_info`` or ``ray_indices`` + ``n_rays``). Fused kernel."""
    checks.prefix_trans(prefix_trans, sigmas)
    _, trans, alphas = _weights_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays)
    if prefix_trans is not None:
        trans = trans * prefix_trans
    return trans, alphas


def _weights_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays):
    checks.samples("sigmas", sigmas, packed_info is not None or ray_indices is not None)
    kw = _packed_kwargs(sigmas.shape[0], packed_info, ray_indices, n_rays)
    return rfkernels.render_weights(sigmas, t_starts, t_ends, **kw)


def render_weight_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(weights, trans, alphas)`` from densities, ``w_i = T_i alpha_i``. Fused kernel."""
    checks.prefix_trans(prefix_trans, sigmas)
    weights, trans, alphas = _weights_from_density(t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays)
    if prefix_trans is not None:
        trans = trans * prefix_trans
        weights = trans * alphas
    return weights, trans, alphas


def render_transmittance_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """``T_i = prod_{j<i} (1 - alpha_j)``, shaped like ``alphas``. Torch exclusive product."""
    checks.samples("alphas", alphas, packed_info is not None or ray_indices is not None)
    checks.prefix_trans(prefix_trans, alphas)
    if ray_indices is not None and packed_info is None:
        n_rays = checks.ray_indices(ray_indices, alphas.shape[0], n_rays, sorted_=True)
        packed_info = pack_info(ray_indices, n_rays)
    trans = exclusive_prod(1 - alphas, packed_info)
    if prefix_trans is not None:
        trans = trans * prefix_trans
    return trans


def render_weight_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    prefix_trans: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(weights, trans)`` from opacities, ``w_i = T_i alpha_i``."""
    trans = render_transmittance_from_alpha(alphas, packed_info, ray_indices, n_rays, prefix_trans)
    return trans * alphas, trans


@torch.no_grad()
def render_visibility_from_alpha(
    alphas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """Bool mask ``T_i >= early_stop_eps`` (and ``alpha_i >= alpha_thre`` when it is > 0)."""
    trans = render_transmittance_from_alpha(alphas, packed_info, ray_indices, n_rays, prefix_trans)
    vis = trans >= early_stop_eps
    return vis & (alphas >= alpha_thre) if alpha_thre > 0 else vis


@torch.no_grad()
def render_visibility_from_density(
    t_starts: Tensor,
    t_ends: Tensor,
    sigmas: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    prefix_trans: Tensor | None = None,
) -> Tensor:
    """Bool mask from densities, as :func:`render_visibility_from_alpha`. Fused kernel."""
    trans, alphas = render_transmittance_from_density(
        t_starts, t_ends, sigmas, packed_info, ray_indices, n_rays, prefix_trans
    )
    vis = trans >= early_stop_eps
    return vis & (alphas >= alpha_thre) if alpha_thre > 0 else vis


def accumulate_along_rays(
    weights: Tensor,
    values: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
) -> Tensor:
    """``sum_i w_i v_i`` per ray -> ``[n_rays, D]`` (``D = 1`` when ``values`` is None).
    Batched ``weights [R, S]`` / ``values [R, S, D]`` or flat with ``ray_indices`` + ``n_rays``."""
    checks.samples("weights", weights, ray_indices is not None)
    if values is None:
        src = weights[..., None]
    else:
        checks.tensor("values", values)
        if values.dim() != weights.dim() + 1 or values.shape[:-1] != weights.shape:
            raise ValueError(f"`values` must have shape {list(weights.shape)} + [D], got {list(values.shape)}")
        src = weights[..., None] * values
    if ray_indices is None:
        return src.sum(dim=-2)
    if n_rays is None:
        raise ValueError("`n_rays` must be provided with `ray_indices`")
    n_rays = checks.ray_indices(ray_indices, weights.shape[0], n_rays, sorted_=False)
    out = torch.zeros((n_rays, src.shape[-1]), device=src.device, dtype=src.dtype)
    return out.index_add(0, ray_indices.long(), src)


def rendering(
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
    rgb_sigma_fn: Callable | None = None,
    rgb_alpha_fn: Callable | None = None,
    render_bkgd: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Render through ``rgb_sigma_fn(t_starts, t_ends, ray_indices) -> (rgbs [..., 3], sigmas [...])``
    (fused compositing) or ``rgb_alpha_fn`` (torch). Returns ``colors [R, 3]``, ``opacities [R, 1]``,
    ``depths [R, 1]`` (divided by opacity) and extras ``weights, trans, alphas, rgbs (, sigmas)``."""
    checks.samples("t_starts", t_starts, ray_indices is not None)
    checks.samples("t_ends", t_ends, ray_indices is not None)
    if ray_indices is not None:
        n_rays = checks.ray_indices(ray_indices, t_starts.shape[0], n_rays, sorted_=True)
    if t_starts.shape != t_ends.shape:
        raise ValueError(
            f"`t_starts` {list(t_starts.shape)} and `t_ends` {list(t_ends.shape)} must have the same shape"
        )
    if rgb_sigma_fn is None and rgb_alpha_fn is None:
        raise ValueError("At least one of `rgb_sigma_fn` and `rgb_alpha_fn` should be specified.")
    fn = rgb_sigma_fn if rgb_sigma_fn is not None else rgb_alpha_fn
    if t_starts.shape[0] != 0:
        rgbs, field = fn(t_starts, t_ends, ray_indices)
    else:
        rgbs = torch.empty((0, 3), device=t_starts.device)
        field = torch.empty((0,), device=t_starts.device)
    if rgbs.shape[-1] != 3 or rgbs.shape[:-1] != t_starts.shape:
        raise ValueError(f"rgbs must be [*t_starts.shape, 3] = {[*t_starts.shape, 3]}, got {list(rgbs.shape)}")
    if not rgbs.is_floating_point():
        raise ValueError(f"rgbs must be floating point, got {rgbs.dtype}")
    if field.shape != t_starts.shape:
        name = "sigmas" if rgb_sigma_fn is not None else "alphas"
        raise ValueError(f"{name} must have the shape of `t_starts` {list(t_starts.shape)}, got {list(field.shape)}")
    eps = torch.finfo(rgbs.dtype).eps
    if rgb_sigma_fn is not None:
        kw = _packed_kwargs(field.shape[0], None, ray_indices, n_rays)
        out = rfkernels.volume_render(field, rgbs, t_starts, t_ends, **kw)
        trans, alphas = render_transmittance_from_density(
            t_starts, t_ends, field, ray_indices=ray_indices, n_rays=n_rays
        )
        colors, opacities = out.rgb, out.opacity[:, None]
        depths = out.depth[:, None] / opacities.clamp_min(eps)
        extras = {"weights": out.weights, "alphas": alphas, "trans": trans, "sigmas": field, "rgbs": rgbs}
    else:
        weights, trans = render_weight_from_alpha(field, ray_indices=ray_indices, n_rays=n_rays)
        colors = accumulate_along_rays(weights, rgbs, ray_indices, n_rays)
        opacities = accumulate_along_rays(weights, None, ray_indices, n_rays)
        depths = accumulate_along_rays(weights, (t_starts + t_ends)[..., None] / 2.0, ray_indices, n_rays)
        depths = depths / opacities.clamp_min(eps)
        extras = {"weights": weights, "trans": trans, "rgbs": rgbs, "alphas": field}
    if render_bkgd is not None:
        colors = colors + render_bkgd * (1.0 - opacities)
    return colors, opacities, depths, extras


__all__ = [
    "accumulate_along_rays",
    "render_transmittance_from_alpha",
    "render_transmittance_from_density",
    "render_visibility_from_alpha",
    "render_visibility_from_density",
    "render_weight_from_alpha",
    "render_weight_from_density",
    "rendering",
]
