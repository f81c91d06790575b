"""Proposal-network resampling (op family 2): inverse-CDF sampling of per-ray histograms, s-space
maps and the interlevel (proposal) losses of mip-NeRF 360 / Zip-NeRF.

Layouts: padded (``bins [R, S+1]``, ``weights [R, S]``) or packed for :func:`sample_pdf` (``weights
[N]``, ``offsets [R+1]`` over the weights, ``bins [N + R]``: ray r owns the ``S_r + 1`` edges
``bins[offsets[r] + r : offsets[r+1] + r + 1]``). The ``torch`` backend is :mod:`.reference`;
``triton`` and ``cuda`` run fused kernels on float32 copies (results cast back to the input dtype).
Random numbers are drawn once with ``torch.rand(..., generator=generator)`` before dispatch, so all
backends produce the same samples for the same generator state.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from .. import _checks, _dispatch, _packing
from . import reference
from .reference import MODES
from .spacing import SpaceMap, s_to_t, t_to_s

DEFAULT_HISTOGRAM_PADDING = 0.01
EPS = float(torch.finfo(torch.float32).eps)
Tensor = torch.Tensor


class SamplingKernels(Protocol):
    """What a fused sampling backend (``triton.py``, ``cuda.py``) provides. Inputs are packed float32
    contiguous (see :mod:`rfkernels._packing`): weights ``[N]`` with ``offsets`` ``[R+1]`` int64, bin
    edges ``[N + R]``; ``max_*`` are the largest per-ray bin counts; outputs are float32."""

    def sample(self, bins: Tensor, weights: Tensor, offsets: Tensor, jitter: Tensor | None, n: int,
               padding: float, blur: Tensor | None, return_edges: bool, max_bins: int) -> Tensor:
        """-> sorted samples [R, n] (or edges [R, n + 1]); ``jitter`` [R, n] / [R, 1] / None (midpoints)."""

    def interlevel_forward(self, t: Tensor, w: Tensor, t_off: Tensor, tp: Tensor, wp: Tensor, tp_off: Tensor,
                           blur: Tensor | None, eps: float, max_fine: int,
                           max_prop: int) -> tuple[Tensor, Tensor | None]:
        """-> loss [R], and for the blurred loss (``blur`` [R]) d loss / d wp [Np] (else None)."""

    def interlevel_backward(self, g_loss: Tensor, t: Tensor, w: Tensor, t_off: Tensor, tp: Tensor, wp: Tensor,
                            tp_off: Tensor, eps: float, max_fine: int, max_prop: int) -> Tensor:
        """Outer (unblurred) loss: -> d loss / d wp [Np] given g_loss [R]."""


# ----------------------------------------------------------------------------------- validation
def _check_bins(name, bins, boundary_mask=None):
    """Edges must be finite and non-decreasing along each ray."""
    if not _checks.validation_enabled() or bins.numel() == 0:
        return
    if not bool(torch.isfinite(bins).all()):
        raise ValueError(f"`{name}` must be finite (got NaN or inf)")
    d = bins[..., 1:] < bins[..., :-1]
    if boundary_mask is not None:
        d = d & ~boundary_mask
    if bool(d.any()):
        raise ValueError(f"`{name}` must be non-decreasing along each ray (sorted bin edges)")


def _check_weights(name, weights):
    """Histogram masses: finite and >= 0 (an inf mass has no defined CDF)."""
    validate = _checks.validation_enabled()
    _checks.check_finite(name, weights, validate)
    _checks.check_nonnegative(name, weights, validate)


def _blur_per_ray(blur_halfwidth, n_rays, device):
    """None | float | [R] tensor -> None | float32 [R] (validated > 0)."""
    if blur_halfwidth is None:
        return None
    if isinstance(blur_halfwidth, torch.Tensor):
        _checks.check_tensor("blur_halfwidth", blur_halfwidth, shape=[n_rays], device=device)
        r = blur_halfwidth.detach().float().contiguous()
        if _checks.validation_enabled() and r.numel() and not bool((r > 0).all()):
            raise ValueError("`blur_halfwidth` must be > 0 (use None for no blur)")
        return r
    if not isinstance(blur_halfwidth, (int, float)) or not blur_halfwidth > 0:
        raise ValueError(f"`blur_halfwidth` must be a float > 0, an [R] tensor or None, got {blur_halfwidth!r}")
    return torch.full((n_rays,), float(blur_halfwidth), device=device, dtype=torch.float32)


def _padded_layout(bins_name, bins, weights_name, weights):
    _checks.check_tensor(bins_name, bins, ndim=2)
    _checks.check_tensor(weights_name, weights, ndim=2, device=bins.device)
    R, E = bins.shape
    if E < 1 or tuple(weights.shape) != (R, E - 1):
        raise ValueError(f"`{weights_name}` must have shape [R, S] = [{R}, {E - 1}] to match `{bins_name}` "
                         f"[R, S+1] = {list(bins.shape)}, got {list(weights.shape)}")
    return R, E - 1


def _packed_layout(bins_name, bins, weights_name, weights, offsets_name, offsets):
    """Validate packed histograms (:data:`rfkernels._packing` bins layout): weights [N], offsets [R+1],
    bins [N + R]; -> (R, offsets int64, largest bin count)."""
    _checks.check_tensor(weights_name, weights, ndim=1)
    _checks.check_tensor(offsets_name, offsets, ndim=1, dtypes=_checks.INDEX_DTYPES, device=weights.device)
    _checks.check_offsets(offsets_name, offsets, weights.shape[0], _checks.validation_enabled())
    R = offsets.numel() - 1
    _checks.check_tensor(bins_name, bins, shape=[weights.shape[0] + R], device=weights.device)
    offsets = offsets.long().contiguous()
    if _checks.validation_enabled():
        ends = _packing.edge_offsets(offsets)[1:] - 1  # index of each ray's last edge
        boundary = torch.zeros(max(bins.numel() - 1, 0), dtype=torch.bool, device=bins.device)
        if R > 1:
            boundary[ends[:-1]] = True
        _check_bins(bins_name, bins, boundary)
    return R, offsets, _packing.max_count(offsets)


# ------------------------------------------------------------------------------------- sampling
def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    *,
    mode: str = "stratified",
    histogram_padding: float = DEFAULT_HISTOGRAM_PADDING,
    blur_halfwidth: float | torch.Tensor | None = None,
    return_edges: bool = False,
    generator: torch.Generator | None = None,
    offsets: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Draw sorted samples from each ray's piecewise-constant PDF (inverse-CDF sampling).

    Args:
        bins: ``[R, S+1]`` non-decreasing bin edges (t or s), or ``[N + R]`` packed (see module doc).
        weights: ``[R, S]`` (or ``[N]`` with ``offsets``) non-negative bin masses; all-zero rays are fine.
        n_samples: samples per ray (>= 1).
        mode: ``"stratified"`` (one jitter per stratum), ``"single_jitter"`` (one jitter per ray,
            Zip-NeRF) or ``"midpoint"`` (deterministic, for evaluation). ``u_k = (k + j) / n``.
        histogram_padding: added to every positive-width bin's mass before normalizing (default
            0.01 as nerfstudio's ``histogram_padding``; Zip-NeRF's ``resample_padding``);
            zero-width bins always get mass 0. Rays with no mass at all sample uniformly in t.
        blur_halfwidth: if given (float or ``[R]`` tensor, > 0), sample the step PDF convolved with a
            box of this half-width (piecewise-linear PDF, inverted exactly), truncated to the
            ray's domain ``[bins[0], bins[-1]]`` and renormalized.
        return_edges: return ``n_samples + 1`` interval edges around ``n_samples`` centers (Zip-NeRF
            ``sample_intervals``), clamped to ``[bins[0], bins[-1]]``, instead of the samples.
        generator: ``torch.Generator`` for the jitter (reproducible sampling).
        offsets: ``[R+1]`` int offsets over ``weights`` for the packed layout.
    Returns:
        ``[R, n_samples]`` (or ``[R, n_samples + 1]``) sorted per ray, in the dtype of ``bins``.
        Sampling is not differentiated: the output is detached (no grad to bins or weights).
    """
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    if not isinstance(histogram_padding, (int, float)) or not histogram_padding >= 0:
        raise ValueError(f"`histogram_padding` must be a float >= 0, got {histogram_padding!r}")
    if offsets is None:
        if isinstance(bins, torch.Tensor) and bins.dim() == 1:
            raise ValueError("`bins` is 1-D (the packed layout): pass `offsets` [R+1], or use padded [R, S+1] bins")
        R, S = _padded_layout("bins", bins, "weights", weights)
        _check_bins("bins", bins)
        max_bins = S
    else:
        R, offsets, max_bins = _packed_layout("bins", bins, "weights", weights, "offsets", offsets)
    _check_weights("weights", weights)
    device = bins.device
    blur = _blur_per_ray(blur_halfwidth, R, device)
    J = {"stratified": n_samples, "single_jitter": 1, "midpoint": 0}[mode]
    jitter = torch.rand(R, J, generator=generator, device=device) if J else None
    impl = _dispatch.implementation("sampling", backend, bins)
    with torch.no_grad():
        out = impl.sample(bins.detach(), weights.detach(), offsets, max_bins, jitter, n_samples,
                          float(histogram_padding), blur, bool(return_edges))
    return out.to(bins.dtype)




