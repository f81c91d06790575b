"""nerfacc's private ``pdf._sample_from_weighted`` (its tests and user code import it): inverse-CDF
sampling of batched ``[..., B]`` histograms in plain PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
