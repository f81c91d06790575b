"""The public volrend functions and their argument checks: each validates once (layout, shapes,
the value policy of :mod:`.reference`), then calls the backend the registry picks
(:class:`~.adapters.Reference` or :class:`~.adapters.Fused`) with the checked tensors."""

from __future__ import annotations

import torch

from .. import _checks, _dispatch
from . import reference
from .adapters import Layout
from .contract import VolumeRenderOutput


# ----------------------------------------------------------------------------------- validation
def _layout(sigmas, offsets, ray_indices, n_rays, name="sigmas") -> Layout:
    _checks.check_tensor(name, sigmas, ndim=(1, 2))
    validate = _checks.reads_values(sigmas, offsets, ray_indices)
    if sigmas.dim() == 2:
        if offsets is not None or ray_indices is not None:
            raise ValueError(
                f"`{name}` is padded [R, S]: do not pass `offsets`/`ray_indices` (they are for packed [N] inputs)"
            )
        return Layout(True, sigmas.shape[0], None, tuple(sigmas.shape), name)
    if offsets is None and ray_indices is None:
        raise ValueError(f"`{name}` is packed [N]: pass `offsets` [R+1] or `ray_indices` [N] with `n_rays`")
    if offsets is None:
        _checks.check_tensor(
            "ray_indices", ray_indices, shape=[sigmas.shape[0]], dtypes=_checks.INDEX_DTYPES, device=sigmas.device
        )
        if n_rays is None:
            raise ValueError("`n_rays` is required with `ray_indices`")
        if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
            raise ValueError(f"`n_rays` must be an int >= 0, got {n_rays!r}")
        if validate and ray_indices.numel():
            if bool((ray_indices[1:] < ray_indices[:-1]).any()):
                raise ValueError("`ray_indices` must be sorted (samples of one ray contiguous)")
            if int(ray_indices[0]) < 0 or int(ray_indices[-1]) >= n_rays:
                raise ValueError(
                    f"`ray_indices` must lie in [0, n_rays) = [0, {n_rays}), got "
                    f"{int(ray_indices[0])}..{int(ray_indices[-1])}"
                )
        offsets = _sorted_ray_indices_to_offsets(ray_indices, n_rays)
    else:
        _checks.check_tensor("offsets", offsets, ndim=1, dtypes=_checks.INDEX_DTYPES, device=sigmas.device)
        _checks.check_offsets("offsets", offsets, sigmas.shape[0], validate)
    return Layout(False, offsets.numel() - 1, offsets.long().contiguous(), tuple(sigmas.shape), name)


def _sorted_ray_indices_to_offsets(ray_indices, n_rays: int) -> torch.Tensor:
    """Sorted ray ids [N] -> offsets [n_rays + 1] int64 by binary search: output sizes known from the
    arguments (no data-dependent shape when traced; ids are range-checked above when values are read)."""
    bounds = torch.arange(n_rays + 1, device=ray_indices.device, dtype=ray_indices.dtype)
    return torch.searchsorted(ray_indices.contiguous(), bounds).long()


def _check_like(name, t, layout: Layout, device, extra_dims=0):
    if t is None:
        return None
    _checks.check_tensor(name, t, device=device)
    if tuple(t.shape[: len(layout.shape)]) != layout.shape or t.dim() != len(layout.shape) + extra_dims:
        want = list(layout.shape) + ["C"] * extra_dims
        raise ValueError(f"`{name}` must have shape {want} to match `{layout.name}`, got {list(t.shape)}")
    return t


