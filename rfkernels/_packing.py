"""Packed (ragged) ray layout shared by all op families.

A packed batch stores the samples of R rays back to back in a flat tensor ``[N, ...]``; ray r owns
``[offsets[r], offsets[r+1])``. ``ray_indices`` ``[N]`` (sorted, as nerfacc produces) is the
equivalent per-sample form. Padded ``[R, S]`` inputs are the special case ``offsets = S * arange(R+1)``.
"""
from __future__ import annotations

import torch


def ray_indices_to_offsets(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Sorted per-sample ray ids [N] -> offsets [n_rays + 1] (int64)."""
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)
    if counts.numel() > n_rays:
        raise ValueError(f"`ray_indices` has ids >= n_rays ({n_rays})")
    offsets = torch.zeros(n_rays + 1, dtype=torch.int64, device=ray_indices.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def offsets_to_ray_indices(offsets: torch.Tensor) -> torch.Tensor:
    """offsets [R + 1] -> ray id of each packed sample [N] (int64)."""
    counts = (offsets[1:] - offsets[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=offsets.device), counts)


def padded_offsets(n_rays: int, n_samples: int, device) -> torch.Tensor:
    return torch.arange(n_rays + 1, device=device, dtype=torch.int64) * n_samples


def pad(packed: torch.Tensor, offsets: torch.Tensor, fill: float = 0.0):
    """Packed [N, ...] -> (padded [R, S_max, ...], mask [R, S_max]); differentiable."""
    counts = (offsets[1:] - offsets[:-1]).long()
    n_rays = counts.numel()
    s_max = int(counts.max()) if n_rays else 0
    mask = torch.arange(s_max, device=packed.device)[None, :] < counts[:, None]
    out = packed.new_full((n_rays, s_max) + tuple(packed.shape[1:]), fill)
    out = out.masked_scatter(mask.view(mask.shape + (1,) * (packed.dim() - 1)).expand_as(out), packed) \
        if packed.numel() else out
    return out, mask


def unpad(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pad`: [R, S_max, ...] -> [N, ...]."""
    return padded[mask]
