"""Volume rendering (op family 3): weights, fused compositing and the distortion loss.

Layouts: padded ``[R, S]`` tensors, or packed (ragged) ``[N]`` tensors with per-ray ``offsets``
``[R+1]`` (or sorted ``ray_indices`` ``[N]`` plus ``n_rays``). The ``torch`` backend is
:mod:`.reference` differentiated by autograd; ``triton`` and ``cuda`` run fused kernels with a
hand-written backward that recomputes transmittance from the saved outputs (instant-ngp style)
instead of keeping per-sample intermediates.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from .. import _checks, _dispatch, _packing
from . import reference

Tensor = torch.Tensor


class VolumeRenderOutput(NamedTuple):
    rgb: torch.Tensor  # [R, C] composited colours/features (+ background)
    depth: torch.Tensor  # [R] sum_i w_i * t_mid_i (not divided by opacity)
    opacity: torch.Tensor  # [R] sum_i w_i (accumulation)
    weights: torch.Tensor  # [R, S] or [N], same layout as the input


class VolrendKernels(Protocol):
    """What a fused volrend backend (``triton.py``, ``cuda.py``) provides. Inputs are packed float32
    contiguous: per-sample ``[N]`` (colors ``[N, C]``), ``offsets`` ``[R+1]`` int64; optional
    tensors may be None; outputs are float32."""

    def composite_forward(self, sigmas: Tensor, deltas: Tensor, tmids: Tensor | None, colors: Tensor | None,
                          offsets: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """-> rgb [R, C], depth [R], opacity [R], weights [N], transmittance [N]."""

    def composite_backward(self, g_rgb: Tensor, g_depth: Tensor, g_opacity: Tensor, g_weights: Tensor | None,
                           g_trans: Tensor | None, sigmas: Tensor, deltas: Tensor, tmids: Tensor | None,
                           colors: Tensor | None, offsets: Tensor, rgb: Tensor, depth: Tensor, opacity: Tensor,
                           eps: float) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """-> d sigmas [N], d deltas [N], d tmids [N] | None, d colors [N, C] | None."""

    def distortion_forward(self, weights: Tensor, tmids: Tensor, deltas: Tensor, offsets: Tensor) -> Tensor:
        """-> loss [R]."""

    def distortion_backward(self, g_loss: Tensor, weights: Tensor, tmids: Tensor, deltas: Tensor,
                            offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> d weights, d tmids, d deltas, each [N]."""


# ----------------------------------------------------------------------------------- validation
class _Layout(NamedTuple):
    padded: bool
    n_rays: int
    offsets: torch.Tensor | None  # [R+1] int64 for packed inputs
    shape: tuple  # the per-sample shape of the input ([R, S] or [N])
    name: str  # the argument that set the layout (`sigmas` or `weights`)


def _layout(sigmas, offsets, ray_indices, n_rays, name="sigmas") -> _Layout:
    _checks.check_tensor(name, sigmas, ndim=(1, 2))
    validate = _checks.validation_enabled()
    if sigmas.dim() == 2:
        if offsets is not None or ray_indices is not None:
            raise ValueError(f"`{name}` is padded [R, S]: do not pass `offsets`/`ray_indices` (they are for packed [N] inputs)")
        return _Layout(True, sigmas.shape[0], None, tuple(sigmas.shape), name)
    if offsets is None and ray_indices is None:
        raise ValueError(f"`{name}` is packed [N]: pass `offsets` [R+1] or `ray_indices` [N] with `n_rays`")
    if offsets is None:
        _checks.check_tensor("ray_indices", ray_indices, shape=[sigmas.shape[0]], dtypes=_checks.INDEX_DTYPES,
                             device=sigmas.device)
        if n_rays is None:
            raise ValueError("`n_rays` is required with `ray_indices`")
        if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
            raise ValueError(f"`n_rays` must be an int >= 0, got {n_rays!r}")
        if validate and ray_indices.numel():
            if bool((ray_indices[1:] < ray_indices[:-1]).any()):
                raise ValueError("`ray_indices` must be sorted (samples of one ray contiguous)")
            if int(ray_indices[0]) < 0 or int(ray_indices[-1]) >= n_rays:
                raise ValueError(f"`ray_indices` must lie in [0, n_rays) = [0, {n_rays}), got "
                                 f"{int(ray_indices[0])}..{int(ray_indices[-1])}")
        offsets = _packing.ray_indices_to_offsets(ray_indices, n_rays)
    else:
        _checks.check_tensor("offsets", offsets, ndim=1, dtypes=_checks.INDEX_DTYPES, device=sigmas.device)
        _checks.check_offsets("offsets", offsets, sigmas.shape[0], validate)
    return _Layout(False, offsets.numel() - 1, offsets.long().contiguous(), tuple(sigmas.shape), name)