def _intervals(t_starts, t_ends, deltas, layout, device):
    """-> (deltas, tmids) in the input layout; checks ``t_ends >= t_starts``."""
    if t_starts is not None or t_ends is not None:
        if t_starts is None or t_ends is None:
            raise ValueError("pass both `t_starts` and `t_ends` (or only `deltas`)")
        if deltas is not None:
            raise ValueError("pass either (`t_starts`, `t_ends`) or `deltas`, not both")
        _check_like("t_starts", t_starts, layout, device)
        _check_like("t_ends", t_ends, layout, device)
        validate = _checks.reads_values(t_starts, t_ends)
        _checks.check_no_nan("t_starts", t_starts, validate)
        _checks.check_no_nan("t_ends", t_ends, validate)
        cd = _checks.compute_dtype(t_starts, t_ends)  # interval lengths in float32 whatever the input dtype
        t_starts, t_ends = t_starts.to(cd), t_ends.to(cd)
        deltas = t_ends - t_starts
        if validate and deltas.numel() and not bool((deltas >= 0).all()):
            raise ValueError("`t_ends` must be >= `t_starts` (negative interval lengths, or both the same inf)")
        return deltas, 0.5 * (t_starts + t_ends)
    if deltas is None:
        raise ValueError("pass interval lengths: (`t_starts`, `t_ends`) or `deltas`")
    _check_like("deltas", deltas, layout, device)
    _checks.check_no_nan("deltas", deltas, _checks.reads_values(deltas))
    _checks.check_nonnegative("deltas", deltas, _checks.reads_values(deltas))
    return deltas, None


def _check_densities(sigmas, early_stop_eps):
    """The value policy of the densities (NaN, negative: ValueError when validation is on; inf is
    opaque) and of ``early_stop_eps`` (a float in [0, 1], always checked)."""
    validate = _checks.reads_values(sigmas)
    _checks.check_no_nan("sigmas", sigmas, validate)
    _checks.check_nonnegative("sigmas", sigmas, validate)
    return _checks.check_scalar("early_stop_eps", early_stop_eps, 0.0, 1.0)


def _check_sorted(tmids, layout: Layout):
    """Interval midpoints non-decreasing within each ray (the O(S) distortion formula needs it)."""
    if tmids.numel() < 2:
        return
    if layout.padded:
        bad = tmids[:, 1:] < tmids[:, :-1]
    else:
        same_ray = torch.ones(tmids.shape[0] - 1, dtype=torch.bool, device=tmids.device)
        starts = layout.offsets[1:-1]
        starts = starts[(starts > 0) & (starts < tmids.shape[0])]
        same_ray[starts - 1] = False
        bad = (tmids[1:] < tmids[:-1]) & same_ray
    if bool(bad.any()):
        raise ValueError(
            "`t_starts`/`t_ends` must be sorted along each ray (interval midpoints non-decreasing) "
            "for `distortion_loss`"
        )


