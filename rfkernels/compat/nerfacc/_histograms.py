"""nerfacc's private histogram helpers that its tests and user code import (plain PyTorch, batched
``[..., B]`` histograms): ``pdf._sample_from_weighted`` and ``estimators.prop_net``'s ``_outer``,
``_lossfun_outer`` and ``_pdf_loss`` (mip-NeRF 360's proposal loss). The proposal estimator's own
loss runs on rfkernels' fused ``interlevel_loss`` instead (``prop_net._proposal_loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .data_specs import RayIntervals


def _sample_from_weighted(
    bins: Tensor,
    weights: Tensor,
    num_samples: int,
    stratified: bool = False,
    vmin: float = -torch.inf,
    vmax: float = torch.inf,
) -> tuple[Tensor, Tensor]:
    """Inverse-CDF samples of the histogram ``(bins [..., B+1], weights [..., B])``.

    ``num_samples`` sample centres at the CDF's mid-quantiles (or one jitter per row when
    ``stratified``), and the ``num_samples + 1`` interval edges around them (midpoints between
    centres, the outer two mirrored and clamped to ``[vmin, vmax]``). -> ``(edges, centres)``."""
    B, S = weights.shape[-1], num_samples
    if bins.shape[-1] != B + 1:
        raise ValueError(f"`bins` must have {B + 1} entries in its last dim (weights has {B}), got {bins.shape[-1]}")
    eps = torch.finfo(weights.dtype).eps
    pdf = F.normalize(weights, p=1, dim=-1)
    zero, one = torch.zeros_like(pdf[..., :1]), torch.ones_like(pdf[..., :1])
    cdf = torch.cat([zero, torch.cumsum(pdf[..., :-1], -1), one], -1)
    if stratified:
        u_max = eps + (1 - eps) / S
        jitter = torch.rand(*bins.shape[:-1], 1, dtype=bins.dtype, device=bins.device) * ((1 - u_max) / (S - 1) - eps)
        u = torch.linspace(0, 1 - u_max, S, dtype=bins.dtype, device=bins.device) + jitter
    else:
        half = 1 / (2 * S)
        u = torch.linspace(half, 1 - half - eps, S, dtype=bins.dtype, device=bins.device)
        u = u.broadcast_to(bins.shape[:-1] + (S,))
    above = torch.searchsorted(cdf.contiguous(), u.contiguous(), side="right")
    idx = torch.cat([above - 1, above], -1)
    c0, c1 = cdf.gather(-1, idx).split(S, -1)
    b0, b1 = bins.gather(-1, idx).split(S, -1)
    centres = b0 + (u - c0) / torch.clamp(c1 - c0, min=eps) * (b1 - b0)
    mids = (centres[..., 1:] + centres[..., :-1]) / 2
    first = (2 * centres[..., :1] - mids[..., :1]).clamp_min(vmin)
    last = (2 * centres[..., -1:] - mids[..., -1:]).clamp_max(vmax)
    return torch.cat([first, mids, last], -1), centres


def _outer(t0_starts: Tensor, t0_ends: Tensor, t1_starts: Tensor, t1_ends: Tensor, y1: Tensor) -> Tensor:
    """Mass of histogram ``(t1, y1) [..., S1]`` over the bins that overlap each ``[t0_start, t0_end)``
    ``[..., S0]``: the tightest upper bound it places on them. ``t1`` is contiguous
    (``t1_ends[i] = t1_starts[i + 1]``). A bin ending before the first ``t1`` edge overlaps nothing and
    gets 0 (nerfacc's copy of mip-NeRF 360's ``lossfun_outer`` gives it the first ``t1`` bin's mass
    there, unlike its ``_pdf_loss``; here both agree)."""
    cy1 = torch.cat([torch.zeros_like(y1[..., :1]), torch.cumsum(y1, -1)], -1)
    first = torch.searchsorted(t1_starts.contiguous(), t0_starts.contiguous(), side="right") - 1
    first = first.clamp(min=0, max=y1.shape[-1] - 1)
    end = torch.searchsorted(t1_starts.contiguous(), t0_ends.contiguous(), side="right")  # bins starting <= t0_end
    return torch.take_along_dim(cy1, end, -1) - torch.take_along_dim(cy1[..., :-1], first, -1)


def _lossfun_outer(t: Tensor, w: Tensor, t_env: Tensor, w_env: Tensor) -> Tensor:
    """``max(0, w - outer(t, t_env, w_env))^2 / (w + eps)`` per bin: how far histogram ``(t [..., S+1],
    w [..., S])`` exceeds the envelope ``(t_env, w_env)``."""
    eps = torch.finfo(t.dtype).eps
    w_outer = _outer(t[..., :-1], t[..., 1:], t_env[..., :-1], t_env[..., 1:], w_env)
    return torch.clip(w - w_outer, min=0) ** 2 / (w + eps)


def _pdf_loss(
    segments_query: RayIntervals, cdfs_query: Tensor, segments_key: RayIntervals, cdfs_key: Tensor, eps: float = 1e-7
) -> Tensor:
    """:func:`_lossfun_outer` on CDFs at interval edges: per query interval, its mass beyond the key
    mass between the key edges around it. Batched ``[n_rays, E]`` or flat (``is_left``/``is_right``)."""
    from .pdf import searchsorted  # pdf imports this module

    ids_left, ids_right = searchsorted(segments_key, segments_query)
    if segments_query.vals.dim() > 1:
        w = cdfs_query[..., 1:] - cdfs_query[..., :-1]
        ids_left, ids_right = ids_left[..., :-1], ids_right[..., 1:]
    else:
        if segments_query.is_left is None or segments_query.is_right is None:
            raise ValueError("flattened `segments_query` needs `is_left` and `is_right`")
        w = cdfs_query[segments_query.is_right] - cdfs_query[segments_query.is_left]
        ids_left, ids_right = ids_left[segments_query.is_left], ids_right[segments_query.is_right]
    w_outer = cdfs_key.gather(-1, ids_right) - cdfs_key.gather(-1, ids_left)
    return torch.clip(w - w_outer, min=0) ** 2 / (w + eps)
