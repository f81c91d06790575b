"""The public sampling functions and their argument checks: each validates once (layouts, sorted
finite bins, non-negative masses, blur widths), draws the jitter, then calls the backend the registry
picks (:class:`~.adapters.Reference` or :class:`~.adapters.Fused`) with the checked tensors."""

from __future__ import annotations

import torch

from .. import _checks, _dispatch, _packing
from .adapters import Histogram

MODES = ("stratified", "single_jitter", "midpoint")
DEFAULT_HISTOGRAM_PADDING = 0.01
EPS = float(torch.finfo(torch.float32).eps)  # the interlevel losses' denominator guard


# ----------------------------------------------------------------------------------- validation
def _check_bins(name, bins, boundary_mask=None):
    """Edges must be finite and non-decreasing along each ray."""
    if not _checks.reads_values(bins) or bins.numel() == 0:
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
    validate = _checks.reads_values(weights)
    _checks.check_finite(name, weights, validate)
    _checks.check_nonnegative(name, weights, validate)


def _blur_per_ray(blur_halfwidth, n_rays, device):
    """None | float | [R] tensor -> None | float32 [R] (validated > 0)."""
    if blur_halfwidth is None:
        return None
    if isinstance(blur_halfwidth, torch.Tensor):
        _checks.check_tensor("blur_halfwidth", blur_halfwidth, shape=[n_rays], device=device)
        r = blur_halfwidth.detach().float().contiguous()
        if _checks.reads_values(r) and r.numel() and not bool((r > 0).all()):
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
        raise ValueError(
            f"`{weights_name}` must have shape [R, S] = [{R}, {E - 1}] to match `{bins_name}` "
            f"[R, S+1] = {list(bins.shape)}, got {list(weights.shape)}"
        )
    return R, E - 1


def _packed_layout(bins_name, bins, weights_name, weights, offsets_name, offsets, max_count_name, max_count):
    """Validate packed histograms (:data:`rfkernels._packing` bins layout): weights [N], offsets [R+1],
    bins [N + R]; -> (R, offsets int64, largest bin count: ``max_count`` when given, else read)."""
    _checks.check_tensor(weights_name, weights, ndim=1)
    _checks.check_tensor(offsets_name, offsets, ndim=1, dtypes=_checks.INDEX_DTYPES, device=weights.device)
    _checks.check_offsets(offsets_name, offsets, weights.shape[0], _checks.reads_values(offsets))
    R = offsets.numel() - 1
    _checks.check_tensor(bins_name, bins, shape=[weights.shape[0] + R], device=weights.device)
    offsets = offsets.long().contiguous()
    if _checks.reads_values(bins, offsets):
        ends = _packing.edge_offsets(offsets)[1:] - 1  # index of each ray's last edge
        boundary = torch.zeros(max(bins.numel() - 1, 0), dtype=torch.bool, device=bins.device)
        if R > 1:
            boundary[ends[:-1]] = True
        _check_bins(bins_name, bins, boundary)
    if max_count is not None:  # the caller's bound: no read of offsets (validated while checks run)
        return R, offsets, _packing.given_max_count(max_count_name, max_count, offsets, _checks.reads_values(offsets))
    # the largest bin count sizes the kernels' loops (it reads offsets); meta tensors run no kernel
    return R, offsets, weights.shape[0] if offsets.device.type == "meta" else _packing.max_count(offsets)


def _histogram(bins_name, bins, weights_name, weights, offsets_name, offsets, max_count=None) -> Histogram:
    """Validate one histogram argument (padded or packed) -> its :class:`~.adapters.Histogram` layout."""
    if offsets is None:
        R, S = _padded_layout(bins_name, bins, weights_name, weights)
        _check_bins(bins_name, bins)
        return Histogram(R, None, S)
    max_name = offsets_name.replace("offsets", "max_count")
    return Histogram(
        *_packed_layout(bins_name, bins, weights_name, weights, offsets_name, offsets, max_name, max_count)
    )


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
    max_count: int | None = None,
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
        max_count: packed only: an upper bound on the bins per ray, when the caller knows it (else it
            is read from ``offsets``: a host sync on a GPU).
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
        R, offsets, max_bins = _packed_layout(
            "bins", bins, "weights", weights, "offsets", offsets, "max_count", max_count
        )
    _check_weights("weights", weights)
    device = bins.device
    blur = _blur_per_ray(blur_halfwidth, R, device)
    J = {"stratified": n_samples, "single_jitter": 1, "midpoint": 0}[mode]
    jitter = torch.rand(R, J, generator=generator, device=device) if J else None
    impl = _dispatch.implementation("sampling", backend, bins)
    with torch.no_grad():
        out = impl.sample(
            bins.detach(),
            weights.detach(),
            offsets,
            max_bins,
            jitter,
            n_samples,
            float(histogram_padding),
            blur,
            bool(return_edges),
        )
    return out.to(bins.dtype)


# -------------------------------------------------------------------------------- interlevel loss
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
    fine_max_count: int | None = None,
    prop_max_count: int | None = None,
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
        fine_max_count, prop_max_count: packed only: an upper bound on a level's bins per ray, when
            the caller knows it (else read from the offsets: a host sync on a GPU).
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
    fine = _histogram(
        "fine_bins", fine_bins, "fine_weights", fine_weights, "fine_offsets", fine_offsets, fine_max_count
    )
    prop = _histogram(
        "prop_bins", prop_bins, "prop_weights", prop_weights, "prop_offsets", prop_offsets, prop_max_count
    )
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
    return impl.interlevel(
        fine_bins.detach(), fine_weights.detach(), fine, prop_bins.detach(), prop_weights, prop, blur, float(eps)
    )
