"""nerfacc.pack: ``pack_info`` and the conversions between nerfacc's packed forms and rfkernels'.

nerfacc describes a flat batch by ``packed_info [R, 2]`` (start, count per ray) or by sorted
``ray_indices [N]`` plus ``n_rays``; rfkernels by ``offsets [R+1]``. Rays must own contiguous,
back-to-back chunks (what every nerfacc producer emits).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import rfkernels


@torch.no_grad()
def pack_info(ray_indices: Tensor, n_rays: Optional[int] = None) -> Tensor:
    """Sorted ``ray_indices [N]`` -> ``packed_info [n_rays, 2]`` (start, count), same dtype as the
    input; ``n_rays`` defaults to ``max + 1``. Unlike nerfacc, also runs on the CPU."""
    if ray_indices.dim() != 1:
        raise ValueError(f"`ray_indices` must be 1-D [n_samples], got shape {list(ray_indices.shape)}")
    if n_rays is None:
        n_rays = int(ray_indices.max()) + 1 if ray_indices.numel() else 0
    offsets = rfkernels.ray_indices_to_offsets(ray_indices, n_rays)
    counts = offsets[1:] - offsets[:-1]
    return torch.stack([offsets[:-1], counts], dim=-1).to(ray_indices.dtype)


def packed_info_to_offsets(packed_info: Tensor, n_samples: int) -> Tensor:
    """``packed_info [R, 2]`` of contiguous chunks -> ``offsets [R+1]`` int64 (checked)."""
    if packed_info.dim() != 2 or packed_info.shape[-1] != 2:
        raise ValueError(f"`packed_info` must have shape [n_rays, 2], got {list(packed_info.shape)}")
    starts, counts = packed_info.long().unbind(-1)
    offsets = torch.cat([starts.new_zeros(1), torch.cumsum(counts, 0)])
    if packed_info.shape[0] and (not torch.equal(starts, offsets[:-1]) or int(offsets[-1]) != n_samples):
        raise ValueError("`packed_info` must describe contiguous back-to-back chunks covering all "
                         f"{n_samples} samples (start[i+1] == start[i] + count[i])")
    return offsets


def to_offsets(n_samples: int, packed_info: Optional[Tensor], ray_indices: Optional[Tensor],
               n_rays: Optional[int]) -> Optional[Tensor]:
    """nerfacc's (packed_info | ray_indices + n_rays) -> offsets [R+1], or None (padded input)."""
    if packed_info is not None:
        return packed_info_to_offsets(packed_info, n_samples)
    if ray_indices is not None:
        if n_rays is None:
            n_rays = int(ray_indices.max()) + 1 if ray_indices.numel() else 0
        return rfkernels.ray_indices_to_offsets(ray_indices, n_rays)
    return None


def pad(packed: Tensor, offsets: Tensor, fill: float = 0.0):
    """Packed ``[N, ...]`` -> (``[R, S_max, ...]``, mask ``[R, S_max]``); differentiable."""
    counts = offsets[1:] - offsets[:-1]
    s_max = int(counts.max()) if counts.numel() else 0
    mask = torch.arange(s_max, device=packed.device)[None, :] < counts[:, None]
    out = packed.new_full((counts.numel(), s_max) + tuple(packed.shape[1:]), fill)
    return out.index_put((mask.nonzero(as_tuple=True)), packed), mask


__all__ = ["pack_info"]