# ------------------------------------------------------------------------------ public functions
def render_weights(
    sigmas: torch.Tensor,
    t_starts: torch.Tensor | None = None,
    t_ends: torch.Tensor | None = None,
    *,
    deltas: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
    early_stop_eps: float = 0.0,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-rendering weights from densities.

    Args:
        sigmas: densities, padded ``[R, S]`` or packed ``[N]``.
        t_starts, t_ends: interval bounds, same shape as ``sigmas`` (or give ``deltas``).
        offsets: ``[R+1]`` int per-ray offsets for packed inputs (or ``ray_indices`` + ``n_rays``).
        early_stop_eps: if > 0, samples whose transmittance is below it get weight 0.
    Returns:
        ``(weights, transmittance, alphas)``, each shaped like ``sigmas``.
    """
    layout = _layout(sigmas, offsets, ray_indices, n_rays)
    early_stop_eps = _check_densities(sigmas, early_stop_eps)
    deltas, _ = _intervals(t_starts, t_ends, deltas, layout, sigmas.device)
    impl = _dispatch.implementation("volrend", backend, sigmas)
    _, _, _, weights, trans = impl.composite(sigmas, deltas, None, None, layout, early_stop_eps, want_trans=True)
    cd = _checks.compute_dtype(sigmas, deltas)
    alphas = (-torch.expm1(-reference.optical_depth(sigmas.to(cd), deltas.to(cd)))).to(sigmas.dtype)
    return weights, trans, alphas


def volume_render(
    sigmas: torch.Tensor,
    colors: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    *,
    offsets: torch.Tensor | None = None,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
    background: torch.Tensor | float | None = None,
    early_stop_eps: float = 0.0,
    backend: str | None = None,
) -> VolumeRenderOutput:
    """Fused alpha compositing of colours (or any C-channel features) along rays.

    Args:
        sigmas: ``[R, S]`` padded or ``[N]`` packed densities (>= 0).
        colors: ``[R, S, C]`` or ``[N, C]``; any C.
        t_starts, t_ends: ``[R, S]`` / ``[N]`` interval bounds along the ray (``t_ends >= t_starts``).
        offsets / ray_indices + n_rays: packed layout (see :mod:`rfkernels._packing`).
        background: ``[C]``, ``[R, C]`` or a scalar, added as ``(1 - opacity) * background``.
        early_stop_eps: transmittance threshold below which samples are skipped (0 = off, exact).
    Returns:
        :class:`VolumeRenderOutput` ``(rgb [R, C], depth [R], opacity [R], weights)``.
    """
    layout = _layout(sigmas, offsets, ray_indices, n_rays)
    device = sigmas.device
    early_stop_eps = _check_densities(sigmas, early_stop_eps)
    _check_like("colors", colors, layout, device, extra_dims=1)
    _checks.check_finite("colors", colors, _checks.reads_values(colors))
    deltas, tmids = _intervals(t_starts, t_ends, None, layout, device)
    C = colors.shape[-1]
    if isinstance(background, torch.Tensor):
        _checks.check_tensor("background", background, ndim=(0, 1, 2), device=device)
        if background.dim() and tuple(background.shape) not in ((C,), (layout.n_rays, C)):
            raise ValueError(
                f"`background` must be a scalar, [C] = [{C}] or [R, C] = [{layout.n_rays}, {C}], "
                f"got shape {list(background.shape)}"
            )
    elif background is not None and not isinstance(background, (int, float)):
        raise ValueError(f"`background` must be a float, a tensor or None, got {type(background).__name__}")
    impl = _dispatch.implementation("volrend", backend, sigmas)
    rgb, depth, opacity, weights, _ = impl.composite(
        sigmas, deltas, tmids, colors, layout, early_stop_eps, want_trans=False
    )
    if background is not None:  # in float32 (or float64), output in the sigmas dtype like the rest
        cd = _checks.compute_dtype(rgb, background if isinstance(background, torch.Tensor) else None)
        bg = background.to(cd) if isinstance(background, torch.Tensor) else background
        rgb = (rgb.to(cd) + (1.0 - opacity.to(cd))[:, None] * bg).to(rgb.dtype)
    return VolumeRenderOutput(rgb, depth, opacity, weights)


def distortion_loss(
    weights: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    *,
    offsets: torch.Tensor | None = None,
    ray_indices: torch.Tensor | None = None,
    n_rays: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """mip-NeRF 360 distortion loss per ray, in O(S): ``[R]`` (take ``.mean()`` for the scalar).

    ``L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (t_end_i - t_start_i)`` with midpoints m.
    Intervals of a ray must be sorted (midpoints non-decreasing; a ``ValueError`` when validation
    is on) and all inputs finite; pass normalized (s-space) distances to match the paper.
    """
    layout = _layout(weights, offsets, ray_indices, n_rays, name="weights")
    device = weights.device
    validate = _checks.reads_values(weights, t_starts, t_ends)
    _checks.check_finite("weights", weights, validate)
    deltas, tmids = _intervals(t_starts, t_ends, None, layout, device)
    _checks.check_finite("t_starts", t_starts, validate)
    _checks.check_finite("t_ends", t_ends, validate)
    if validate:
        _check_sorted(tmids, layout)
    return _dispatch.implementation("volrend", backend, weights).distortion(weights, tmids, deltas, layout)