def _check_like(name, t, layout: _Layout, device, extra_dims=0):
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
        validate = _checks.validation_enabled()
        _checks.check_no_nan("t_starts", t_starts, validate)
        _checks.check_no_nan("t_ends", t_ends, validate)
        cd = _compute_dtype(t_starts, t_ends)  # interval lengths in float32 whatever the input dtype
        t_starts, t_ends = t_starts.to(cd), t_ends.to(cd)
        deltas = t_ends - t_starts
        if validate and deltas.numel() and not bool((deltas >= 0).all()):
            raise ValueError("`t_ends` must be >= `t_starts` (negative interval lengths, or both the same inf)")
        return deltas, 0.5 * (t_starts + t_ends)
    if deltas is None:
        raise ValueError("pass interval lengths: (`t_starts`, `t_ends`) or `deltas`")
    _check_like("deltas", deltas, layout, device)
    _checks.check_no_nan("deltas", deltas, _checks.validation_enabled())
    _checks.check_nonnegative("deltas", deltas, _checks.validation_enabled())
    return deltas, None


def _check_densities(sigmas, early_stop_eps):
    """The value policy of the densities (NaN, negative: ValueError when validation is on; inf is
    opaque) and of ``early_stop_eps`` (a float in [0, 1], always checked)."""
    validate = _checks.validation_enabled()
    _checks.check_no_nan("sigmas", sigmas, validate)
    _checks.check_nonnegative("sigmas", sigmas, validate)
    return _checks.check_scalar("early_stop_eps", early_stop_eps, 0.0, 1.0)


def _compute_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    """The torch backend computes in float32 like the kernels (float64 if every input is float64)."""
    return _checks.compute_dtype(*ts)


def _flat(t, layout: _Layout, channels: bool = False):
    """Input layout -> packed float32 contiguous [N] (or [N, C])."""
    if t is None:
        return None
    if layout.padded:
        n = layout.shape[0] * layout.shape[1]
        t = t.reshape(n, t.shape[-1]) if channels else t.reshape(n)
    return t.float().contiguous()


def _offsets(layout: _Layout, device):
    if layout.padded:
        return _packing.padded_offsets(layout.n_rays, layout.shape[1], device)
    return layout.offsets


def _check_sorted(tmids, layout: _Layout):
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
        raise ValueError("`t_starts`/`t_ends` must be sorted along each ray (interval midpoints non-decreasing) "
                         "for `distortion_loss`")


# -------------------------------------------------------------------------- autograd functions
class _Composite(torch.autograd.Function):
    """Packed fused compositing: (sigmas, deltas, tmids, colors) -> (rgb, depth, opacity, weights, trans)."""

    @staticmethod
    def forward(ctx, sigmas, deltas, tmids, colors, offsets, eps, kernels):
        rgb, depth, opacity, weights, trans = kernels.composite_forward(sigmas, deltas, tmids, colors, offsets, eps)
        ctx.save_for_backward(sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity)
        ctx.has_tmids, ctx.has_colors = tmids is not None, colors is not None
        ctx.eps, ctx.kernels = eps, kernels
        return rgb, depth, opacity, weights, trans

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_opacity, g_weights, g_trans):
        sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity = ctx.saved_tensors
        zeros_r = lambda g, like: torch.zeros_like(like) if g is None else g.contiguous()  # noqa: E731
        g_rgb, g_depth, g_opacity = zeros_r(g_rgb, rgb), zeros_r(g_depth, depth), zeros_r(g_opacity, opacity)
        g_weights = None if g_weights is None else g_weights.contiguous()
        g_trans = None if g_trans is None else g_trans.contiguous()
        g_sigmas, g_deltas, g_tmids, g_colors = ctx.kernels.composite_backward(
            g_rgb, g_depth, g_opacity, g_weights, g_trans,
            sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity, ctx.eps,
        )
        return (g_sigmas, g_deltas, g_tmids if ctx.has_tmids else None,
                g_colors if ctx.has_colors else None, None, None, None)


class _Distortion(torch.autograd.Function):
    """Packed fused distortion loss: (weights, tmids, deltas) -> loss [R]."""

    @staticmethod
    def forward(ctx, weights, tmids, deltas, offsets, kernels):
        ctx.save_for_backward(weights, tmids, deltas, offsets)
        ctx.kernels = kernels
        return kernels.distortion_forward(weights, tmids, deltas, offsets)

    @staticmethod
    def backward(ctx, g_loss):
        weights, tmids, deltas, offsets = ctx.saved_tensors
        g_w, g_m, g_d = ctx.kernels.distortion_backward(g_loss.contiguous(), weights, tmids, deltas, offsets)
        return g_w, g_m, g_d, None, None


