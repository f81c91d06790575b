"""nerfacc.pack: ``pack_info`` and the conversions between nerfacc's packed forms and rfkernels'.

nerfacc describes a flat batch by ``packed_info [R, 2]`` (start, count per ray) or by sorted
``ray_indices [N]`` plus ``n_rays``; rfkernels by ``offsets [R+1]``. Rays must own contiguous,
back-to-back chunks (what every nerfacc producer emits).
"""

from __future__ import annotations

import torch
from torch import Tensor

import rfkernels

from . import checks


@torch.no_grad()
def pack_info(ray_indices: Tensor, n_rays: int | None = None) -> Tensor:
    """Sorted ``ray_indices [N]`` -> ``packed_info [n_rays, 2]`` (start, count), same dtype as the
    input; ``n_rays`` defaults to ``max + 1``. Unlike nerfacc, also runs on the CPU."""
    checks.tensor("ray_indices", ray_indices, min_dim=1)
    n_rays = checks.ray_indices(ray_indices, ray_indices.shape[0], n_rays, sorted_=True)
    offsets = rfkernels.ray_indices_to_offsets(ray_indices, n_rays)
    counts = offsets[1:] - offsets[:-1]
    return torch.stack([offsets[:-1], counts], dim=-1).to(ray_indices.dtype)


def packed_info_to_offsets(packed_info: Tensor, n_samples: int) -> Tensor:
    """``packed_info [R, 2]`` of contiguous chunks -> ``offsets [R+1]`` int64 (checked)."""
    return checks.packed_info(packed_info, n_samples)


def to_offsets(
    n_samples: int, packed_info: Tensor | None, ray_indices: Tensor | None, n_rays: int | None
) -> Tensor | None:
    """nerfacc's (packed_info | ray_indices + n_rays) -> offsets [R+1], or None (padded input)."""
    if packed_info is not None:
        return packed_info_to_offsets(packed_info, n_samples)
    if ray_indices is not None:
        n_rays = checks.ray_indices(ray_indices, n_samples, n_rays, sorted_=True)
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