# -------------------------------------------------------------------------------- interlevel loss
class _Interlevel(torch.autograd.Function):
    """Packed fused interlevel loss: grad only w.r.t. the proposal weights. The blurred loss's
    forward also returns the elementwise d loss / d wp (the blurred fine mass does not depend on
    wp), so its backward is a product; the outer loss runs a backward kernel."""

    @staticmethod
    def forward(ctx, t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop, kernels):
        blur = blur if blur.numel() else None
        loss, dwp = kernels.interlevel_forward(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop)
        if dwp is not None:
            ctx.save_for_backward(dwp, tp_off)
        else:
            ctx.save_for_backward(t, w, t_off, tp, wp, tp_off)
        ctx.blurred = dwp is not None
        ctx.args = (eps, max_fine, max_prop, kernels)
        return loss

    @staticmethod
    def backward(ctx, g_loss):
        eps, max_fine, max_prop, kernels = ctx.args
        if ctx.blurred:
            dwp, tp_off = ctx.saved_tensors
            R = g_loss.numel()
            if dwp.numel() == R * max_prop:  # padded: no ray-index tensor (and no device sync)
                g_wp = (dwp.view(R, max_prop) * g_loss[:, None]).reshape(-1)
            else:
                g_wp = dwp * g_loss[_packing.offsets_to_ray_indices(tp_off)]
        else:
            t, w, t_off, tp, wp, tp_off = ctx.saved_tensors
            g_wp = kernels.interlevel_backward(g_loss.contiguous(), t, w, t_off, tp, wp, tp_off,
                                                                eps, max_fine, max_prop)
        return None, None, None, None, g_wp, None, None, None, None, None, None