# ------------------------------------------------------------------------------ implementations
class Reference:
    """The ``torch`` backend: :mod:`.reference` on padded tensors, differentiated by autograd.
    Inputs are in the caller's layout and any float dtypes, computed in :func:`_compute_dtype` of
    the first input; outputs in the first input's dtype (as the fused backends)."""

    def composite(self, sigmas, deltas, tmids, colors, layout, eps):
        """-> rgb [R, C], depth [R], opacity [R], weights, trans (the input layout)."""
        out = sigmas.dtype
        cd = _compute_dtype(sigmas, deltas, tmids, colors)
        sigmas, deltas = sigmas.to(cd), deltas.to(cd)
        tmids = None if tmids is None else tmids.to(cd)
        colors = None if colors is None else colors.to(cd)
        return tuple(x.to(out) for x in self._composite(sigmas, deltas, tmids, colors, layout, eps))

    def _composite(self, sigmas, deltas, tmids, colors, layout, eps):
        if layout.padded:
            return reference.composite_padded(sigmas, deltas, tmids, colors, None, eps)
        offsets = layout.offsets
        sig, mask = _packing.pad(sigmas, offsets)
        dlt = _packing.pad(deltas, offsets)[0]
        tm = _packing.pad(tmids, offsets)[0] if tmids is not None else None
        col = _packing.pad(colors, offsets)[0] if colors is not None else None
        rgb, depth, opacity, w, tr = reference.composite_padded(sig, dlt, tm, col, mask, eps)
        return rgb, depth, opacity, _packing.unpad(w, mask), _packing.unpad(tr, mask)

    def distortion(self, weights, tmids, deltas, layout):
        """-> loss [R]."""
        out, cd = weights.dtype, _compute_dtype(weights, tmids, deltas)
        return self._distortion(weights.to(cd), tmids.to(cd), deltas.to(cd), layout).to(out)

    def _distortion(self, weights, tmids, deltas, layout):
        if layout.padded:
            return reference.distortion_padded(weights, tmids, deltas)
        w, mask = _packing.pad(weights, layout.offsets)
        return reference.distortion_padded(w, _packing.pad(tmids, layout.offsets)[0],
                                           _packing.pad(deltas, layout.offsets)[0], mask)


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`VolrendKernels` behind the autograd Functions,
    on packed float32 copies; results are cast back to the input dtype and layout."""

    def __init__(self, kernels: VolrendKernels, name: str):
        self.kernels, self.name = kernels, name

    def composite(self, sigmas, deltas, tmids, colors, layout, eps):
        dtype = sigmas.dtype
        rgb, depth, opacity, w, tr = _Composite.apply(
            _flat(sigmas, layout), _flat(deltas, layout), _flat(tmids, layout),
            _flat(colors, layout, channels=True), _offsets(layout, sigmas.device), float(eps), self.kernels,
        )
        return (rgb.to(dtype), depth.to(dtype), opacity.to(dtype), w.view(layout.shape).to(dtype),
                tr.view(layout.shape).to(dtype))

    def distortion(self, weights, tmids, deltas, layout):
        loss = _Distortion.apply(_flat(weights, layout), _flat(tmids, layout), _flat(deltas, layout),
                                 _offsets(layout, weights.device), self.kernels)
        return loss.to(weights.dtype)


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
    _, _, _, weights, trans = impl.composite(sigmas, deltas, None, None, layout, early_stop_eps)
    cd = _compute_dtype(sigmas, deltas)
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
    _checks.check_finite("colors", colors, _checks.validation_enabled())
    deltas, tmids = _intervals(t_starts, t_ends, None, layout, device)
    C = colors.shape[-1]
    if isinstance(background, torch.Tensor):
        _checks.check_tensor("background", background, ndim=(0, 1, 2), device=device)
        if background.dim() and tuple(background.shape) not in ((C,), (layout.n_rays, C)):
            raise ValueError(f"`background` must be a scalar, [C] = [{C}] or [R, C] = [{layout.n_rays}, {C}], "
                             f"got shape {list(background.shape)}")
    elif background is not None and not isinstance(background, (int, float)):
        raise ValueError(f"`background` must be a float, a tensor or None, got {type(background).__name__}")
    impl = _dispatch.implementation("volrend", backend, sigmas)
    rgb, depth, opacity, weights, _ = impl.composite(sigmas, deltas, tmids, colors, layout, early_stop_eps)
    if background is not None:  # in float32 (or float64), output in the sigmas dtype like the rest
        cd = _compute_dtype(rgb, background if isinstance(background, torch.Tensor) else None)
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
    validate = _checks.validation_enabled()
    _checks.check_finite("weights", weights, validate)
    deltas, tmids = _intervals(t_starts, t_ends, None, layout, device)
    _checks.check_finite("t_starts", t_starts, validate)
    _checks.check_finite("t_ends", t_ends, validate)
    if validate:
        _check_sorted(tmids, layout)
    return _dispatch.implementation("volrend", backend, weights).distortion(weights, tmids, deltas, layout)


__all__ = ["VolumeRenderOutput", "render_weights", "volume_render", "distortion_loss"]

_dispatch.register_family("volrend", VolrendKernels, torch=Reference(), fused=Fused,
                          triton="rfkernels.volrend.triton", cuda="rfkernels.volrend.cuda")
