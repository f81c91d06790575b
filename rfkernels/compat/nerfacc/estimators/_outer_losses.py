"""nerfacc's private proposal-loss helpers (``estimators.prop_net._outer``, ``_lossfun_outer``,
``_pdf_loss``: mip-NeRF 360's ``lossfun_outer`` on batched ``[..., S]`` histograms), which its tests
and user code import; plain PyTorch. The proposal estimator's own loss runs on rfkernels' fused
``interlevel_loss`` instead (``prop_net._proposal_loss``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data_specs import RayIntervals
from ..pdf import searchsorted


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