def interlevel_loss(
    fine_bins: torch.Tensor,
    fine_weights: torch.Tensor,
    prop_bins: torch.Tensor,
    prop_weights: torch.Tensor,
    *,
    blur_halfwidth: float | torch.Tensor | None = None,
    eps: float = EPS,
    fine_offsets: torch.Tensor | None = None,
    prop_offsets: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Proposal (interlevel) loss per ray ``[R]``; take ``.mean()`` (times the paper's multiplier).

    Args:
        fine_bins, fine_weights: ``[R, S+1]``, ``[R, S]`` the NeRF's intervals and weights
            (detached: the loss trains only the proposal); packed: ``[N + R]``, ``[N]`` with
            ``fine_offsets`` ``[R+1]`` (the :mod:`rfkernels._packing` histogram layout).
        prop_bins, prop_weights: ``[R, P+1]``, ``[R, P]`` a proposal level's intervals and weights,
            in the same distance space (usually s-space) as the fine bins; packed: ``[Np + R]``,
            ``[Np]`` with ``prop_offsets``. Either level may be packed independently of the other.
        blur_halfwidth: None for mip-NeRF 360's ``lossfun_outer``: ``sum_j max(0, w_j - W_j)^2 /
            (w_j + eps)`` over the fine intervals, ``W_j`` = proposal mass of the bins overlapping
            interval j. A float or ``[R]`` tensor (> 0) for Zip-NeRF's anti-aliased
            ``spline_interlevel_loss``: the fine histogram blurred by a box of this half-width and
            integrated over each proposal interval (``Wb_k``), ``sum_k max(0, Wb_k - wp_k)^2 /
            (wp_k + eps)`` (Zip-NeRF uses 0.03 and 0.003 for its two proposal levels).
        eps: denominator guard (float32 machine epsilon, as in the papers' code).
    Returns:
        ``[R]`` per-ray sums, differentiable w.r.t. ``prop_weights`` only (no grad to bins or fine
        weights). The papers' scalar averages over intervals too: ``loss.mean() / S`` (outer) or
        ``loss.mean() / P`` (blurred), times their multiplier.
    """
    fine = _histogram("fine_bins", fine_bins, "fine_weights", fine_weights, "fine_offsets", fine_offsets)
    prop = _histogram("prop_bins", prop_bins, "prop_weights", prop_weights, "prop_offsets", prop_offsets)
    R = fine.n_rays
    device = fine_bins.device
    _checks.check_same_device(fine_bins=fine_bins, prop_bins=prop_bins)
    if prop.n_rays != R:
        name = "prop_bins" if prop.offsets is None else "prop_offsets"
        raise ValueError(f"`{name}` describes {prop.n_rays} rays but the fine level (`fine_bins`) has {R}")
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"`eps` must be a float > 0, got {eps!r}")
    _check_weights("fine_weights", fine_weights)
    _check_weights("prop_weights", prop_weights)
    blur = _blur_per_ray(blur_halfwidth, R, device)
    impl = _dispatch.implementation("sampling", backend, fine_bins)
    return impl.interlevel(fine_bins.detach(), fine_weights.detach(), fine, prop_bins.detach(), prop_weights, prop,
                           blur, float(eps))


class _Histogram(NamedTuple):
    """Layout of one histogram argument: padded (``offsets`` None) or packed."""

    n_rays: int
    offsets: torch.Tensor | None  # [R+1] int64 over the weights, packed only
    max_bins: int  # S (padded) or the largest per-ray bin count (packed)


def _histogram(bins_name, bins, weights_name, weights, offsets_name, offsets) -> _Histogram:
    if offsets is None:
        R, S = _padded_layout(bins_name, bins, weights_name, weights)
        _check_bins(bins_name, bins)
        return _Histogram(R, None, S)
    return _Histogram(*_packed_layout(bins_name, bins, weights_name, weights, offsets_name, offsets))


# ------------------------------------------------------------------------------ implementations
class Reference:
    """The ``torch`` backend: :mod:`.reference` on padded tensors (packed inputs are padded with
    zero-width, zero-mass bins, which change neither samples nor losses), autograd for gradients.
    Computes in float32 like the fused backends (float64 when every input is float64)."""

    def sample(self, bins, weights, offsets, max_bins, jitter, n, padding, blur, return_edges):
        """-> [R, n] (or [R, n + 1]) in the dtype of ``bins``; ``offsets`` None for padded inputs."""
        cd = _checks.compute_dtype(bins, weights)
        bins, weights = bins.to(cd), weights.to(cd)
        if offsets is not None:
            bins, weights = _packing.pad_histogram(bins, weights, offsets, max_bins)
        return reference.sample_pdf(bins, weights, n, jitter, padding, blur, return_edges)

    def interlevel(self, t, w, fine: _Histogram, tp, wp, prop: _Histogram, blur, eps):
        """-> loss [R] (``wp``'s dtype), differentiable w.r.t. ``wp``."""
        out, cd = wp.dtype, _checks.compute_dtype(t, w, tp, wp)
        return self._interlevel(t.to(cd), w.to(cd), fine, tp.to(cd), wp.to(cd), prop, blur, eps).to(out)

    def _interlevel(self, t, w, fine: _Histogram, tp, wp, prop: _Histogram, blur, eps):
        if fine.offsets is not None:
            t, w = _packing.pad_histogram(t, w, fine.offsets, fine.max_bins)
        if prop.offsets is not None:
            tp, wp = _packing.pad_histogram(tp, wp, prop.offsets, prop.max_bins)
        if blur is None:
            return reference.lossfun_outer(t, w, tp, wp, eps)
        return reference.lossfun_blurred(t, w, tp, wp, blur, eps)


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`SamplingKernels` on packed float32 copies
    (padded inputs are packed by reshaping), results cast back to the input dtype."""

    def __init__(self, kernels: SamplingKernels, name: str):
        self.kernels, self.name = kernels, name

    def sample(self, bins, weights, offsets, max_bins, jitter, n, padding, blur, return_edges):
        if offsets is None:
            offsets = _packing.padded_offsets(bins.shape[0], max_bins, bins.device)
        return self.kernels.sample(_f32(bins), _f32(weights), offsets, jitter, n, padding, blur, return_edges,
                                   max_bins)

    def interlevel(self, t, w, fine: _Histogram, tp, wp, prop: _Histogram, blur, eps):
        device = t.device
        t_off = fine.offsets if fine.offsets is not None else _packing.padded_offsets(fine.n_rays, fine.max_bins, device)
        tp_off = prop.offsets if prop.offsets is not None else _packing.padded_offsets(prop.n_rays, prop.max_bins, device)
        loss = _Interlevel.apply(
            _f32(t), _f32(w), t_off, _f32(tp), _f32(wp), tp_off,
            blur if blur is not None else t.new_empty(0, dtype=torch.float32),
            eps, fine.max_bins, prop.max_bins, self.kernels,
        )
        return loss.to(wp.dtype)


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1).float().contiguous()


__all__ = ["SpaceMap", "interlevel_loss", "s_to_t", "sample_pdf", "t_to_s", "DEFAULT_HISTOGRAM_PADDING"]

_dispatch.register_family("sampling", SamplingKernels, torch=Reference(), fused=Fused,
                          triton="rfkernels.sampling.triton", cuda="rfkernels.sampling.cuda")
